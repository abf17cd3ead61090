#include "qrank/pipeline.h"

#include <algorithm>
#include <cmath>
#include <unordered_map>

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

// What a score job and an embed job share: each input is cut to the caller's limit (see
// InputLimit) and made a prompt by the recipe, its token count and cut kept for the Outcome, which
// goes to the callback exactly once.
class PromptJob : public Job {
 protected:
  PromptJob(const Model& model, EngineOutput output, size_t max_length, InputLimit limit, const char* what, Callback done)
      : output_(output), max_length_(max_length), model_(model), limit_(limit), what_(what), done_(std::move(done)) {}

  // The prompt of input i: the input cut to the caller's limit (its own tokens, tokenised alone as
  // Pipeline::tokenize does, at most limit.max_tokens; only a text of more bytes than the limit can
  // have more tokens), given to `make` (the recipe), counted for the Outcome. Throws kInputTooLong
  // where the caller refused cuts and the limit or the model's context would cut.
  template <typename Make>
  Prompt prompt(const std::string& input, size_t i, const Make& make) {
    std::string storage;
    const std::string* text = &input;
    if (limit_.max_tokens > 0 && input.size() > limit_.max_tokens) {
      Tokens t = model_.tokenize(input, true);
      if (t.size() > limit_.max_tokens) {
        if (!limit_.cut) {
          throw Error(ErrorCode::kInputTooLong, std::string(what_) + "[" + std::to_string(i) + "] is " + std::to_string(t.size()) +
                                                    " tokens, more than the limit of " + std::to_string(limit_.max_tokens) +
                                                    "; shorten it or let it be cut (truncate: true)");
        }
        t.resize(limit_.max_tokens);
        storage = model_.detokenize(t);
        text = &storage;
      }
    }
    Prompt p = make(*text);
    if (!limit_.cut && p.truncated) {
      throw Error(ErrorCode::kInputTooLong, std::string(what_) + "[" + std::to_string(i) + "] does not fit the model's context of " +
                                                std::to_string(max_length_) + " tokens (maxLength) with its template; shorten it or let it be cut (truncate: true)");
    }
    truncated_ += p.truncated || text == &storage ? 1 : 0;
    counts_.push_back(static_cast<int32_t>(p.tokens.size()));
    return p;
  }

  // The job's result from the engine's outputs (finish adds the counts).
  virtual Outcome outcome() = 0;

  const EngineOutput output_;
  const size_t max_length_;

 private:
  void finish(const Error* error) final {
    if (error) return done_(failure(error));
    Outcome o = outcome();
    o.token_counts = std::move(counts_);
    o.truncated = truncated_;
    done_(std::move(o));
  }

  const Model& model_;
  const InputLimit limit_;
  const char* const what_;  // "documents" or "texts", in messages
  Callback done_;
  std::vector<int32_t> counts_;
  uint32_t truncated_ = 0;
};

// Relevance scores for (query, document) pairs. Each distinct query is tokenised once; a job
// whose pairs all have one query shares its whole head (system prompt, instruction, query), one
// with several queries the template's fixed start.
class ScoreJob final : public PromptJob {
 public:
  ScoreJob(const Model& model, const RerankRecipe& recipe, EngineOutput output, std::vector<Pair> pairs, std::string instruction,
           size_t max_length, InputLimit limit, std::atomic<uint64_t>& query_prompts, Callback done)
      : PromptJob(model, output, max_length, limit, "documents", std::move(done)), recipe_(recipe), pairs_(std::move(pairs)),
        instruction_(std::move(instruction)), query_prompts_(query_prompts) {}

  void prepare(const std::atomic<bool>& stop) override {
    std::unordered_map<std::string, QueryPrompt> queries;
    for (const auto& pair : pairs_) {
      if (queries.count(pair.query) > 0) continue;
      queries.emplace(pair.query, recipe_.query(pair.query, instruction_, max_length_));
      ++query_prompts_;
    }
    for (size_t i = 0; i < pairs_.size(); ++i) {
      check_stop(stop, *this);
      const QueryPrompt& q = queries.at(pairs_[i].query);
      Prompt p = prompt(pairs_[i].document, i, [&](const std::string& document) { return recipe_.tokens(q, document, max_length_); });
      const int32_t shared = queries.size() == 1 ? p.shared : std::min(p.shared, q.fixed);
      add_sequence(std::move(p.tokens), shared > 0 ? 0 : -1, shared);
    }
    pairs_.clear();  // the strings are no longer needed; 10 000 x 1 MB inputs should not stay resident
    pairs_.shrink_to_fit();
  }

 private:
  Outcome outcome() override {
    Outcome o;
    o.width = 1;
    const size_t n = sequences().size();
    o.logits.resize(n);
    o.values.resize(n);
    for (size_t i = 0; i < n; ++i) {
      const float* raw = outputs().data() + i * output_.width;
      o.logits[i] = output_.relevance_logit ? raw[0] : recipe_.logit(raw, output_.width);
      o.values[i] = relevance(o.logits[i]);
    }
    return o;
  }

  const RerankRecipe& recipe_;
  std::vector<Pair> pairs_;
  std::string instruction_;
  std::atomic<uint64_t>& query_prompts_;
};

// Embeddings: the engine's vector, truncated to `dimensions` when asked, L2-normalised (unless the
// engine normalised it already and it is kept whole).
class EmbedJob final : public PromptJob {
 public:
  EmbedJob(const Model& model, const EmbedRecipe& recipe, EngineOutput output, std::vector<std::string> texts, TextKind kind,
           std::string instruction, size_t max_length, InputLimit limit, size_t dimensions, Callback done)
      : PromptJob(model, output, max_length, limit, "texts", std::move(done)), recipe_(recipe), texts_(std::move(texts)), kind_(kind),
        instruction_(std::move(instruction)), dimensions_(dimensions) {}

