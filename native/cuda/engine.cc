// The CUDA engine (qrank/engine.h's Engine, backend "cuda") for Qwen3 rerankers and embedders, and
// the CUDA build's entry points cuda_status(), cuda_unsupported_reason() and make_cuda_engine().
//
// One engine holds one device and one stream; the weights (weights.h, converted once); a cuBLASLt
// plan cache (gemm.h); a persistent activation workspace sized for the limits (batch_tokens rows,
// max_sequences outputs) and grown only when a batch needs more; pinned and device buffers for a
// batch's inputs and outputs.
// run(): the planner (host/batch_plan.h) packs the sequences into device batches (shared prefixes
// once); each one is packed into pinned memory, sent with one asynchronous copy, queued
// (Forward::run, should_abort polled between layers), and read back with one copy and the batch's
// only host synchronisation. The engine writes the relevance logit (reranker) or the L2-normalised
// full-width embedding (embedder): host/workspace_layout.h's cuda_output.
// Errors: kOutOfMemory when the workspace cannot grow for a batch (the previous workspace is kept:
// the engine stays usable); kAborted; kInvalidInput for options past the limits; kUnsupported for
// a model or device the engine cannot serve (the reason says which).
// QRANK_CUDA_ATTENTION=cuda-cores selects the CUDA-core attention kernel instead of the tensor-core
// one (a fallback and a second reference for measurements).
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "cuda/cuda_util.h"
#include "cuda/forward.h"
#include "cuda/gemm.h"
#include "cuda/host/batch_plan.h"
#include "cuda/host/model_layout.h"
#include "cuda/host/workspace_layout.h"
#include "cuda/kernels.cuh"
#include "cuda/weights.h"
#include "qrank/engine.h"
#include "qrank/error.h"

namespace qrank {
namespace {

using namespace qrank::cuda;

// Defaults: 32k tokens keep every GEMM of the 0.6B shape near cuBLASLt's peak (NOTES.md) and take
// under 1 GB of activations; 1024 sequences cover 1000 documents under one query in one batch.
constexpr int kDefaultBatchTokens = 32768;
constexpr int kDefaultMaxSequences = 1024;
constexpr int kMaxBatchTokens = 1 << 20;
constexpr int kMaxSequencesLimit = 1 << 16;

// The architectures this build's kernels were compiled for, from nvcc's __CUDA_ARCH_LIST__ ("900"
// -> "sm_90").
std::string built_architectures() {
#ifdef __CUDA_ARCH_LIST__
#define QRANK_STRINGIFY2(x) #x
#define QRANK_STRINGIFY(x) QRANK_STRINGIFY2(x)
  const std::string list = QRANK_STRINGIFY(__CUDA_ARCH_LIST__);
#undef QRANK_STRINGIFY
#undef QRANK_STRINGIFY2
#else
  const std::string list = "900";
#endif
  std::string out;
  size_t at = 0;
  while (at < list.size()) {
    const size_t comma = std::min(list.find(',', at), list.size());
    const int arch = std::atoi(list.substr(at, comma - at).c_str());
    out += (out.empty() ? "sm_" : ", sm_") + std::to_string(arch / 10);
    at = comma + 1;
  }
  return out;
}

// Runs on `device` for the scope, restoring the caller's current device.
class DeviceScope {
 public:
  explicit DeviceScope(int device) {
    if (cudaGetDevice(&previous_) != cudaSuccess) previous_ = -1;
    check_cuda(cudaSetDevice(device), "cudaSetDevice");
  }
  ~DeviceScope() {
    if (previous_ >= 0) cudaSetDevice(previous_);
  }
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;

 private:
  int previous_ = -1;
};

// Why this build cannot run on `device` ("" when it can).
std::string device_reason(int device, cudaDeviceProp* props) {
  const cudaError_t e = cudaGetDeviceProperties(props, device);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    return std::string("cannot read CUDA device ") + std::to_string(device) + ": " + cudaGetErrorString(e);
  }
  int previous = -1;
  if (cudaGetDevice(&previous) != cudaSuccess) previous = -1;
  cudaError_t k = cudaSetDevice(device);
  if (k == cudaSuccess) k = probe_kernels();
  (void)cudaGetLastError();
  if (previous >= 0) cudaSetDevice(previous);
  if (k == cudaSuccess) return "";
  return "unsupported architecture sm_" + std::to_string(props->major * 10 + props->minor) + " (" + props->name + "): this build targets " +
         built_architectures();
}

CudaStatus read_status() {
  CudaStatus s;
  s.built = true;
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess || n <= 0) {
    (void)cudaGetLastError();
    s.reason = std::string("no CUDA device") + (e != cudaSuccess ? std::string(": ") + cudaGetErrorString(e) : std::string());
    return s;
  }
  s.devices = n;
  cudaDeviceProp props{};
  s.reason = device_reason(0, &props);
  s.device_name = props.name;
  s.compute_capability = props.major * 10 + props.minor;
  return s;
}

