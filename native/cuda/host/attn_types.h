// The attention work list of one packed batch, shared by the host planner (batch_plan.cc) and the
// attention kernels (kernels.cu, attention_mma.cu). Plain C++ with fixed-size fields: the planner
// writes these structs into pinned memory and the kernels read the same bytes on the device.
//
// A packed batch is T rows (tokens) laid end to end, no padding. An attention segment is a run of
// query rows and the keys they see:
//   queries  rows [q_start, q_start + q_len)
//   keys     a shared prefix, rows [prefix_start, prefix_start + prefix_len) (none when prefix_len
//            is 0), followed by the segment's own rows [kv_start, kv_start + q_len).
// Query i (0-based within the segment) sees the whole prefix and its own keys 0..i (causal), i.e.
// key indices 0 .. prefix_len + i in the concatenated key list.
#pragma once

#include <cstdint>

namespace qrank::cuda {

struct AttnSeq {
  int32_t q_start;
  int32_t q_len;
  int32_t prefix_start;
  int32_t prefix_len;
  int32_t kv_start;
};

// One block of work: queries [q_offset, q_offset + tile) of segment `seq`.
struct AttnTile {
  int32_t seq;
  int32_t q_offset;
};

static_assert(sizeof(AttnSeq) == 20, "AttnSeq is copied byte for byte to the device");
static_assert(sizeof(AttnTile) == 8, "AttnTile is copied byte for byte to the device");

// Queries per tile of each attention kernel; the planner cuts segments into tiles of one of these.
constexpr int kAttnQueries = 8;      // the CUDA-core kernel (attention): one warp per query
constexpr int kAttnMmaQueries = 64;  // the tensor-core kernel (attention_mma): 4 warps x 16 rows

}  // namespace qrank::cuda
