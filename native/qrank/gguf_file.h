// A GGUF file opened for what qrank reads itself, without llama.cpp's loader: metadata values, the
// tensor directory, and tensor bytes (memory-mapped read-only on first use). The facts of a model
// (architecture, shape, tokens) are known from it before any weights are loaded, and an engine that
// brings its own weights (the CUDA engine) reads them from here.
//
// Contract: open() reads the header and the tensor directory only; every tensor's extent is checked
// against the file size there, so data() never reads past the end. Values of a missing key come back
// as the caller's fallback; a key of the wrong type is a kBadModel error naming it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

struct gguf_context;

namespace qrank {

struct TensorInfo {
  std::string name;
  int type = 0;              // ggml_type
  int64_t ne[4] = {1, 1, 1, 1};  // ne[0] is the contiguous (input) dimension
  uint64_t offset = 0;       // absolute, in the file
  uint64_t bytes = 0;
  int64_t elements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
};

class GgufFile {
 public:
  // Throws Error(kModelNotFound) when the file cannot be read, Error(kBadModel) when it is not GGUF.
  static std::shared_ptr<const GgufFile> open(const std::string& path);
  ~GgufFile();
  GgufFile(const GgufFile&) = delete;
  GgufFile& operator=(const GgufFile&) = delete;

  const std::string& path() const { return path_; }
  uint64_t file_size() const { return file_size_; }

  bool has(const std::string& key) const;
  std::string str(const std::string& key, const std::string& fallback = "") const;
  int64_t integer(const std::string& key, int64_t fallback) const;  // any integer type
  double real(const std::string& key, double fallback) const;       // f32, f64 or an integer
  bool boolean(const std::string& key, bool fallback) const;
  std::vector<std::string> strings(const std::string& key) const;  // an array of strings ([] when absent)
  size_t array_size(const std::string& key) const;                 // 0 when absent

  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* find(const std::string& name) const;  // nullptr when absent
  uint64_t weight_bytes() const;                          // sum of every tensor's bytes
  uint64_t parameters() const;                            // sum of every tensor's elements

  // The tensor's bytes in the file (maps the file on first use; thread-safe).
  const uint8_t* data(const TensorInfo& tensor) const;
  // Rows of a 2-D tensor dequantised to float, concatenated; row_len receives ne[0]. Throws
  // Error(kBadModel) when the tensor is missing, not 2-D, of a type ggml cannot dequantise, or a
  // row is out of range.
  std::vector<float> rows(const std::string& tensor, const std::vector<int64_t>& rows, int64_t* row_len) const;

 private:
  GgufFile() = default;
  int64_t key(const std::string& name) const;

  std::string path_;
  uint64_t file_size_ = 0;
  gguf_context* ctx_ = nullptr;
  std::vector<TensorInfo> tensors_;
  struct Mapping;
  std::unique_ptr<Mapping> map_;
};

}  // namespace qrank
