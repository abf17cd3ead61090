// The llama.cpp backend. Qwen3 models run in llama.cpp's logits mode with only each sequence's last
// token marked as an output: an embeddings context would output every token and run the
// 151936-row vocabulary head over all of them (gigabytes of buffers, a third more compute for the
// 0.6B model). The final hidden state of those last tokens ("result_norm", already reduced to the
// output rows by the graph) is captured through the scheduler's eval callback and multiplied by the
// few head rows qrank needs (yes/no), or returned as the embedding. Causal attention lets a shared
// prefix be evaluated once and referenced (llama_memory_seq_cp on a unified KV cache) by every
// sequence that begins with it. Other models (BERT-style cross-encoders and embedders) use the
// pooling their file declares.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <thread>
#include <unordered_map>

#include "ggml-backend.h"
#include "llama.h"
#include "qrank/engine.h"
#include "qrank/error.h"

namespace qrank {
namespace {

constexpr int kDefaultBatchTokens = 1024;
constexpr int kDefaultMaxSequences = 64;
constexpr int kMaxSequencesLimit = 256;  // LLAMA_MAX_SEQ
constexpr int kMaxBatchTokens = 1 << 20;
constexpr int kMicroBatch = 512;
constexpr uint32_t kContextGranularity = 256;

struct BatchDeleter {
  void operator()(llama_batch* b) const {
    llama_batch_free(*b);
    delete b;
  }
};

class LlamaEngine final : public Engine {
 public:
  LlamaEngine(const Model& model, const OutputSpec& output, const EngineOptions& options)
      : model_(model), output_(output) {
    if (!model.has_weights()) throw Error(ErrorCode::kEngineFailure, "the llama.cpp engine needs llama.cpp's weights");
    if (options.batch_tokens > kMaxBatchTokens || options.max_sequences > kMaxSequencesLimit) {
      throw Error(ErrorCode::kInvalidInput, "the " + backend() + " engine takes batchTokens up to " + std::to_string(kMaxBatchTokens) +
                                                " and maxSequences up to " + std::to_string(kMaxSequencesLimit));
    }
    batch_tokens_ = options.batch_tokens > 0 ? options.batch_tokens : kDefaultBatchTokens;
    max_sequences_ = options.max_sequences > 0 ? options.max_sequences : kDefaultMaxSequences;
    threads_ = options.threads > 0 ? options.threads : std::max(1u, std::thread::hardware_concurrency());
    last_token_ = output_.kind != OutputSpec::Kind::kPooled;
    if (last_token_ && !model.info().causal) {
      throw Error(ErrorCode::kBadModel, "last-token outputs need a causal model");
    }
    const size_t n_embd = static_cast<size_t>(llama_model_n_embd(model.handle()));
    if (output_.kind == OutputSpec::Kind::kHeadRows) {
      int64_t row_len = 0;
      head_ = model.file().rows(output_.head_tensor, output_.head_rows, &row_len);
      if (static_cast<size_t>(row_len) != n_embd) throw Error(ErrorCode::kBadModel, output_.head_tensor + " rows do not match the hidden size");
      outputs_ = output_.head_rows.size();
    } else if (output_.kind == OutputSpec::Kind::kLastHidden) {
      outputs_ = n_embd;
    } else {
      const uint32_t n_cls = llama_model_n_cls_out(model.handle());
      const bool rank = model.info().pooling == "rank";
      outputs_ = rank ? std::max<uint32_t>(n_cls, 1) : static_cast<size_t>(llama_model_n_embd_out(model.handle()));
    }
  }

  ~LlamaEngine() override {
    if (ctx_) llama_free(ctx_);
  }

  std::string backend() const override { return model_.gpu_layers() > 0 ? "llama.cpp-cuda" : "llama.cpp-cpu"; }
  EngineOutput output() const override { return EngineOutput{outputs_, false, false}; }
  EngineLimits limits() const override { return EngineLimits{batch_tokens_, max_sequences_, kMaxBatchTokens, kMaxSequencesLimit}; }
  bool reuses_prefixes() const override { return last_token_; }
  EngineStats stats() const override { return stats_; }

