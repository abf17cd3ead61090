#include "qrank/pipeline.h"

#include <algorithm>

#include <cmath>

namespace qrank {
namespace {

Outcome failure(const Error* error) {
  Outcome o;
  o.ok = false;
  o.code = error->code();
  o.message = error->what();
  return o;
}

// Tokenising 10 000 documents takes a while: closing or aborting should not wait for it.
void check_stop(const std::atomic<bool>& stop, const Job& job) {
  if (stop) throw Error(ErrorCode::kClosed, "the model was closed before this call finished");
  if (job.cancelled()) throw Error(ErrorCode::kAborted, "the call was aborted");
}

// Relevance scores for (query, document) pairs.
class ScoreJob final : public Job {
 public:
  ScoreJob(const RerankRecipe& recipe, std::vector<Pair> pairs, std::string instruction, size_t max_length,
           size_t width, Callback done)
      : recipe_(recipe), pairs_(std::move(pairs)), instruction_(std::move(instruction)), max_length_(max_length),
        width_(width), done_(std::move(done)) {}

  void prepare(const std::atomic<bool>& stop) override {
    sequences().reserve(pairs_.size());
    counts_.reserve(pairs_.size());
    for (const auto& pair : pairs_) {
      check_stop(stop, *this);
      Prompt p = recipe_.tokens(pair.query, pair.document, instruction_, max_length_);
      truncated_ += p.truncated ? 1 : 0;
      counts_.push_back(static_cast<int32_t>(p.tokens.size()));
      sequences().push_back(std::move(p.tokens));
    }
    pairs_.clear();  // the strings are no longer needed; 10 000 x 1 MB inputs should not stay resident
    pairs_.shrink_to_fit();
  }

  void finish(const Error* error) override {
    if (error) return done_(failure(error));
    Outcome o;
    o.width = 1;
    o.values.reserve(sequences().size());
    for (size_t i = 0; i < sequences().size(); ++i) o.values.push_back(recipe_.score(outputs().data() + i * width_, width_));
    o.token_counts = std::move(counts_);
    o.truncated = truncated_;
    done_(std::move(o));
  }

 private:
  const RerankRecipe& recipe_;
  std::vector<Pair> pairs_;
  std::string instruction_;
  size_t max_length_;
  size_t width_;
  Callback done_;
  std::vector<int32_t> counts_;
  uint32_t truncated_ = 0;
};

// Embeddings: the engine's vector, truncated to `dimensions` when asked, L2-normalised.
class EmbedJob final : public Job {
 public:
  EmbedJob(const EmbedRecipe& recipe, std::vector<std::string> texts, TextKind kind, std::string instruction,
           size_t max_length, size_t width, size_t dimensions, Callback done)
      : recipe_(recipe), texts_(std::move(texts)), kind_(kind), instruction_(std::move(instruction)),
        max_length_(max_length), width_(width), dimensions_(dimensions), done_(std::move(done)) {}

  void prepare(const std::atomic<bool>& stop) override {
    for (const auto& text : texts_) {
      check_stop(stop, *this);
      Prompt p = recipe_.tokens(text, kind_, instruction_, max_length_);
      truncated_ += p.truncated ? 1 : 0;
      counts_.push_back(static_cast<int32_t>(p.tokens.size()));
      sequences().push_back(std::move(p.tokens));
    }
    texts_.clear();
    texts_.shrink_to_fit();
  }

  void finish(const Error* error) override {
    if (error) return done_(failure(error));
    Outcome o;
    o.width = dimensions_;
    o.values.resize(sequences().size() * dimensions_);
    for (size_t i = 0; i < sequences().size(); ++i) {
      const float* src = outputs().data() + i * width_;
      float* dst = o.values.data() + i * dimensions_;
      double norm = 0.0;
      for (size_t j = 0; j < dimensions_; ++j) norm += static_cast<double>(src[j]) * src[j];
      const double scale = norm > 0.0 ? 1.0 / std::sqrt(norm) : 0.0;
      for (size_t j = 0; j < dimensions_; ++j) dst[j] = static_cast<float>(src[j] * scale);
    }
    o.token_counts = std::move(counts_);
    o.truncated = truncated_;
    done_(std::move(o));
  }

