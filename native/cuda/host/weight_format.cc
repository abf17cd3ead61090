#include "cuda/host/weight_format.h"

#include <cstring>

namespace qrank::cuda {

bool is_weight_type(int t) {
  switch (static_cast<WeightType>(t)) {
    case WeightType::F32:
    case WeightType::F16:
    case WeightType::Q8_0:
    case WeightType::BF16:
      return true;
  }
  return false;
}

std::string weight_type_name(int t) {
  switch (static_cast<WeightType>(t)) {
    case WeightType::F32: return "f32";
    case WeightType::F16: return "f16";
    case WeightType::Q8_0: return "q8_0";
    case WeightType::BF16: return "bf16";
  }
  return "ggml type " + std::to_string(t);
}

uint64_t stored_bytes(WeightType type, int64_t elements) {
  if (elements < 0) return 0;
  const uint64_t n = static_cast<uint64_t>(elements);
  switch (type) {
    case WeightType::F32: return n * 4;
    case WeightType::F16:
    case WeightType::BF16: return n * 2;
    case WeightType::Q8_0: return n % kQ8Block == 0 ? n / kQ8Block * kQ8BlockBytes : 0;
  }
  return 0;
}

uint16_t bf16_bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);  // NaN: quiet, sign kept
  const uint32_t lsb = (u >> 16) & 1u;  // ties go to the even result
  return static_cast<uint16_t>((u + 0x7fffu + lsb) >> 16);
}

float bf16_value(uint16_t bits) {
  const uint32_t u = static_cast<uint32_t>(bits) << 16;
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
}

float half_value(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const int exponent = (h >> 10) & 0x1f;
  uint32_t mantissa = h & 0x3ffu;
  uint32_t u;
  if (exponent == 0x1f) {
    u = sign | 0x7f800000u | (mantissa << 13);  // Inf, NaN (payload kept)
  } else if (exponent != 0) {
    u = sign | static_cast<uint32_t>(exponent - 15 + 127) << 23 | (mantissa << 13);
  } else if (mantissa == 0) {
    u = sign;  // +-0
  } else {
    int e = -14;  // a denormal: normalise the mantissa
    while ((mantissa & 0x400u) == 0) {
      mantissa <<= 1;
      --e;
    }
    u = sign | static_cast<uint32_t>(e + 127) << 23 | ((mantissa & 0x3ffu) << 13);
  }
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
}

void convert_to_bf16_host(WeightType type, const void* src, uint16_t* dst, int64_t n) {
  const auto* bytes = static_cast<const uint8_t*>(src);
  for (int64_t i = 0; i < n; ++i) {
    switch (type) {
      case WeightType::F32: {
        float x;
        std::memcpy(&x, bytes + 4 * i, 4);
        dst[i] = bf16_bits(x);
        break;
      }
      case WeightType::F16: {
        uint16_t h;
        std::memcpy(&h, bytes + 2 * i, 2);
        dst[i] = bf16_bits(half_value(h));
        break;
      }
      case WeightType::BF16:
        std::memcpy(dst + i, bytes + 2 * i, 2);
        break;
      case WeightType::Q8_0: {
        const uint8_t* block = bytes + (i / kQ8Block) * kQ8BlockBytes;
        uint16_t d;
        std::memcpy(&d, block, 2);
        const auto q = static_cast<int8_t>(block[2 + i % kQ8Block]);
        dst[i] = bf16_bits(half_value(d) * static_cast<float>(q));
        break;
      }
    }
  }
}

}  // namespace qrank::cuda
