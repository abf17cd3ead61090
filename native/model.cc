#include "qrank/model.h"

#include <sys/stat.h>

#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>

#include "llama.h"
#include "qrank/error.h"

namespace qrank {
namespace {

std::mutex g_log_mutex;
std::deque<std::string> g_log_errors;

void log_callback(ggml_log_level level, const char* text, void*) {
  static const bool verbose = std::getenv("QRANK_LOG") != nullptr;
  if (verbose) std::fputs(text, stderr);
  if (level == GGML_LOG_LEVEL_ERROR || level == GGML_LOG_LEVEL_WARN) {
    std::lock_guard<std::mutex> lock(g_log_mutex);
    g_log_errors.emplace_back(text);
    while (g_log_errors.size() > 8) g_log_errors.pop_front();
  }
}

const char* pooling_name(int pooling) {
  switch (pooling) {
    case LLAMA_POOLING_TYPE_MEAN: return "mean";
    case LLAMA_POOLING_TYPE_CLS: return "cls";
    case LLAMA_POOLING_TYPE_LAST: return "last";
    case LLAMA_POOLING_TYPE_RANK: return "rank";
    default: return "none";
  }
}

struct ProgressState {
  const std::function<bool(float)>* progress;
  bool aborted = false;
};

bool on_load_progress(float p, void* data) {
  auto* state = static_cast<ProgressState*>(data);
  if (state->progress && *state->progress && !(*state->progress)(p)) {
    state->aborted = true;
    return false;
  }
  return true;
}

}  // namespace

void init_llama_backend() {
  static std::once_flag once;
  std::call_once(once, [] {
    llama_log_set(log_callback, nullptr);
    llama_backend_init();
  });
}

std::string last_llama_errors() {
  std::lock_guard<std::mutex> lock(g_log_mutex);
  std::string out;
  for (const auto& line : g_log_errors) out += line;
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

std::unique_ptr<Model> Model::load(const std::string& path, const std::function<bool(float)>& progress) {
  init_llama_backend();
  struct stat st {};
  if (path.empty() || stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
    throw Error(ErrorCode::kModelNotFound, "model file not found: " + path);
  }
  ProgressState state{&progress};
  llama_model_params params = llama_model_default_params();
  params.n_gpu_layers = 0;  // the CPU backend; the CUDA engine brings its own weights
  params.progress_callback = on_load_progress;
  params.progress_callback_user_data = &state;
  {
    std::lock_guard<std::mutex> lock(g_log_mutex);
    g_log_errors.clear();
  }
  llama_model* model = llama_model_load_from_file(path.c_str(), params);
  if (state.aborted) {
    if (model) llama_model_free(model);
    throw Error(ErrorCode::kAborted, "model load aborted");
  }
  if (!model) {
    const std::string why = last_llama_errors();
    throw Error(ErrorCode::kBadModel, "cannot load " + path + " as a GGUF model" + (why.empty() ? "" : ": " + why));
  }
  return std::unique_ptr<Model>(new Model(model, path));
}

Model::Model(llama_model* model, const std::string& path) : model_(model), vocab_(llama_model_get_vocab(model)) {
  read_info(path);
}

Model::~Model() {
  if (model_) llama_model_free(model_);
}

std::string Model::meta(const std::string& key) const {
  char buf[512];
  const int32_t n = llama_model_meta_val_str(model_, key.c_str(), buf, sizeof buf);
  if (n < 0) return "";
  if (static_cast<size_t>(n) < sizeof buf) return std::string(buf, n);
  std::string big(n + 1, '\0');
  llama_model_meta_val_str(model_, key.c_str(), big.data(), big.size());
  big.resize(n);
  return big;
}

void Model::read_info(const std::string& path) {
  info_.path = path;
  info_.architecture = meta("general.architecture");
  info_.name = meta("general.name");
  char desc[256];
  llama_model_desc(model_, desc, sizeof desc);
  info_.description = desc;
  const std::string pooling = meta(info_.architecture + ".pooling_type");
  info_.pooling = pooling.empty() ? "none" : pooling_name(std::atoi(pooling.c_str()));
  info_.context_length = llama_model_n_ctx_train(model_);
  info_.embedding_length = llama_model_n_embd(model_);
  info_.layers = llama_model_n_layer(model_);
  info_.heads = llama_model_n_head(model_);
  info_.kv_heads = llama_model_n_head_kv(model_);
  info_.vocab_size = llama_vocab_n_tokens(vocab_);
  info_.parameters = llama_model_n_params(model_);
  info_.size_bytes = llama_model_size(model_);
  for (uint32_t i = 0; i < llama_model_n_cls_out(model_); ++i) {
    const char* label = llama_model_cls_label(model_, i);
    info_.class_labels.emplace_back(label ? label : "");
  }
  info_.causal = !llama_model_has_encoder(model_) && meta(info_.architecture + ".attention.causal") != "false";
  const std::string& arch = info_.architecture;
  if (arch == "bert" || arch == "nomic-bert" || arch == "nomic-bert-moe" || arch == "jina-bert-v2" ||
      arch == "jina-bert-v3" || arch == "modern-bert" || arch == "neo-bert" || arch == "t5encoder") {
    info_.causal = false;
  }
  info_.synthetic = meta("qrank.synthetic") == "true";
}

Tokens Model::tokenize(const std::string& text, bool parse_special, bool add_special) const {
  if (text.size() > static_cast<size_t>(INT32_MAX) / 2) {
    throw Error(ErrorCode::kInvalidInput, "text of " + std::to_string(text.size()) + " bytes is too large to tokenize");
  }
  const int32_t len = static_cast<int32_t>(text.size());
  Tokens tokens(text.size() + 8);
  int32_t n = llama_tokenize(vocab_, text.data(), len, tokens.data(), static_cast<int32_t>(tokens.size()), add_special, parse_special);
  if (n < 0) {
    tokens.resize(-n);
    n = llama_tokenize(vocab_, text.data(), len, tokens.data(), static_cast<int32_t>(tokens.size()), add_special, parse_special);
  }
  if (n < 0) throw Error(ErrorCode::kEngineFailure, "tokenization failed");
  tokens.resize(n);
  return tokens;
}

std::string Model::detokenize(const Tokens& tokens) const {
  std::string out(tokens.size() * 8 + 16, '\0');
  int32_t n = llama_detokenize(vocab_, tokens.data(), static_cast<int32_t>(tokens.size()), out.data(),
                               static_cast<int32_t>(out.size()), false, false);
  if (n < 0) {
    out.resize(-n);
    n = llama_detokenize(vocab_, tokens.data(), static_cast<int32_t>(tokens.size()), out.data(),
                         static_cast<int32_t>(out.size()), false, false);
  }
  out.resize(n < 0 ? 0 : n);
  return out;
}

Token Model::single_token(const std::string& word) const {
  const Tokens t = tokenize(word, false);
  if (t.size() != 1) throw Error(ErrorCode::kBadModel, "the vocabulary has no single token for '" + word + "'");
  return t[0];
}

Token Model::eos() const { return llama_vocab_eos(vocab_); }
Token Model::bos() const { return llama_vocab_bos(vocab_); }
Token Model::sep() const { return llama_vocab_sep(vocab_); }

}  // namespace qrank
