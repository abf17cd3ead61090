// Which engine serves a model (see qrank/engine.h): the plan is made from the file's facts before
// anything is loaded, so that llama.cpp loads its CPU weights only for an engine that runs them.
#include <string>

#include "llama.h"
#include "qrank/engine.h"
#include "qrank/error.h"

namespace qrank {
namespace {

constexpr int kAllLayers = 1 << 20;  // llama.cpp clamps it to the model's layer count

// llama.cpp itself can put layers on a GPU: built with ggml-cuda and a device is present.
bool llama_gpu_available() {
  init_llama_backend();
  return llama_supports_gpu_offload();
}

}  // namespace

EnginePlan plan_engine(Device device, const ModelInfo& info, Role role) {
  const EnginePlan cpu{Backend::kLlamaCpu, ModelLoad{true, 0}};
  if (device == Device::kCpu) return cpu;
  const std::string why_not = cuda_unsupported_reason(info, role);
  if (why_not.empty()) return EnginePlan{Backend::kCuda, ModelLoad{false, 0}};
  if (llama_gpu_available()) return EnginePlan{Backend::kLlamaGpu, ModelLoad{true, kAllLayers}};
  if (device == Device::kAuto) return cpu;
  throw Error(ErrorCode::kUnsupported,
              "device 'cuda' cannot serve " + info.path + ": " + why_not +
                  "; and this build's llama.cpp has no GPU backend (ggml-cuda) for it. Use device 'cpu' or 'auto'");
}

std::unique_ptr<Engine> make_engine(const EnginePlan& plan, const Model& model, const OutputSpec& output,
                                    const EngineOptions& options) {
  if (plan.backend == Backend::kCuda) return make_cuda_engine(model, output, options);
  return make_llama_engine(model, output, options);
}

}  // namespace qrank
