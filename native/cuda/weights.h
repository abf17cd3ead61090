// The model's weights on the device: read from the GGUF (GgufFile: tensor directory and mmapped
// bytes), converted once to bf16 into the fused layouts of host/model_layout.h (QKV, gate+up),
// norms and the RoPE frequencies in fp32, and the 2 head rows (OutputSpec::head_tensor/head_rows,
// read on the host with GgufFile::rows) in fp32 for a reranker.
//
// Upload: each tensor's bytes go, in chunks of whole rows, through one of two pinned staging
// buffers and a raw device buffer, where convert_to_bf16 writes them into place; an event per
// slot lets the host fill one slot while the device copies and converts the other. Progress is
// reported over the bytes read (return false to abort: Error kAborted). Shapes are checked against
// the model's facts before anything is allocated (kBadModel / kUnsupported).
#pragma once

#include <functional>
#include <vector>

#include "cuda/cuda_util.h"
#include "cuda/forward.h"
#include "qrank/gguf_file.h"
#include "qrank/recipe.h"

namespace qrank::cuda {

class DeviceWeights {
 public:
  DeviceWeights(const GgufFile& file, const Qwen3Shape& shape, const OutputSpec& output, cudaStream_t stream,
                const std::function<bool(float)>& progress);

  const ModelWeights& view() const { return view_; }
  uint64_t bytes() const { return bytes_; }

 private:
  std::vector<DeviceBuffer> buffers_;
  ModelWeights view_;
  uint64_t bytes_ = 0;
};

}  // namespace qrank::cuda
