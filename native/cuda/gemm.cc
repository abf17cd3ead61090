#include "cuda/gemm.h"

#include <string>

namespace qrank::cuda {
namespace {

constexpr size_t kWorkspaceBytes = 32u << 20;
constexpr uintptr_t kAlignment = 256;

void check_lt(cublasStatus_t s, const char* what) {
  if (s == CUBLAS_STATUS_SUCCESS) return;
  const ErrorCode code = s == CUBLAS_STATUS_ALLOC_FAILED ? ErrorCode::kOutOfMemory : ErrorCode::kEngineFailure;
  throw Error(code, std::string("cuBLASLt: ") + what + ": " + cublasLtGetStatusString(s));
}

void check_aligned(const void* p, const char* what) {
  if (reinterpret_cast<uintptr_t>(p) % kAlignment != 0) {
    throw Error(ErrorCode::kEngineFailure, std::string("cuBLASLt operand ") + what + " is not 256-byte aligned");
  }
}

struct LayoutDeleter {
  void operator()(cublasLtMatrixLayoutOpaque_t* l) const { cublasLtMatrixLayoutDestroy(l); }
};
using Layout = std::unique_ptr<cublasLtMatrixLayoutOpaque_t, LayoutDeleter>;

Layout make_layout(cudaDataType type, int64_t rows, int64_t cols, int64_t ld) {
  cublasLtMatrixLayout_t l = nullptr;
  check_lt(cublasLtMatrixLayoutCreate(&l, type, static_cast<uint64_t>(rows), static_cast<uint64_t>(cols), ld), "cublasLtMatrixLayoutCreate");
  return Layout(l);
}

}  // namespace

struct Gemm::Plan {
  struct DescDeleter {
    void operator()(cublasLtMatmulDescOpaque_t* d) const { cublasLtMatmulDescDestroy(d); }
  };
  std::unique_ptr<cublasLtMatmulDescOpaque_t, DescDeleter> desc;
  Layout a, b, c;  // W, x, and C = D
  cublasLtMatmulAlgo_t algo{};
};

Gemm::Gemm(cudaStream_t stream) : stream_(stream) {
  check_lt(cublasLtCreate(&handle_), "cublasLtCreate");
  try {
    workspace_ = DeviceBuffer(kWorkspaceBytes, stream_);
  } catch (...) {
    cublasLtDestroy(handle_);
    throw;
  }
}

Gemm::~Gemm() {
  plans_.clear();
  if (handle_) cublasLtDestroy(handle_);
}

const Gemm::Plan& Gemm::plan(int64_t rows, int64_t out, int64_t in, Operands operands) {
  const Key key{out, rows, in, operands};
  const auto found = plans_.find(key);
  if (found != plans_.end()) return *found->second;
  if (plans_.size() >= kMaxPlans) plans_.clear();

  auto p = std::make_unique<Plan>();
  cublasLtMatmulDesc_t desc = nullptr;
  check_lt(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F), "cublasLtMatmulDescCreate");
  p->desc.reset(desc);
  const cublasOperation_t transpose = CUBLAS_OP_T, plain = CUBLAS_OP_N;
  check_lt(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &transpose, sizeof transpose), "TRANSA");
  check_lt(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &plain, sizeof plain), "TRANSB");
  const cudaDataType in_type = operands == Operands::kF16ToF32 ? CUDA_R_16F : operands == Operands::kF32 ? CUDA_R_32F : CUDA_R_16BF;
  p->a = make_layout(in_type, in, out, in);     // W^T in column-major: [in, out]
  p->b = make_layout(in_type, in, rows, in);    // x^T: [in, rows]
  p->c = make_layout(operands == Operands::kBf16 ? CUDA_R_16BF : CUDA_R_32F, out, rows, out);

  cublasLtMatmulPreference_t pref = nullptr;
  check_lt(cublasLtMatmulPreferenceCreate(&pref), "cublasLtMatmulPreferenceCreate");
  const size_t workspace = workspace_.bytes();
  cublasLtMatmulHeuristicResult_t result{};
  int found_algos = 0;
  cublasStatus_t s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace, sizeof workspace);
  if (s == CUBLAS_STATUS_SUCCESS) {
    s = cublasLtMatmulAlgoGetHeuristic(handle_, desc, p->a.get(), p->b.get(), p->c.get(), p->c.get(), pref, 1, &result, &found_algos);
  }
  cublasLtMatmulPreferenceDestroy(pref);
  check_lt(s, "cublasLtMatmulAlgoGetHeuristic");
  if (found_algos == 0) {
    throw Error(ErrorCode::kUnsupported, "cuBLASLt has no algorithm for [" + std::to_string(rows) + " x " + std::to_string(in) + "] x [" +
                                             std::to_string(in) + " x " + std::to_string(out) + "] on this device");
  }
  p->algo = result.algo;
  return *plans_.emplace(key, std::move(p)).first->second;
}

void Gemm::run(const Plan& p, const void* x, const void* w, void* y, float beta) {
  check_aligned(x, "x");
  check_aligned(w, "W");
  check_aligned(y, "y");
  const float alpha = 1.0f;
  check_lt(cublasLtMatmul(handle_, p.desc.get(), &alpha, w, p.a.get(), x, p.b.get(), &beta, y, p.c.get(), y, p.c.get(), &p.algo,
                          workspace_.at(), workspace_.bytes(), stream_),
           "cublasLtMatmul");
}

void Gemm::linear(const __nv_bfloat16* x, const __nv_bfloat16* w, __nv_bfloat16* y, int64_t rows, int64_t out, int64_t in) {
  if (rows <= 0) return;
  run(plan(rows, out, in, Operands::kBf16), x, w, y, 0.0f);
}

void Gemm::linear_add(const __nv_bfloat16* x, const __nv_bfloat16* w, float* acc, int64_t rows, int64_t out, int64_t in) {
  if (rows <= 0) return;
  run(plan(rows, out, in, Operands::kBf16ToF32), x, w, acc, 1.0f);
}

void Gemm::products(const void* x, const void* w, float* y, int64_t rows, int64_t out, int64_t in, bool f16) {
  if (rows <= 0 || out <= 0) return;
  run(plan(rows, out, in, f16 ? Operands::kF16ToF32 : Operands::kF32), x, w, y, 0.0f);
}

}  // namespace qrank::cuda