  void run(const std::vector<EngineSequence>& batch, float* out, const std::function<bool()>& should_abort) override {
    if (batch.empty()) return;
    if (batch.size() > static_cast<size_t>(max_sequences_)) throw Error(ErrorCode::kEngineFailure, "batch has more sequences than the engine allows");
    size_t longest = 0;
    for (const auto& s : batch) {
      if (s.n_tokens <= 0) throw Error(ErrorCode::kEngineFailure, "empty sequence in batch");
      longest = std::max<size_t>(longest, s.n_tokens);
    }
    should_abort_ = &should_abort;
    struct Reset {
      LlamaEngine* self;
      ~Reset() {
        self->should_abort_ = nullptr;
        if (self->ctx_) llama_memory_clear(llama_get_memory(self->ctx_), false);
      }
    } reset{this};
    if (last_token_) {
      run_last_token(batch, out, longest);
    } else {
      run_pooled(batch, out, longest);
    }
    stats_.batches += 1;
    stats_.sequences += batch.size();
  }

 private:
  // --- context management: sized to the work, grown when a batch needs more ---------------------

  void ensure_context(size_t cells, size_t micro_batch) {
    const uint32_t need = static_cast<uint32_t>((cells + kContextGranularity - 1) / kContextGranularity * kContextGranularity);
    if (ctx_ && llama_n_ctx(ctx_) >= need && ubatch_ >= micro_batch) return;
    if (ctx_) {
      llama_free(ctx_);
      ctx_ = nullptr;
    }
    llama_context_params p = llama_context_default_params();
    p.n_ctx = need;
    p.n_batch = last_token_ ? static_cast<uint32_t>(batch_tokens_) : p.n_ctx;
    p.n_ubatch = last_token_ ? std::min<uint32_t>(p.n_batch, kMicroBatch) : p.n_ctx;
    p.n_seq_max = static_cast<uint32_t>(max_sequences_);
    p.n_outputs_max = last_token_ ? static_cast<uint32_t>(max_sequences_) : 0;
    p.n_threads = threads_;
    p.n_threads_batch = threads_;
    p.embeddings = !last_token_;
    p.pooling_type = last_token_ ? LLAMA_POOLING_TYPE_NONE : LLAMA_POOLING_TYPE_UNSPECIFIED;
    if (last_token_) {
      p.cb_eval = &LlamaEngine::capture_trampoline;
      p.cb_eval_user_data = this;
    }
    p.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_AUTO;  // the CPU kernel skips masked KV cells
    p.kv_unified = true;                              // shared prefixes are referenced, not copied
    p.abort_callback = &LlamaEngine::abort_trampoline;
    p.abort_callback_data = this;
    p.no_perf = true;
    ctx_ = llama_init_from_model(model_.handle(), p);
    if (!ctx_) {
      throw Error(ErrorCode::kOutOfMemory, "cannot create a llama.cpp context of " + std::to_string(need) + " tokens" +
                                               (last_llama_errors().empty() ? "" : ": " + last_llama_errors()));
    }
    ubatch_ = p.n_ubatch;
  }

  // Observes the final-norm output of each micro-batch (rows = its output tokens). Returning false
  // once it is copied stops the graph there: the vocabulary head that follows is never computed,
  // which for a tiny model is most of the work and for the 0.6B shape a few percent.
  static bool capture_trampoline(ggml_tensor* t, bool ask, void* data) {
    if (std::strcmp(t->name, "result_norm") != 0) return ask ? false : true;
    if (ask) return true;
    auto* self = static_cast<LlamaEngine*>(data);
    const size_t n = static_cast<size_t>(ggml_nelements(t));
    const size_t at = self->captured_.size();
    self->captured_.resize(at + n);
    ggml_backend_tensor_get(t, self->captured_.data() + at, 0, n * sizeof(float));
    return false;
  }

