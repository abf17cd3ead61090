#include "cuda/weights.h"

#include <algorithm>
#include <cstring>

#include "cuda/kernels.cuh"

namespace qrank::cuda {
namespace {

constexpr size_t kChunkBytes = 32u << 20;

class Uploader {
 public:
  Uploader(const GgufFile& file, cudaStream_t stream, uint64_t total, const std::function<bool(float)>& progress)
      : file_(file), stream_(stream), total_(std::max<uint64_t>(total, 1)), progress_(progress) {
    for (Slot& s : slots_) {
      s.pinned = PinnedBuffer(kChunkBytes);
      s.raw = DeviceBuffer(kChunkBytes, stream_);
    }
  }
  // Pinned memory and raw buffers must not go while a copy from them is queued.
  ~Uploader() { cudaStreamSynchronize(stream_); }
  Uploader(const Uploader&) = delete;
  Uploader& operator=(const Uploader&) = delete;

  DeviceBuffer matrix(const FusedMatrix& m) {
    DeviceBuffer dst(m.elements() * sizeof(bf16), stream_);
    for (const MatrixPart& part : m.parts) {
      const TensorInfo& t = part.tensor;
      const uint8_t* src = file_.data(t);
      const uint64_t row_bytes = t.bytes / static_cast<uint64_t>(t.ne[1]);
      const int64_t rows_per_chunk = std::max<int64_t>(1, static_cast<int64_t>(kChunkBytes / row_bytes));
      for (int64_t r = 0; r < t.ne[1]; r += rows_per_chunk) {
        const int64_t n = std::min(rows_per_chunk, t.ne[1] - r);
        bf16* out = dst.at<bf16>() + (part.first_row + r) * m.cols;
        through_slot(src + r * row_bytes, n * row_bytes, nullptr, [&](const void* raw) {
          check_cuda(convert_to_bf16(static_cast<WeightType>(t.type), raw, out, n * m.cols, stream_), "convert_to_bf16");
        });
        report(n * row_bytes);
      }
    }
    return dst;
  }

  // A 1-D tensor as fp32, dequantised on the host by ggml (GgufFile::rows).
  DeviceBuffer vector(const TensorInfo& t) {
    int64_t length = 0;
    const std::vector<float> values = file_.rows(t.name, {0}, &length);
    return floats(values, t.bytes);
  }

  // Host floats on the device; `read` counts towards the progress.
  DeviceBuffer floats(const std::vector<float>& values, uint64_t read) {
    const size_t bytes = values.size() * sizeof(float);
    DeviceBuffer dst(bytes, stream_);
    through_slot(values.data(), bytes, dst.at(), [](const void*) {});
    report(read);
    return dst;
  }

 private:
  struct Slot {
    PinnedBuffer pinned;
    DeviceBuffer raw;
    Event done;  // the slot's copy and conversion have run
  };

  // Copies `bytes` into a free slot's pinned buffer, then to `device_dst`, or to the slot's raw
  // buffer when it is null, which `convert` then reads.
  template <typename Convert>
  void through_slot(const void* src, size_t bytes, void* device_dst, Convert convert) {
    if (bytes > kChunkBytes) throw Error(ErrorCode::kEngineFailure, "a weight row does not fit the staging buffer");
    Slot& s = slots_[next_++ % 2];
    s.done.wait();
    std::memcpy(s.pinned.at(), src, bytes);
    check_cuda(cudaMemcpyAsync(device_dst ? device_dst : s.raw.at(), s.pinned.at(), bytes, cudaMemcpyHostToDevice, stream_), "weight upload");
    if (!device_dst) convert(static_cast<const void*>(s.raw.at()));
    s.done.record(stream_);
  }

  void report(uint64_t bytes) {
    done_ += bytes;
    if (progress_ && !progress_(static_cast<float>(std::min(1.0, static_cast<double>(done_) / static_cast<double>(total_))))) {
      throw Error(ErrorCode::kAborted, "model load aborted");
    }
  }

  const GgufFile& file_;
  cudaStream_t stream_;
  uint64_t total_;
  uint64_t done_ = 0;
  const std::function<bool(float)>& progress_;
  Slot slots_[2];
  size_t next_ = 0;
};

}  // namespace

DeviceWeights::DeviceWeights(const GgufFile& file, const Qwen3Shape& shape, const OutputSpec& output, cudaStream_t stream,
                             const std::function<bool(float)>& progress) {
  const WeightPlan plan = plan_weights(shape, file.tensors());
  std::vector<float> head;
  if (output.kind == OutputSpec::Kind::kHeadRows) {
    int64_t row_length = 0;
    head = file.rows(output.head_tensor, output.head_rows, &row_length);
    if (row_length != shape.hidden) {
      throw Error(ErrorCode::kBadModel, output.head_tensor + " has rows of " + std::to_string(row_length) + " values, not the hidden size " +
                                            std::to_string(shape.hidden));
    }
  }
  const uint64_t head_bytes = head.size() * sizeof(float);
  Uploader up(file, stream, plan.source_bytes() + head_bytes, progress);
  const auto keep = [&](DeviceBuffer b) {
    bytes_ += b.bytes();
    buffers_.push_back(std::move(b));
    return buffers_.back().at();
  };
  view_.shape = shape;
  view_.embeddings = static_cast<const bf16*>(keep(up.matrix(plan.embeddings)));
  for (const LayerPlan& l : plan.layers) {
    LayerWeights w;
    w.qkv = static_cast<const bf16*>(keep(up.matrix(l.qkv)));
    w.o = static_cast<const bf16*>(keep(up.matrix(l.o)));
    w.gate_up = static_cast<const bf16*>(keep(up.matrix(l.gate_up)));
    w.down = static_cast<const bf16*>(keep(up.matrix(l.down)));
    w.attn_norm = static_cast<const float*>(keep(up.vector(l.attn_norm)));
    w.q_norm = static_cast<const float*>(keep(up.vector(l.q_norm)));
    w.k_norm = static_cast<const float*>(keep(up.vector(l.k_norm)));
    w.ffn_norm = static_cast<const float*>(keep(up.vector(l.ffn_norm)));
    view_.layers.push_back(w);
  }
  view_.output_norm = static_cast<const float*>(keep(up.vector(plan.output_norm)));
  view_.rope_inv_freq = static_cast<const float*>(keep(up.floats(rope_inv_freq(shape.rope_theta, shape.head_dim), 0)));
  if (!head.empty()) view_.head = static_cast<const float*>(keep(up.floats(head, head_bytes)));
  check_cuda(cudaStreamSynchronize(stream), "weight upload");
}

}  // namespace qrank::cuda
