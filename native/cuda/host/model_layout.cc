#include "cuda/host/model_layout.h"

#include <cmath>
#include <unordered_map>

#include "cuda/host/weight_format.h"
#include "qrank/error.h"

namespace qrank::cuda {
namespace {

bool readable_weight_type(const std::string& name) { return name == "f32" || name == "f16" || name == "bf16" || name == "q8_0"; }

std::string shape_text(const int64_t* ne) {
  std::string s = "[" + std::to_string(ne[0]);
  int last = 3;
  while (last > 1 && ne[last] == 1) --last;
  for (int i = 1; i <= last; ++i) s += ", " + std::to_string(ne[i]);
  return s + "]";
}

class Directory {
 public:
  explicit Directory(const std::vector<TensorInfo>& tensors) {
    for (const TensorInfo& t : tensors) by_name_.emplace(t.name, &t);
  }

  // A weight matrix of `rows` outputs over `cols` inputs (ne = [cols, rows]).
  TensorInfo matrix(const std::string& name, int64_t rows, int64_t cols) const {
    const TensorInfo& t = find(name);
    const int64_t want[4] = {cols, rows, 1, 1};
    check(t, want);
    return t;
  }

  // A table with `cols` per row and at least `min_rows` rows.
  TensorInfo table(const std::string& name, int64_t min_rows, int64_t cols) const {
    const TensorInfo& t = find(name);
    const int64_t want[4] = {cols, t.ne[1] >= min_rows ? t.ne[1] : min_rows, 1, 1};
    check(t, want);
    return t;
  }

  TensorInfo vector(const std::string& name, int64_t length) const {
    const TensorInfo& t = find(name);
    const int64_t want[4] = {length, 1, 1, 1};
    check(t, want);
    return t;
  }

 private:
  const TensorInfo& find(const std::string& name) const {
    const auto it = by_name_.find(name);
    if (it == by_name_.end()) throw Error(ErrorCode::kBadModel, "tensor " + name + " is missing from the model file");
    return *it->second;
  }

  static void check(const TensorInfo& t, const int64_t* want) {
    for (int i = 0; i < 4; ++i) {
      if (t.ne[i] != want[i]) {
        throw Error(ErrorCode::kBadModel, "tensor " + t.name + " has shape " + shape_text(t.ne) + "; the model's metadata says " + shape_text(want));
      }
    }
    if (!is_weight_type(t.type)) {
      throw Error(ErrorCode::kUnsupported, "tensor " + t.name + " is " + weight_type_name(t.type) +
                                               ": the CUDA engine reads f32, f16, bf16 and q8_0 weights");
    }
    const uint64_t expected = stored_bytes(static_cast<WeightType>(t.type), t.elements());
    if (expected == 0 || t.bytes != expected) {
      throw Error(ErrorCode::kBadModel, "tensor " + t.name + " holds " + std::to_string(t.bytes) + " bytes, not the " +
                                            std::to_string(expected) + " its type and shape need");
    }
  }

