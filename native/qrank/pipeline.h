// A Pipeline is one loaded model serving one role (reranker or embedder): the model, its recipe,
// an engine and the scheduler that owns the engine. It is what the N-API glue and the C++ bench
// drive; every call is asynchronous and reports through a callback on the scheduler thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "qrank/engine.h"
#include "qrank/error.h"
#include "qrank/model.h"
#include "qrank/recipe.h"
#include "qrank/scheduler.h"

namespace qrank {

struct PipelineOptions {
  std::string model_path;
  Role role = Role::kReranker;
  Device device = Device::kAuto;
  int max_length = 0;     // tokens per sequence (0: the model's context length)
  int batch_tokens = 0;   // token budget per batch (0: engine default)
  int max_sequences = 0;  // sequences per batch (0: engine default)
  int threads = 0;        // CPU threads (0: all cores)
  int device_index = 0;   // which GPU, for device kCuda
  std::function<bool(float)> on_progress;  // load progress 0..1; return false to abort
};

// What a call produces: one row per input, `width` floats each (1 for scores).
struct Outcome {
  bool ok = true;
  ErrorCode code = ErrorCode::kEngineFailure;
  std::string message;
  std::vector<float> values;
  size_t width = 0;
  std::vector<float> logits;          // scores only: the relevance logit of each pair (values = sigmoid)
  std::vector<int32_t> token_counts;  // tokens per input after truncation
  uint32_t truncated = 0;             // inputs that were truncated
};
using Callback = std::function<void(Outcome&&)>;

struct PipelineStats {
  SchedulerStats scheduler;
  uint64_t query_prompts = 0;  // distinct rerank queries tokenised (once per call, not per document)
};

struct Pair {
  std::string query;
  std::string document;
};

// The caller's limit on each input: a document's own tokens (score) or a text's beyond its template
// (embed). max_tokens 0: only the context decides. cut false: an input that would be cut, by this
// limit or to fit the context, fails the whole call with kInputTooLong naming it instead.
struct InputLimit {
  size_t max_tokens = 0;
  bool cut = true;
};

class Pipeline {
 public:
  static std::unique_ptr<Pipeline> open(const PipelineOptions& options);
  ~Pipeline();

  const ModelInfo& info() const { return model_->info(); }
  std::string recipe() const;
  std::string backend() const;
  EngineLimits limits() const { return scheduler_->engine().limits(); }
  size_t max_length() const { return max_length_; }
  std::string default_instruction() const;

  // Tokenisation with the model's vocabulary (special tokens in the text are parsed).
  Tokens tokenize(const std::string& text) const { return model_->tokenize(text, true); }
  std::string detokenize(const Tokens& tokens) const { return model_->detokenize(tokens); }
  // The exact prompt of a pair or text, as text and as the token ids that will be scored.
  std::pair<std::string, Tokens> format_pair(const Pair& pair, const std::string& instruction) const;
  std::pair<std::string, Tokens> format_text(const std::string& text, TextKind kind, const std::string& instruction) const;

  // Relevance P(yes) in [0,1] for each pair, in input order, with its logit. An empty instruction
  // means the default. Pairs with the same query share its tokens (tokenised once) and its prefix.
  uint64_t score(std::vector<Pair> pairs, std::string instruction, InputLimit limit, Callback done);
  // One embedding per text, L2-normalised; dimensions > 0 truncates (Matryoshka) and renormalises.
  uint64_t embed(std::vector<std::string> texts, TextKind kind, std::string instruction, int dimensions, InputLimit limit,
                 Callback done);

  void cancel(uint64_t id) { scheduler_->cancel(id); }
  void close() { scheduler_->close(); }
  PipelineStats stats() const { return PipelineStats{scheduler_->stats(), query_prompts_.load()}; }

 private:
  Pipeline() = default;
  const std::string& resolve_instruction(const std::string& given, std::string& storage) const;

  std::unique_ptr<Model> model_;
  std::unique_ptr<RerankRecipe> rerank_;
  std::unique_ptr<EmbedRecipe> embed_;
  std::unique_ptr<Scheduler> scheduler_;
  Role role_ = Role::kReranker;
  size_t max_length_ = 0;
  std::atomic<uint64_t> query_prompts_{0};
};

}  // namespace qrank
