// The GGUF weight formats the CUDA engine reads, and a host reference of their conversion to bf16.
// The engine converts on the device (kernels.cu: convert_to_bf16); this file is the independent
// reference: host_test.cc checks it against ggml's own dequantisation rounded to bf16, and
// kernel_check.cu checks the device conversion against it, bit for bit (any NaN matches any NaN).
//
// Rounding: bf16 keeps the top 16 bits of an fp32, rounded to nearest, ties to even. Infinities
// stay infinite, fp32 denormals round like any other value (bf16 has fp32's exponent range), NaN
// stays NaN (sign kept, quiet bit set, as ggml_fp32_to_bf16 does).
// Formats: F32, F16 (IEEE binary16, denormals included), BF16 (copied), Q8_0 (blocks of 32 values:
// an fp16 scale d, then 32 int8 q; value = d * q computed in fp32, exact since d has 11 significant
// bits and q 8).
#pragma once

#include <cstdint>
#include <string>

namespace qrank::cuda {

// ggml_type values (host_test.cc checks them against ggml.h).
enum class WeightType : int { F32 = 0, F16 = 1, Q8_0 = 8, BF16 = 30 };

constexpr int kQ8Block = 32;       // values per Q8_0 block
constexpr int kQ8BlockBytes = 34;  // fp16 scale + 32 int8

bool is_weight_type(int ggml_type);
std::string weight_type_name(int ggml_type);  // "f32", "f16", "bf16", "q8_0", else "ggml type N"
// Bytes of `elements` values in the file; 0 when the count is impossible (Q8_0 not a multiple of 32).
uint64_t stored_bytes(WeightType type, int64_t elements);

uint16_t bf16_bits(float x);
float bf16_value(uint16_t bits);
float half_value(uint16_t bits);

// `n` elements of a tensor in `type` to bf16 bits (Q8_0: n is a multiple of 32).
void convert_to_bf16_host(WeightType type, const void* src, uint16_t* dst, int64_t n);

}  // namespace qrank::cuda
