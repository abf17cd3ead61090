// The CUDA engine's entry points in a build without it (the default CPU build): every request for
// it is answered with the reason, and `device: 'auto'` falls back to the CPU. The same for the
// vector index's `device: 'cuda'` (native/cuda/vector_cuda.cc in the CUDA build).
#include "qrank/engine.h"
#include "qrank/error.h"
#include "vector_backend.h"

namespace qrank {
namespace {

const char kNoCudaBuild[] = "this build of qrank has no CUDA engine (build it with `npm run build:cuda` on a machine with nvcc and cuBLAS)";

}  // namespace

CudaStatus cuda_status() {
  CudaStatus s;
  s.reason = kNoCudaBuild;
  return s;
}

std::string cuda_unsupported_reason(const ModelInfo&, Role) { return kNoCudaBuild; }

std::unique_ptr<Engine> make_cuda_engine(const Model&, const OutputSpec&, const EngineOptions&) {
  throw Error(ErrorCode::kUnsupported, kNoCudaBuild);
}

std::unique_ptr<VectorBackend> make_cuda_vector_backend(const IndexSpec&, std::unique_ptr<VectorBackend>) {
  throw Error(ErrorCode::kUnsupported, "this build of qrank has no CUDA vector search (build it with `npm run build:cuda`)");
}

}  // namespace qrank