 private:
  const EmbedRecipe& recipe_;
  std::vector<std::string> texts_;
  TextKind kind_;
  std::string instruction_;
  size_t max_length_;
  size_t width_;
  size_t dimensions_;
  Callback done_;
  std::vector<int32_t> counts_;
  uint32_t truncated_ = 0;
};

}  // namespace

std::unique_ptr<Pipeline> Pipeline::open(const PipelineOptions& options) {
  if (options.device == Device::kCuda) {
    throw Error(ErrorCode::kUnsupported, "this build of qrank has no CUDA backend; use device 'cpu' or 'auto'");
  }
  if (options.max_length < 0 || options.batch_tokens < 0 || options.threads < 0 || options.max_sequences < 0) {
    throw Error(ErrorCode::kInvalidInput, "maxLength, batchTokens, maxSequences and threads must be positive");
  }
  std::unique_ptr<Pipeline> p(new Pipeline());
  p->role_ = options.role;
  p->model_ = Model::load(options.model_path, options.on_progress);
  OutputSpec output;
  if (options.role == Role::kReranker) {
    p->rerank_ = make_rerank_recipe(*p->model_);
    output = p->rerank_->output();
  } else {
    p->embed_ = make_embed_recipe(*p->model_);
    output = p->embed_->output();
  }
  const size_t context = static_cast<size_t>(std::max<int64_t>(p->model_->info().context_length, 1));
  p->max_length_ = options.max_length > 0 ? std::min<size_t>(options.max_length, context) : context;
  EngineOptions engine_options{options.batch_tokens, options.max_sequences, options.threads};
  p->scheduler_ = std::make_unique<Scheduler>(make_llama_engine(*p->model_, output, engine_options));
  return p;
}

Pipeline::~Pipeline() {
  if (scheduler_) scheduler_->close();
}

std::string Pipeline::recipe() const { return rerank_ ? rerank_->name() : embed_->name(); }
std::string Pipeline::backend() const { return scheduler_->engine().backend(); }
std::string Pipeline::default_instruction() const {
  return rerank_ ? rerank_->default_instruction() : embed_->default_instruction();
}

const std::string& Pipeline::resolve_instruction(const std::string& given, std::string& storage) const {
  if (!given.empty()) return given;
  storage = default_instruction();
  return storage;
}

std::pair<std::string, Tokens> Pipeline::format_pair(const Pair& pair, const std::string& instruction) const {
  if (!rerank_) throw Error(ErrorCode::kInvalidInput, "formatPair needs a reranker");
  std::string storage;
  const std::string& instr = resolve_instruction(instruction, storage);
  return {rerank_->text(pair.query, pair.document, instr), rerank_->tokens(pair.query, pair.document, instr, max_length_).tokens};
}

std::pair<std::string, Tokens> Pipeline::format_text(const std::string& text, TextKind kind, const std::string& instruction) const {
  if (!embed_) throw Error(ErrorCode::kInvalidInput, "formatText needs an embedder");
  std::string storage;
  const std::string& instr = resolve_instruction(instruction, storage);
  return {embed_->text(text, kind, instr), embed_->tokens(text, kind, instr, max_length_).tokens};
}

uint64_t Pipeline::score(std::vector<Pair> pairs, std::string instruction, Callback done) {
  if (!rerank_) throw Error(ErrorCode::kInvalidInput, "this model was loaded as an embedder");
  std::string storage;
  std::string instr = resolve_instruction(instruction, storage);
  const size_t width = scheduler_->engine().outputs_per_sequence();
  return scheduler_->submit(std::make_shared<ScoreJob>(*rerank_, std::move(pairs), std::move(instr), max_length_, width, std::move(done)));
}

uint64_t Pipeline::embed(std::vector<std::string> texts, TextKind kind, std::string instruction, int dimensions, Callback done) {
  if (!embed_) throw Error(ErrorCode::kInvalidInput, "this model was loaded as a reranker");
  const size_t width = scheduler_->engine().outputs_per_sequence();
  if (dimensions < 0 || static_cast<size_t>(dimensions) > width) {
    throw Error(ErrorCode::kInvalidInput, "dimensions must be between 1 and " + std::to_string(width));
  }
  std::string storage;
  std::string instr = kind == TextKind::kQuery ? resolve_instruction(instruction, storage) : instruction;
  const size_t dims = dimensions > 0 ? static_cast<size_t>(dimensions) : width;
  return scheduler_->submit(std::make_shared<EmbedJob>(*embed_, std::move(texts), kind, std::move(instr), max_length_, width, dims, std::move(done)));
}

}  // namespace qrank
