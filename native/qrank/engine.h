// The engine interface: what a backend (llama.cpp on CPU today, qrank's CUDA kernels later) must do.
// An engine runs one packed batch of token sequences and writes a fixed number of floats per
// sequence. Tokenisation, prompts, batching and scheduling live above it and are shared.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "qrank/model.h"
#include "qrank/recipe.h"

namespace qrank {

struct EngineOptions {
  int batch_tokens = 0;   // token budget of one batch (0: backend default)
  int max_sequences = 0;  // sequences in one batch (0: backend default)
  int threads = 0;        // CPU threads (0: all cores)
};

// One sequence of a batch. Sequences that share `group` (>= 0) begin with the same `prefix_len`
// tokens; a backend may evaluate that prefix once and reuse it (K/V) for every member.
struct EngineSequence {
  const Token* tokens = nullptr;
  int32_t n_tokens = 0;
  int32_t group = -1;
  int32_t prefix_len = 0;
};

struct EngineStats {
  uint64_t batches = 0;
  uint64_t sequences = 0;
  uint64_t tokens_evaluated = 0;  // tokens the network actually ran (shared prefixes once)
  uint64_t tokens_reused = 0;     // prefix tokens not evaluated again thanks to reuse
};

class Engine {
 public:
  virtual ~Engine() = default;
  virtual std::string backend() const = 0;   // "llama.cpp-cpu", "cuda"
  virtual size_t outputs_per_sequence() const = 0;
  virtual int batch_tokens() const = 0;
  virtual int max_sequences() const = 0;
  virtual bool reuses_prefixes() const = 0;
  // Runs the sequences; writes outputs_per_sequence() floats per sequence into `out`, in order.
  // `should_abort` is polled during compute; when it returns true the call throws Error(kAborted).
  virtual void run(const std::vector<EngineSequence>& batch, float* out, const std::function<bool()>& should_abort) = 0;
  virtual EngineStats stats() const = 0;
};

// The llama.cpp backend on the CPU.
std::unique_ptr<Engine> make_llama_engine(const Model& model, const OutputSpec& output, const EngineOptions& options);

}  // namespace qrank
