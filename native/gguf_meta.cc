#include "qrank/gguf_meta.h"

#include <algorithm>
#include <cstdio>
#include <memory>

#include "ggml.h"
#include "gguf.h"
#include "qrank/error.h"

namespace qrank {
namespace {

struct GgufDeleter {
  void operator()(gguf_context* ctx) const { gguf_free(ctx); }
};
struct FileDeleter {
  void operator()(FILE* f) const { std::fclose(f); }
};
using GgufPtr = std::unique_ptr<gguf_context, GgufDeleter>;

GgufPtr open_meta(const std::string& path) {
  gguf_init_params params{/*no_alloc=*/true, /*ctx=*/nullptr};
  GgufPtr ctx(gguf_init_from_file(path.c_str(), params));
  if (!ctx) throw Error(ErrorCode::kBadModel, "not a readable GGUF file: " + path);
  return ctx;
}

}  // namespace

bool gguf_has_tensor(const std::string& path, const std::string& tensor) {
  return gguf_find_tensor(open_meta(path).get(), tensor.c_str()) >= 0;
}

std::vector<float> gguf_read_rows(const std::string& path, const std::string& tensor,
                                  const std::vector<int64_t>& rows, int64_t* row_len) {
  GgufPtr ctx = open_meta(path);
  const int64_t id = gguf_find_tensor(ctx.get(), tensor.c_str());
  if (id < 0) throw Error(ErrorCode::kBadModel, "tensor " + tensor + " not found in " + path);
  const int64_t* ne = gguf_get_tensor_ne(ctx.get(), id);
  const ggml_type type = gguf_get_tensor_type(ctx.get(), id);
  const ggml_type_traits* traits = ggml_get_type_traits(type);
  if (ne[2] != 1 || ne[3] != 1 || (type != GGML_TYPE_F32 && traits->to_float == nullptr)) {
    throw Error(ErrorCode::kBadModel, "tensor " + tensor + " cannot be read as rows of floats");
  }
  const size_t row_bytes = ggml_row_size(type, ne[0]);
  const size_t base = gguf_get_data_offset(ctx.get()) + gguf_get_tensor_offset(ctx.get(), id);
  std::unique_ptr<FILE, FileDeleter> file(std::fopen(path.c_str(), "rb"));
  if (!file) throw Error(ErrorCode::kModelNotFound, "cannot open " + path);

  std::vector<float> out(rows.size() * ne[0]);
  std::vector<uint8_t> raw(row_bytes);
  for (size_t r = 0; r < rows.size(); ++r) {
    if (rows[r] < 0 || rows[r] >= ne[1]) {
      throw Error(ErrorCode::kBadModel, "row " + std::to_string(rows[r]) + " is outside " + tensor);
    }
    const long long offset = static_cast<long long>(base + rows[r] * row_bytes);
    if (fseeko(file.get(), offset, SEEK_SET) != 0 || std::fread(raw.data(), 1, row_bytes, file.get()) != row_bytes) {
      throw Error(ErrorCode::kBadModel, "truncated tensor data for " + tensor + " in " + path);
    }
    float* dst = out.data() + r * ne[0];
    if (type == GGML_TYPE_F32) {
      std::copy_n(reinterpret_cast<const float*>(raw.data()), ne[0], dst);
    } else {
      traits->to_float(raw.data(), dst, ne[0]);
    }
  }
  *row_len = ne[0];
  return out;
}

}  // namespace qrank
