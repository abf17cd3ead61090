// The engine's linear layers on cuBLASLt: bf16 operands, fp32 accumulation, over a whole packed
// batch. Activations are row-major [rows, in]; weights row-major [out, in] (GGUF's layout, see
// host/model_layout.h), so y = x W^T is, in cuBLASLt's column-major terms, D[out, rows] =
// op(A)[out, in] B[in, rows] with A = W (transposed, ld = in) and B = x (ld = in): the "TN" case.
//
//   linear      y   [rows, out] bf16  = x W^T
//   linear_add  acc [rows, out] fp32 += x W^T    (C = D = acc, beta = 1: the residual add is free)
//   products    y   [rows, out] fp32  = x W^T    with fp16 or fp32 operands (the vector search's
//                                                 query-by-row scores, native/cuda/vector_gpu.cu)
//
// Plans: one matmul descriptor, layouts and algorithm per (out, rows, in, operands), chosen once by
// cuBLASLt's heuristic and cached (bounded; cleared when it grows past kMaxPlans). The workspace
// is allocated once. Every pointer must be 256-byte aligned (the heuristic assumes it); a
// misaligned one is an Error(kEngineFailure), never a wrong result.
#pragma once

#include <cublasLt.h>
#include <cuda_bf16.h>

#include <cstdint>
#include <map>
#include <memory>
#include <tuple>

#include "cuda/cuda_util.h"

namespace qrank::cuda {

class Gemm {
 public:
  explicit Gemm(cudaStream_t stream);
  ~Gemm();
  Gemm(const Gemm&) = delete;
  Gemm& operator=(const Gemm&) = delete;

  void linear(const __nv_bfloat16* x, const __nv_bfloat16* w, __nv_bfloat16* y, int64_t rows, int64_t out, int64_t in);
  void linear_add(const __nv_bfloat16* x, const __nv_bfloat16* w, float* acc, int64_t rows, int64_t out, int64_t in);
  // x and w both fp16 (f16) or both fp32
  void products(const void* x, const void* w, float* y, int64_t rows, int64_t out, int64_t in, bool f16);

  size_t plans() const { return plans_.size(); }
  size_t workspace_bytes() const { return workspace_.bytes(); }

 private:
  struct Plan;
  enum class Operands { kBf16, kBf16ToF32, kF16ToF32, kF32 };  // inputs, and the output when it differs
  using Key = std::tuple<int64_t, int64_t, int64_t, Operands>;  // out, rows, in, operands
  static constexpr size_t kMaxPlans = 1024;

  const Plan& plan(int64_t rows, int64_t out, int64_t in, Operands operands);
  void run(const Plan& p, const void* x, const void* w, void* y, float beta);

  cudaStream_t stream_;
  cublasLtHandle_t handle_ = nullptr;
  DeviceBuffer workspace_;
  std::map<Key, std::unique_ptr<Plan>> plans_;
};

}  // namespace qrank::cuda