  void prepare(const std::atomic<bool>& stop) override {
    const Tokens common = texts_.size() > 1 ? recipe_.common_prefix(kind_, instruction_) : Tokens{};
    for (size_t i = 0; i < texts_.size(); ++i) {
      check_stop(stop, *this);
      Prompt p = prompt(texts_[i], i, [&](const std::string& text) { return recipe_.tokens(text, kind_, instruction_, max_length_); });
      // the recipe's claim is checked: a prompt that does not begin with it shares nothing
      const bool shares = !common.empty() && p.tokens.size() > common.size() &&
                          std::equal(common.begin(), common.end(), p.tokens.begin());
      add_sequence(std::move(p.tokens), shares ? 0 : -1, shares ? static_cast<int32_t>(common.size()) : 0);
    }
    texts_.clear();
    texts_.shrink_to_fit();
  }

 private:
  Outcome outcome() override {
    Outcome o;
    o.width = dimensions_;
    o.values.resize(sequences().size() * dimensions_);
    const bool as_is = output_.normalised && dimensions_ == output_.width;
    for (size_t i = 0; i < sequences().size(); ++i) {
      const float* src = outputs().data() + i * output_.width;
      float* dst = o.values.data() + i * dimensions_;
      if (as_is) {
        std::copy_n(src, dimensions_, dst);
        continue;
      }
      double norm = 0.0;
      for (size_t j = 0; j < dimensions_; ++j) norm += static_cast<double>(src[j]) * src[j];
      const double scale = norm > 0.0 ? 1.0 / std::sqrt(norm) : 0.0;
      for (size_t j = 0; j < dimensions_; ++j) dst[j] = static_cast<float>(src[j] * scale);
    }
    return o;
  }

  const EmbedRecipe& recipe_;
  std::vector<std::string> texts_;
  TextKind kind_;
  std::string instruction_;
  size_t dimensions_;
};

}  // namespace

std::unique_ptr<Pipeline> Pipeline::open(const PipelineOptions& options) {
  if (options.max_length < 0 || options.batch_tokens < 0 || options.threads < 0 || options.max_sequences < 0 ||
      options.device_index < 0) {
    throw Error(ErrorCode::kInvalidInput, "maxLength, batchTokens, maxSequences, threads and deviceIndex must be positive");
  }
  std::unique_ptr<Pipeline> p(new Pipeline());
  p->role_ = options.role;
  // The engine is chosen from the file's facts first, so llama.cpp loads its CPU weights only for
  const ModelInfo facts = read_model_info(*GgufFile::open(options.model_path));
  const EnginePlan plan = plan_engine(options.device, facts, options.role);
  // One progress from 0 to 1 over the whole load: an engine that uploads its own weights gets most
  // of the range, after the vocabulary-only load.
  const float split = plan.load.weights ? 1.0f : 0.05f;
  const auto& progress = options.on_progress;
  const std::function<bool(float)> model_progress = [&progress, split](float x) { return !progress || progress(x * split); };
  const std::function<bool(float)> engine_progress = [&progress, split](float x) { return !progress || progress(split + x * (1.0f - split)); };
  p->model_ = Model::load(options.model_path, model_progress, plan.load);
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
  EngineOptions engine_options{options.batch_tokens, options.max_sequences, options.threads, options.device_index, engine_progress};
  p->scheduler_ = std::make_unique<Scheduler>(make_engine(plan, *p->model_, output, engine_options));
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
  const QueryPrompt q = rerank_->query(pair.query, instr, max_length_);
  return {rerank_->text(pair.query, pair.document, instr), rerank_->tokens(q, pair.document, max_length_).tokens};
}

std::pair<std::string, Tokens> Pipeline::format_text(const std::string& text, TextKind kind, const std::string& instruction) const {
  if (!embed_) throw Error(ErrorCode::kInvalidInput, "formatText needs an embedder");
  std::string storage;
  const std::string& instr = resolve_instruction(instruction, storage);
  return {embed_->text(text, kind, instr), embed_->tokens(text, kind, instr, max_length_).tokens};
}

uint64_t Pipeline::score(std::vector<Pair> pairs, std::string instruction, InputLimit limit, Callback done) {
  if (!rerank_) throw Error(ErrorCode::kInvalidInput, "this model was loaded as an embedder");
  std::string storage;
  std::string instr = resolve_instruction(instruction, storage);
  return scheduler_->submit(std::make_shared<ScoreJob>(*model_, *rerank_, scheduler_->engine().output(), std::move(pairs), std::move(instr), max_length_, limit, query_prompts_, std::move(done)));
}

uint64_t Pipeline::embed(std::vector<std::string> texts, TextKind kind, std::string instruction, int dimensions, InputLimit limit,
                         Callback done) {
  if (!embed_) throw Error(ErrorCode::kInvalidInput, "this model was loaded as a reranker");
  const EngineOutput output = scheduler_->engine().output();
  const size_t width = output.width;
  if (dimensions < 0 || static_cast<size_t>(dimensions) > width) {
    throw Error(ErrorCode::kInvalidInput, "dimensions must be between 1 and " + std::to_string(width));
  }
  std::string storage;
  std::string instr = kind == TextKind::kQuery ? resolve_instruction(instruction, storage) : instruction;
  const size_t dims = dimensions > 0 ? static_cast<size_t>(dimensions) : width;
  return scheduler_->submit(std::make_shared<EmbedJob>(*model_, *embed_, output, std::move(texts), kind, std::move(instr), max_length_, limit, dims, std::move(done)));
}

}  // namespace qrank
