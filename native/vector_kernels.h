// Distance kernels qrank gives USearch for f32 and f16 vectors (native/vector_kernels.cc says why).
#pragma once

#include <cstddef>

namespace qrank {

// (a, b, dimensions) -> USearch's distance: 1 - dot for inner products, the squared L2 distance.
using DistanceKernel = float (*)(size_t a, size_t b, size_t n);

// The best kernel for this CPU, or nullptr where NumKong's should be used.
DistanceKernel fast_kernel(bool f16, bool l2);

}  // namespace qrank