  std::unordered_map<std::string, const TensorInfo*> by_name_;
};

FusedMatrix fuse(std::vector<TensorInfo> parts) {
  FusedMatrix m;
  m.cols = parts.front().ne[0];
  for (TensorInfo& t : parts) {
    const int64_t rows = t.ne[1];
    m.parts.push_back(MatrixPart{std::move(t), m.rows});
    m.rows += rows;
  }
  return m;
}

uint64_t vector_bytes(const TensorInfo& t) { return static_cast<uint64_t>(t.elements()) * sizeof(float); }

}  // namespace

std::string model_unsupported_reason(const ModelInfo& info, Role) {
  if (info.architecture != "qwen3") {
    return "the CUDA engine implements Qwen3, not " + (info.architecture.empty() ? std::string("a model of no declared architecture") : info.architecture);
  }
  if (!info.causal) return "the model declares non-causal attention; the CUDA engine runs causal Qwen3 models";
  if (info.head_dim != kHeadDim) {
    return "the model's attention heads have " + std::to_string(info.head_dim) + " values; the CUDA engine's attention kernels need " +
           std::to_string(kHeadDim);
  }
  if (info.heads <= 0 || info.kv_heads <= 0 || info.heads % info.kv_heads != 0) {
    return "the model has " + std::to_string(info.heads) + " query heads over " + std::to_string(info.kv_heads) +
           " key/value heads; the CUDA engine needs a whole number of query heads per key/value head";
  }
  if (info.layers <= 0 || info.embedding_length <= 0 || info.embedding_length % 64 != 0 || info.ffn_length <= 0 || info.ffn_length % 64 != 0) {
    return "the model has hidden size " + std::to_string(info.embedding_length) + " and FFN size " + std::to_string(info.ffn_length) +
           " over " + std::to_string(info.layers) + " layers; the CUDA engine needs positive multiples of 64";
  }
  if (!readable_weight_type(info.weight_type)) {
    return "the model stores its weights as " + info.weight_type + "; the CUDA engine reads f32, f16, bf16 and q8_0";
  }
  return "";
}

Qwen3Shape qwen3_shape(const ModelInfo& info, Role role) {
  const std::string why = model_unsupported_reason(info, role);
  if (!why.empty()) throw Error(ErrorCode::kUnsupported, why);
  if (info.vocab_size <= 0) throw Error(ErrorCode::kBadModel, "the model declares no vocabulary");
  Qwen3Shape s;
  s.hidden = info.embedding_length;
  s.layers = info.layers;
  s.heads = info.heads;
  s.kv_heads = info.kv_heads;
  s.head_dim = info.head_dim;
  s.ffn = info.ffn_length;
  s.vocab = info.vocab_size;
  s.rope_theta = info.rope_theta;
  s.rms_eps = info.rms_eps;
  return s;
}

std::vector<float> rope_inv_freq(double theta, int64_t head_dim) {
  std::vector<float> f(static_cast<size_t>(head_dim / 2));
  for (size_t i = 0; i < f.size(); ++i) f[i] = static_cast<float>(std::pow(theta, -2.0 * static_cast<double>(i) / static_cast<double>(head_dim)));
  return f;
}

WeightPlan plan_weights(const Qwen3Shape& s, const std::vector<TensorInfo>& tensors) {
  const Directory dir(tensors);
  WeightPlan plan;
  plan.embeddings = fuse({dir.table("token_embd.weight", s.vocab, s.hidden)});
  for (int64_t l = 0; l < s.layers; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    LayerPlan layer;
    layer.qkv = fuse({dir.matrix(b + "attn_q.weight", s.q_width(), s.hidden), dir.matrix(b + "attn_k.weight", s.kv_width(), s.hidden),
                      dir.matrix(b + "attn_v.weight", s.kv_width(), s.hidden)});
    layer.o = fuse({dir.matrix(b + "attn_output.weight", s.hidden, s.q_width())});
    layer.gate_up = fuse({dir.matrix(b + "ffn_gate.weight", s.ffn, s.hidden), dir.matrix(b + "ffn_up.weight", s.ffn, s.hidden)});
    layer.down = fuse({dir.matrix(b + "ffn_down.weight", s.hidden, s.ffn)});
    layer.attn_norm = dir.vector(b + "attn_norm.weight", s.hidden);
    layer.q_norm = dir.vector(b + "attn_q_norm.weight", s.head_dim);
    layer.k_norm = dir.vector(b + "attn_k_norm.weight", s.head_dim);
    layer.ffn_norm = dir.vector(b + "ffn_norm.weight", s.hidden);
    plan.layers.push_back(std::move(layer));
  }
  plan.output_norm = dir.vector("output_norm.weight", s.hidden);
  return plan;
}

uint64_t WeightPlan::device_bytes() const {
  uint64_t n = embeddings.elements() * 2 + vector_bytes(output_norm);
  for (const LayerPlan& l : layers) {
    n += (l.qkv.elements() + l.o.elements() + l.gate_up.elements() + l.down.elements()) * 2;
    n += vector_bytes(l.attn_norm) + vector_bytes(l.q_norm) + vector_bytes(l.k_norm) + vector_bytes(l.ffn_norm);
  }
  return n;
}

uint64_t WeightPlan::source_bytes() const {
  const auto matrix = [](const FusedMatrix& m) {
    uint64_t n = 0;
    for (const MatrixPart& p : m.parts) n += p.tensor.bytes;
    return n;
  };
  uint64_t n = matrix(embeddings) + output_norm.bytes;
  for (const LayerPlan& l : layers) {
    n += matrix(l.qkv) + matrix(l.o) + matrix(l.gate_up) + matrix(l.down);
    n += l.attn_norm.bytes + l.q_norm.bytes + l.k_norm.bytes + l.ffn_norm.bytes;
  }
  return n;
}

}  // namespace qrank::cuda