  static bool abort_trampoline(void* data) {
    auto* self = static_cast<LlamaEngine*>(data);
    return self->should_abort_ && *self->should_abort_ && (*self->should_abort_)();
  }

  // --- feeding tokens ---------------------------------------------------------------------------

  // Accumulates tokens into llama_batch chunks of at most n_batch and decodes each chunk; outputs
  // are collected right after the decode that produced them (the next decode overwrites them).
  class Feeder {
   public:
    Feeder(LlamaEngine& engine, int capacity)
        : engine_(engine), capacity_(capacity), batch_(new llama_batch(llama_batch_init(capacity, 0, 1))) {}

    void add(Token token, llama_pos pos, llama_seq_id seq, float* output_dst) {
      if (batch_->n_tokens == capacity_) flush();
      const int i = batch_->n_tokens++;
      batch_->token[i] = token;
      batch_->pos[i] = pos;
      batch_->n_seq_id[i] = 1;
      batch_->seq_id[i][0] = seq;
      batch_->logits[i] = output_dst != nullptr;
      if (output_dst) pending_.emplace_back(i, output_dst);
    }

    void flush() {
      if (batch_->n_tokens == 0) return;
      engine_.captured_.clear();
      const int32_t rc = llama_decode(engine_.ctx_, *batch_);
      if (rc == 2) throw Error(ErrorCode::kAborted, "aborted");
      if (rc != 0) {
        throw Error(rc == 1 ? ErrorCode::kOutOfMemory : ErrorCode::kEngineFailure,
                    "llama_decode failed (" + std::to_string(rc) + ")" +
                        (last_llama_errors().empty() ? "" : ": " + last_llama_errors()));
      }
      engine_.stats_.tokens_evaluated += batch_->n_tokens;
      const size_t n_embd = static_cast<size_t>(llama_model_n_embd(engine_.model_.handle()));
      if (engine_.captured_.size() != pending_.size() * n_embd) {
        throw Error(ErrorCode::kEngineFailure, "captured " + std::to_string(engine_.captured_.size() / n_embd) +
                                                   " hidden states for " + std::to_string(pending_.size()) + " outputs");
      }
      for (size_t k = 0; k < pending_.size(); ++k) engine_.emit_hidden(engine_.captured_.data() + k * n_embd, pending_[k].second);
      pending_.clear();
      batch_->n_tokens = 0;
    }

   private:
    LlamaEngine& engine_;
    int capacity_;
    std::unique_ptr<llama_batch, BatchDeleter> batch_;
    std::vector<std::pair<int, float*>> pending_;
  };

  void emit_hidden(const float* hidden, float* dst) {
    const size_t n_embd = static_cast<size_t>(llama_model_n_embd(model_.handle()));
    if (output_.kind == OutputSpec::Kind::kLastHidden) {
      std::copy_n(hidden, n_embd, dst);
      return;
    }
    for (size_t r = 0; r < outputs_; ++r) {
      const float* row = head_.data() + r * n_embd;
      double acc = 0.0;
      for (size_t j = 0; j < n_embd; ++j) acc += static_cast<double>(row[j]) * hidden[j];
      dst[r] = static_cast<float>(acc);
    }
  }

