// The CUDA engine's batch planner: turns the scheduler's EngineSequence list into packed device
// batches (no padding), computing each shared prefix once.
//
// Layout of one device batch (rows = tokens, end to end):
//  - a prefix group (sequences with the same `group` >= 0, the same prefix_len P with
//    1 <= P < n_tokens, and the same first P tokens as the group's first member) becomes P rows of
//    its own (positions 0..P-1, an attention segment of its own), followed by each member's
//    remaining n - P rows (positions P..n-1; a segment whose prefix is the group's P rows);
//  - any other sequence (no group, a group of one, a member whose prefix differs) is n rows,
//    positions 0..n-1, a segment without prefix.
//  Units are laid out in the order of their first sequence. Each output sequence's result is read
//  at its last row (last_rows), and written to the engine batch's index outputs[i].
// Splitting: a batch holds at most limits.max_rows rows and limits.max_sequences output sequences.
// A group that does not fit the current batch starts a new one; a group that fits no batch is cut
// between members, and each part carries its own copy of the prefix. A single sequence (or prefix
// plus one member) longer than max_rows gets a batch of its own that is longer than max_rows: the
// engine grows its workspace for it (or reports kOutOfMemory).
// Tiles: each segment is cut into tiles of limits.tile_queries queries, ordered by decreasing
// work (keys seen by the tile's last query), so the longest tiles start first.
// Checks: empty sequences and token ids outside [0, vocab) are Error(kInvalidInput); nothing is
// silently dropped.
#pragma once

#include <cstdint>
#include <vector>

#include "cuda/host/attn_types.h"
#include "qrank/engine.h"

namespace qrank::cuda {

struct PlanLimits {
  int64_t max_rows = 0;       // rows of one device batch (the workspace's token budget)
  int64_t max_sequences = 0;  // output sequences of one device batch
  int32_t tile_queries = kAttnMmaQueries;
  int64_t vocab = 0;          // token ids must lie in [0, vocab)
};

struct DeviceBatch {
  std::vector<int32_t> tokens;     // [rows]
  std::vector<int32_t> positions;  // [rows]
  std::vector<AttnSeq> segments;   // prefixes and sequences, in row order
  std::vector<AttnTile> tiles;
  std::vector<int32_t> last_rows;  // [outputs] the row of each output sequence's last token
  std::vector<int32_t> outputs;    // [outputs] its index in the engine batch
  uint64_t tokens_reused = 0;      // prefix tokens not evaluated again (members after the first)

  int64_t rows() const { return static_cast<int64_t>(tokens.size()); }
  int64_t n_outputs() const { return static_cast<int64_t>(outputs.size()); }
};

std::vector<DeviceBatch> plan_batches(const std::vector<EngineSequence>& batch, const PlanLimits& limits);

// Cuts every segment of `b` into tiles of `tile_queries`, longest work first (replaces b.tiles).
void make_tiles(DeviceBatch& b, int32_t tile_queries);

}  // namespace qrank::cuda
