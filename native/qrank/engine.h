// The engine interface: what a backend (llama.cpp on the CPU, qrank's CUDA engine on the GPU) must do.
// An engine runs one packed batch of token sequences and writes a fixed number of floats per
// sequence. Tokenisation, prompts, batching, scheduling and the last step of post-processing live
// above it and exist once (recipe.cc, scheduler.cc, pipeline.cc).
//
// The seam:
//  - The recipe says what the network must produce (OutputSpec: head rows, the last hidden state, or
//    llama.cpp's pooling). The engine says what it writes (EngineOutput): raw values, or values it
//    already reduced on its device (the relevance logit of a 2-row head, an L2-normalised
//    embedding); the pipeline finishes whatever is left, so both paths give the same numbers.
//  - Each engine validates its options and reports its limits (EngineLimits); nothing above it
//    hard-codes a backend's numbers.
//  - One factory per device. plan_engine() decides, from the model's facts alone, which engine
//    serves a device request (and whether llama.cpp must load its CPU weights), so a model is
//    loaded once, with or without llama.cpp's copy of the weights.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "qrank/model.h"
#include "qrank/recipe.h"

namespace qrank {

enum class Device { kAuto, kCpu, kCuda };

struct EngineOptions {
  int batch_tokens = 0;   // token budget of one batch (0: backend default)
  int max_sequences = 0;  // sequences in one batch (0: backend default)
  int threads = 0;        // CPU threads (0: all cores)
  int device_index = 0;   // which GPU (CUDA engines)
  std::function<bool(float)> on_progress;  // weight upload progress 0..1 (engines with their own weights)
};

// What an engine accepts and uses. Options beyond the maxima are an Error(kInvalidInput) that names
// the limit, never silently clamped.
struct EngineLimits {
  int batch_tokens = 0;         // the token budget in use
  int max_sequences = 0;        // sequences per batch in use
  int max_batch_tokens = 0;     // the largest budget this engine accepts
  int max_sequences_limit = 0;  // the most sequences per batch this engine accepts
};

// What run() writes for each sequence.
struct EngineOutput {
  size_t width = 0;
  // OutputSpec::kHeadRows with two rows: the engine wrote the relevance logit row 0 - row 1 (width 1)
  bool relevance_logit = false;
  // OutputSpec::kLastHidden: the engine wrote the vector L2-normalised (full width)
  bool normalised = false;
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
  uint64_t device_bytes = 0;      // memory the engine holds on its device (0 on the CPU)
  uint64_t device_peak_bytes = 0;
};

class Engine {
 public:
  virtual ~Engine() = default;
  virtual std::string backend() const = 0;  // "llama.cpp-cpu", "llama.cpp-cuda", "cuda"
  virtual EngineOutput output() const = 0;
  virtual EngineLimits limits() const = 0;
  virtual bool reuses_prefixes() const = 0;
  // Runs the sequences; writes output().width floats per sequence into `out`, in order.
  // `should_abort` is polled during compute; when it returns true the call throws Error(kAborted).
  // A batch that does not fit the device's memory throws Error(kOutOfMemory) and leaves the engine usable.
  virtual void run(const std::vector<EngineSequence>& batch, float* out, const std::function<bool()>& should_abort) = 0;
  virtual EngineStats stats() const = 0;
};

// Which engine serves a request, decided from the model's facts before it is loaded.
enum class Backend { kLlamaCpu, kLlamaGpu, kCuda };
struct EnginePlan {
  Backend backend = Backend::kLlamaCpu;
  ModelLoad load;  // what llama.cpp must load for it
};

// kCpu: llama.cpp on the CPU. kCuda: qrank's CUDA engine for the architectures it implements
// (Qwen3), else llama.cpp's ggml-cuda when this build has it, else Error(kUnsupported) that says why
// (no CUDA build, no device, unsupported architecture). kAuto: the CUDA engine when it can serve the
// model here, else the CPU.
EnginePlan plan_engine(Device device, const ModelInfo& info, Role role);
std::unique_ptr<Engine> make_engine(const EnginePlan& plan, const Model& model, const OutputSpec& output,
                                    const EngineOptions& options);

// The llama.cpp backend (CPU, or GPU layers through ggml-cuda when built with it).
std::unique_ptr<Engine> make_llama_engine(const Model& model, const OutputSpec& output, const EngineOptions& options);

// --- the CUDA engine (native/cuda/; native/no_cuda.cc in a build without it) ---------------------

struct CudaStatus {
  bool built = false;       // this build has the CUDA engine
  int devices = 0;          // usable devices found
  std::string device_name;  // of device 0
  int compute_capability = 0;  // e.g. 90
  std::string reason;       // why the CUDA engine cannot run here ("" when it can)
};
CudaStatus cuda_status();
// Why the CUDA engine cannot serve this model in this role here ("" when it can): the architecture,
// or cuda_status().reason.
std::string cuda_unsupported_reason(const ModelInfo& info, Role role);
std::unique_ptr<Engine> make_cuda_engine(const Model& model, const OutputSpec& output, const EngineOptions& options);

}  // namespace qrank