  void run_last_token(const std::vector<EngineSequence>& batch, float* out, size_t longest) {
    // Cells: each group's prefix once, plus every sequence's own tokens.
    // The first sequence of each group leads it: the prefix is evaluated in its sequence only.
    size_t cells = 0;
    std::vector<int> leader(batch.size(), -1);
    std::unordered_map<int32_t, int> group_leader;
    for (size_t i = 0; i < batch.size(); ++i) {
      const auto& s = batch[i];
      if (s.group >= 0 && s.prefix_len > 0) leader[i] = group_leader.emplace(s.group, static_cast<int>(i)).first->second;
      const bool follower = leader[i] >= 0 && leader[i] != static_cast<int>(i);
      cells += s.n_tokens - (follower ? s.prefix_len : 0);
    }
    ensure_context(std::max(cells, longest), std::min<size_t>(batch_tokens_, kMicroBatch));

    Feeder feeder(*this, batch_tokens_);
    // Phase 1: every group's shared prefix, once, in its leader's sequence.
    bool any_prefix = false;
    for (size_t i = 0; i < batch.size(); ++i) {
      if (leader[i] != static_cast<int>(i)) continue;
      for (int32_t t = 0; t < batch[i].prefix_len; ++t) feeder.add(batch[i].tokens[t], t, static_cast<llama_seq_id>(i), nullptr);
      any_prefix = true;
    }
    if (any_prefix) {
      feeder.flush();
      llama_memory_t mem = llama_get_memory(ctx_);
      for (size_t i = 0; i < batch.size(); ++i) {
        if (leader[i] >= 0 && leader[i] != static_cast<int>(i)) {
          llama_memory_seq_cp(mem, leader[i], static_cast<llama_seq_id>(i), 0, batch[i].prefix_len);
          stats_.tokens_reused += batch[i].prefix_len;
        }
      }
    }
    // Phase 2: the rest of every sequence; its last token is the output.
    for (size_t i = 0; i < batch.size(); ++i) {
      const auto& s = batch[i];
      const int32_t start = leader[i] >= 0 ? s.prefix_len : 0;
      for (int32_t t = start; t < s.n_tokens; ++t) {
        float* dst = t + 1 == s.n_tokens ? out + i * outputs_ : nullptr;
        feeder.add(s.tokens[t], t, static_cast<llama_seq_id>(i), dst);
      }
    }
    feeder.flush();
  }

  // Pooled models: a non-causal model needs each sequence whole in one micro-batch, so the context
  // and micro-batch are sized to the batch's tokens and the batch is decoded in one call.
  void run_pooled(const std::vector<EngineSequence>& batch, float* out, size_t) {
    size_t total = 0;
    for (const auto& s : batch) total += s.n_tokens;
    ensure_context(total, total);
    std::unique_ptr<llama_batch, BatchDeleter> b(new llama_batch(llama_batch_init(static_cast<int32_t>(total), 0, 1)));
    for (size_t i = 0; i < batch.size(); ++i) {
      for (int32_t t = 0; t < batch[i].n_tokens; ++t) {
        const int k = b->n_tokens++;
        b->token[k] = batch[i].tokens[t];
        b->pos[k] = t;
        b->n_seq_id[k] = 1;
        b->seq_id[k][0] = static_cast<llama_seq_id>(i);
        b->logits[k] = true;
      }
    }
    const int32_t rc = llama_decode(ctx_, *b);
    if (rc == 2) throw Error(ErrorCode::kAborted, "aborted");
    if (rc != 0) throw Error(ErrorCode::kEngineFailure, "llama_decode failed (" + std::to_string(rc) + ")");
    stats_.tokens_evaluated += total;
    for (size_t i = 0; i < batch.size(); ++i) {
      const float* pooled = llama_get_embeddings_seq(ctx_, static_cast<llama_seq_id>(i));
      if (!pooled) throw Error(ErrorCode::kEngineFailure, "llama.cpp returned no pooled output");
      std::copy_n(pooled, outputs_, out + i * outputs_);
    }
  }

  const Model& model_;
  OutputSpec output_;
  std::vector<float> head_;
  size_t outputs_ = 0;
  bool last_token_ = true;
  int batch_tokens_ = kDefaultBatchTokens;
  int max_sequences_ = kDefaultMaxSequences;
  int threads_ = 1;
  llama_context* ctx_ = nullptr;
  uint32_t ubatch_ = 0;
  const std::function<bool()>* should_abort_ = nullptr;
  std::vector<float> captured_;  // hidden states of the current decode's outputs, in output order
  EngineStats stats_;
};

}  // namespace

std::unique_ptr<Engine> make_llama_engine(const Model& model, const OutputSpec& output, const EngineOptions& options) {
  return std::make_unique<LlamaEngine>(model, output, options);
}

}  // namespace qrank
