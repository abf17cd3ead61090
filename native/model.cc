#include "qrank/model.h"

#include <algorithm>
#include <cstdio>
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

namespace {

// Metadata read leniently: a key of an unexpected type (a per-layer array where qrank expects one
// number) must not make a model unloadable for the llama.cpp engine, which reads it itself.
int64_t int_or(const GgufFile& f, const std::string& key, int64_t fallback) {
  try {
    return f.integer(key, fallback);
  } catch (const Error&) {
    return fallback;
  }
}

double real_or(const GgufFile& f, const std::string& key, double fallback) {
  try {
    return f.real(key, fallback);
  } catch (const Error&) {
    return fallback;
  }
}

bool is_encoder_architecture(const std::string& arch) {
  static const char* const kEncoders[] = {"bert", "nomic-bert", "nomic-bert-moe", "jina-bert-v2", "jina-bert-v3",
                                          "modern-bert", "neo-bert", "t5encoder", "t5"};
  for (const char* e : kEncoders) {
    if (arch == e) return true;
  }
  return false;
}

std::string parameter_label(uint64_t n) {
  char buf[32];
  if (n >= 1000000000ull) {
    std::snprintf(buf, sizeof buf, "%.2fB", n / 1e9);
  } else if (n >= 1000000ull) {
    std::snprintf(buf, sizeof buf, "%.0fM", n / 1e6);
  } else {
    std::snprintf(buf, sizeof buf, "%.0fK", n / 1e3);
  }
  return buf;
}

// The type that holds most bytes among the 2-D weights: what a user calls the file's type.
std::string dominant_weight_type(const GgufFile& f) {
  std::vector<uint64_t> bytes(GGML_TYPE_COUNT, 0);
  for (const auto& t : f.tensors()) {
    if (t.ne[1] > 1 && t.type >= 0 && t.type < GGML_TYPE_COUNT) bytes[t.type] += t.bytes;
  }
  const auto best = std::max_element(bytes.begin(), bytes.end()) - bytes.begin();
  return bytes[best] > 0 ? ggml_type_name(static_cast<ggml_type>(best)) : "none";
}

}  // namespace

ModelInfo read_model_info(const GgufFile& f) {
  ModelInfo info;
  info.path = f.path();
  info.architecture = f.str("general.architecture");
  info.name = f.str("general.name");
  const std::string& a = info.architecture;
  const int64_t pooling = int_or(f, a + ".pooling_type", -1);
  info.pooling = pooling < 0 ? "none" : pooling_name(static_cast<int>(pooling));
  info.context_length = int_or(f, a + ".context_length", 0);
  info.embedding_length = int_or(f, a + ".embedding_length", 0);
  info.layers = int_or(f, a + ".block_count", 0);
  info.heads = int_or(f, a + ".attention.head_count", 0);
  info.kv_heads = int_or(f, a + ".attention.head_count_kv", info.heads);
  info.head_dim = int_or(f, a + ".attention.key_length", info.heads > 0 ? info.embedding_length / info.heads : 0);
  info.ffn_length = int_or(f, a + ".feed_forward_length", 0);
  info.vocab_size = static_cast<int64_t>(f.array_size("tokenizer.ggml.tokens"));
  info.rope_theta = real_or(f, a + ".rope.freq_base", 10000.0);
  info.rms_eps = real_or(f, a + ".attention.layer_norm_rms_epsilon", 1e-6);
  info.parameters = f.parameters();
  info.size_bytes = f.weight_bytes();
  info.weight_type = dominant_weight_type(f);
  info.description = a + " " + parameter_label(info.parameters) + " " + info.weight_type;
  try {
    info.class_labels = f.strings(a + ".classifier.output_labels");
  } catch (const Error&) {
    info.class_labels.clear();
  }
  bool causal_key = true;
  try {
    causal_key = f.boolean(a + ".attention.causal", true);
  } catch (const Error&) {
  }
  info.causal = causal_key && !is_encoder_architecture(a);
  try {
    info.synthetic = f.boolean("qrank.synthetic", false);
  } catch (const Error&) {
    info.synthetic = false;
  }
  return info;
}

std::unique_ptr<Model> Model::load(const std::string& path, const std::function<bool(float)>& progress, const ModelLoad& how) {
  init_llama_backend();
  std::shared_ptr<const GgufFile> file = GgufFile::open(path);
  ProgressState state{&progress};
  llama_model_params params = llama_model_default_params();
  params.vocab_only = !how.weights;
  params.n_gpu_layers = how.weights ? how.gpu_layers : 0;
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
  // a vocabulary-only load reports no progress of its own
  if (!how.weights && progress && !progress(1.0f)) {
    llama_model_free(model);
    throw Error(ErrorCode::kAborted, "model load aborted");
  }
  return std::unique_ptr<Model>(new Model(model, std::move(file), how));
}

Model::Model(llama_model* model, std::shared_ptr<const GgufFile> file, const ModelLoad& load)
    : model_(model), vocab_(llama_model_get_vocab(model)), file_(std::move(file)), load_(load) {
  info_ = read_model_info(*file_);
  info_.vocab_size = llama_vocab_n_tokens(vocab_);
}

Model::~Model() {
  if (model_) llama_model_free(model_);
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

Token Model::special_token(const std::string& text) const {
  const Tokens t = tokenize(text, true);
  if (t.size() != 1 || !(llama_vocab_get_attr(vocab_, t[0]) & (LLAMA_TOKEN_ATTR_CONTROL | LLAMA_TOKEN_ATTR_USER_DEFINED))) return -1;
  return t[0];
}

Token Model::eos() const { return llama_vocab_eos(vocab_); }
Token Model::bos() const { return llama_vocab_bos(vocab_); }
Token Model::sep() const { return llama_vocab_sep(vocab_); }

}  // namespace qrank