AttentionKernel attention_kernel_from_environment() {
  const char* v = std::getenv("QRANK_CUDA_ATTENTION");
  return v && std::strcmp(v, "cuda-cores") == 0 ? AttentionKernel::kCudaCores : AttentionKernel::kTensorCores;
}

int option_or(int given, int fallback, int limit, const char* name) {
  if (given > limit) {
    throw Error(ErrorCode::kInvalidInput, std::string("the cuda engine takes ") + name + " up to " + std::to_string(limit));
  }
  return given > 0 ? given : fallback;
}

class CudaEngine final : public Engine {
 public:
  CudaEngine(const Model& model, const OutputSpec& spec, const EngineOptions& options)
      : device_(select_device(options.device_index)),
        batch_tokens_(option_or(options.batch_tokens, kDefaultBatchTokens, kMaxBatchTokens, "batchTokens")),
        max_sequences_(option_or(options.max_sequences, kDefaultMaxSequences, kMaxSequencesLimit, "maxSequences")),
        kernel_(attention_kernel_from_environment()),
        shape_(qwen3_shape(model.info(), spec.kind == OutputSpec::Kind::kHeadRows ? Role::kReranker : Role::kEmbedder)),
        output_(cuda_output(spec, shape_.hidden)),
        gemm_(stream_.get()),
        weights_(model.file(), shape_, spec, stream_.get(), options.on_progress),
        forward_(weights_.view(), gemm_, kernel_, stream_.get()) {
    const int64_t rows = batch_tokens_, outputs = std::min<int64_t>(max_sequences_, batch_tokens_);
    ensure_workspace(rows, outputs);
    ensure_io(input_bytes_bound(rows, outputs), static_cast<size_t>(outputs) * output_.width * sizeof(float));
    stream_.synchronize();
  }

  ~CudaEngine() override {
    cudaSetDevice(device_);
    cudaStreamSynchronize(stream_.get());
  }

  std::string backend() const override { return "cuda"; }
  EngineOutput output() const override { return output_; }
  EngineLimits limits() const override { return EngineLimits{batch_tokens_, max_sequences_, kMaxBatchTokens, kMaxSequencesLimit}; }
  bool reuses_prefixes() const override { return true; }
  EngineStats stats() const override { return stats_; }

  void run(const std::vector<EngineSequence>& batch, float* out, const std::function<bool()>& should_abort) override {
    if (batch.empty()) return;
    const DeviceScope scope(device_);
    const PlanLimits limits{batch_tokens_, max_sequences_, tile_queries(kernel_), shape_.vocab};
    for (const DeviceBatch& b : plan_batches(batch, limits)) run_device_batch(b, out, should_abort);
    stats_.batches += 1;
    stats_.sequences += batch.size();
  }

 private:
  // Checks the device and makes it current for the calling thread (the stream, the weights and the
  // workspace are created on it; run() selects it again on the scheduler's thread).
  static int select_device(int index) {
    const CudaStatus status = cuda_status();
    if (status.devices == 0) throw Error(ErrorCode::kUnsupported, "device 'cuda': " + status.reason);
    if (index < 0 || index >= status.devices) {
      throw Error(ErrorCode::kInvalidInput, "deviceIndex " + std::to_string(index) + " is not one of the " + std::to_string(status.devices) +
                                                " CUDA devices");
    }
    cudaDeviceProp props{};
    const std::string why = device_reason(index, &props);
    if (!why.empty()) throw Error(ErrorCode::kUnsupported, "device 'cuda': " + why);
    check_cuda(cudaSetDevice(index), "cudaSetDevice");
    return index;
  }

