#include "cuda/host/workspace_layout.h"

#include <algorithm>
#include <cstring>

#include "qrank/error.h"

namespace qrank::cuda {
namespace {

// Appends regions of `bytes` at aligned offsets.
class Arena {
 public:
  size_t take(size_t bytes) {
    const size_t at = (end_ + kAlign - 1) / kAlign * kAlign;
    end_ = at + bytes;
    return at;
  }
  size_t size() const { return (end_ + kAlign - 1) / kAlign * kAlign; }

 private:
  size_t end_ = 0;
};

size_t count(int64_t a, int64_t b = 1) { return static_cast<size_t>(a) * static_cast<size_t>(b); }

template <typename T>
void put(const std::vector<T>& v, size_t offset, void* dst) {
  if (!v.empty()) std::memcpy(static_cast<uint8_t*>(dst) + offset, v.data(), v.size() * sizeof(T));
}

}  // namespace

ActivationLayout activation_layout(const Qwen3Shape& s, int64_t rows, int64_t outputs, int64_t out_width) {
  if (rows <= 0 || outputs <= 0 || outputs > rows || out_width <= 0) {
    throw Error(ErrorCode::kInvalidInput, "a workspace needs rows >= outputs >= 1 and an output width");
  }
  ActivationLayout a;
  a.rows = rows;
  a.outputs = outputs;
  a.wide_cols = std::max({s.qkv_width(), 2 * s.ffn, s.q_width()});
  a.narrow_cols = std::max(s.qkv_width(), s.ffn);
  Arena arena;
  a.residual = arena.take(count(rows, s.hidden) * sizeof(float));
  a.normed = arena.take(count(rows, s.hidden) * 2);
  a.wide = arena.take(count(rows, a.wide_cols) * 2);
  a.narrow = arena.take(count(rows, a.narrow_cols) * 2);
  a.last_residual = arena.take(count(outputs, s.hidden) * sizeof(float));
  a.last_attn = arena.take(count(outputs, s.q_width()) * 2);
  a.out = arena.take(count(outputs, out_width) * sizeof(float));
  a.bytes = arena.size();
  return a;
}

InputLayout input_layout(const DeviceBatch& b) {
  InputLayout in;
  Arena arena;
  in.tokens = arena.take(b.tokens.size() * sizeof(int32_t));
  in.positions = arena.take(b.positions.size() * sizeof(int32_t));
  in.segments = arena.take(b.segments.size() * sizeof(AttnSeq));
  in.tiles = arena.take(b.tiles.size() * sizeof(AttnTile));
  in.last_rows = arena.take(b.last_rows.size() * sizeof(int32_t));
  in.bytes = arena.size();
  return in;
}

size_t input_bytes_bound(int64_t rows, int64_t outputs) {
  const size_t r = count(rows), segments = 2 * count(outputs);
  const size_t tiles = segments + r / kAttnQueries;
  return 2 * r * sizeof(int32_t) + segments * sizeof(AttnSeq) + tiles * sizeof(AttnTile) + count(outputs) * sizeof(int32_t) + 5 * kAlign;
}

void pack_inputs(const DeviceBatch& b, const InputLayout& in, void* dst) {
  put(b.tokens, in.tokens, dst);
  put(b.positions, in.positions, dst);
  put(b.segments, in.segments, dst);
  put(b.tiles, in.tiles, dst);
  put(b.last_rows, in.last_rows, dst);
}

EngineOutput cuda_output(const OutputSpec& spec, int64_t hidden) {
  switch (spec.kind) {
    case OutputSpec::Kind::kHeadRows:
      if (spec.head_rows.size() != 2) {
        throw Error(ErrorCode::kUnsupported, "the CUDA engine computes 2-row (yes/no) heads; this recipe asks for " +
                                                 std::to_string(spec.head_rows.size()) + " rows");
      }
      return EngineOutput{1, true, false};
    case OutputSpec::Kind::kLastHidden:
      return EngineOutput{static_cast<size_t>(hidden), false, true};
    case OutputSpec::Kind::kPooled:
      break;
  }
  throw Error(ErrorCode::kUnsupported, "the CUDA engine computes last-token outputs; this model needs llama.cpp's pooling");
}

}  // namespace qrank::cuda