  void run_device_batch(const DeviceBatch& b, float* out, const std::function<bool()>& should_abort) {
    if (should_abort && should_abort()) throw Error(ErrorCode::kAborted, "aborted");
    const ActivationLayout layout = ensure_workspace(b.rows(), b.n_outputs());
    const InputLayout inputs = input_layout(b);
    const size_t out_bytes = static_cast<size_t>(b.n_outputs()) * output_.width * sizeof(float);
    ensure_io(inputs.bytes, out_bytes);
    pack_inputs(b, inputs, pinned_in_.at());
    check_cuda(cudaMemcpyAsync(device_in_.at(), pinned_in_.at(), inputs.bytes, cudaMemcpyHostToDevice, stream_.get()), "batch upload");
    BatchInputs in;
    in.tokens = device_in_.at<int32_t>(inputs.tokens);
    in.positions = device_in_.at<int32_t>(inputs.positions);
    in.segments = device_in_.at<AttnSeq>(inputs.segments);
    in.tiles = device_in_.at<AttnTile>(inputs.tiles);
    in.last_rows = device_in_.at<int32_t>(inputs.last_rows);
    in.rows = static_cast<int32_t>(b.rows());
    in.outputs = static_cast<int32_t>(b.n_outputs());
    in.n_tiles = static_cast<int32_t>(b.tiles.size());
    const Activations act = Activations::in(workspace_.at(), layout);
    try {
      forward_.run(in, act, should_abort);
      check_cuda(cudaMemcpyAsync(pinned_out_.at(), act.out, out_bytes, cudaMemcpyDeviceToHost, stream_.get()), "batch download");
      stream_.synchronize();  // the batch's one host synchronisation
    } catch (...) {
      cudaStreamSynchronize(stream_.get());  // nothing may still read the pinned inputs
      (void)cudaGetLastError();
      throw;
    }
    const float* results = pinned_out_.at<float>();
    for (size_t k = 0; k < b.outputs.size(); ++k) {
      std::copy_n(results + k * output_.width, output_.width, out + static_cast<size_t>(b.outputs[k]) * output_.width);
    }
    stats_.tokens_evaluated += static_cast<uint64_t>(b.rows());
    stats_.tokens_reused += b.tokens_reused;
  }

  // The workspace for a batch: grown (never shrunk) when it needs more. Growing frees the old one
  // first (both may not fit); when the new one does not fit either, the old size is taken back and
  // the batch fails with kOutOfMemory.
  ActivationLayout ensure_workspace(int64_t rows, int64_t outputs) {
    const ActivationLayout need = activation_layout(shape_, rows, outputs, static_cast<int64_t>(output_.width));
    if (workspace_.bytes() >= need.bytes) return need;
    const size_t previous = workspace_.bytes();
    workspace_.reset();
    try {
      workspace_ = DeviceBuffer(need.bytes, stream_.get());
    } catch (const Error& e) {
      if (previous > 0) workspace_ = DeviceBuffer(previous, stream_.get());
      if (e.code() != ErrorCode::kOutOfMemory) throw;
      throw Error(ErrorCode::kOutOfMemory, "a batch of " + std::to_string(rows) + " tokens needs " + std::to_string(need.bytes >> 20) +
                                               " MiB of activations on the GPU, which it does not have: " + e.what());
    }
    note_memory();
    return need;
  }

  void ensure_io(size_t in_bytes, size_t out_bytes) {
    if (pinned_in_.bytes() < in_bytes) {
      const size_t grown = std::max(in_bytes, pinned_in_.bytes() * 3 / 2);
      pinned_in_ = PinnedBuffer(grown);
      device_in_.reset();
      device_in_ = DeviceBuffer(grown, stream_.get());
    }
    if (pinned_out_.bytes() < out_bytes) pinned_out_ = PinnedBuffer(std::max(out_bytes, pinned_out_.bytes() * 3 / 2));
    note_memory();
  }

  void note_memory() {
    stats_.device_bytes = weights_.bytes() + workspace_.bytes() + device_in_.bytes() + gemm_.workspace_bytes();
    stats_.device_peak_bytes = std::max(stats_.device_peak_bytes, stats_.device_bytes);
  }

  // Declaration order is construction order: the device is selected before the stream exists, and
  // the stream outlives every buffer freed on it.
  int device_;
  int batch_tokens_;
  int max_sequences_;
  AttentionKernel kernel_;
  Qwen3Shape shape_;
  EngineOutput output_;
  Stream stream_;
  Gemm gemm_;
  DeviceWeights weights_;
  Forward forward_;
  DeviceBuffer workspace_;
  DeviceBuffer device_in_;
  PinnedBuffer pinned_in_;
  PinnedBuffer pinned_out_;
  EngineStats stats_;
};

}  // namespace

CudaStatus cuda_status() {
  static const CudaStatus status = read_status();
  return status;
}

std::string cuda_unsupported_reason(const ModelInfo& info, Role role) {
  const std::string model = model_unsupported_reason(info, role);
  return model.empty() ? cuda_status().reason : model;
}

std::unique_ptr<Engine> make_cuda_engine(const Model& model, const OutputSpec& output, const EngineOptions& options) {
  return std::make_unique<CudaEngine>(model, output, options);
}

}  // namespace qrank
