#include "qrank/gguf_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <mutex>

#include "ggml.h"
#include "gguf.h"
#include "qrank/error.h"

namespace qrank {

struct GgufFile::Mapping {
  std::once_flag once;
  const uint8_t* base = nullptr;
  size_t size = 0;
  std::string error;
  ~Mapping() {
    if (base) munmap(const_cast<uint8_t*>(base), size);
  }
};

std::shared_ptr<const GgufFile> GgufFile::open(const std::string& path) {
  struct stat st {};
  if (path.empty() || stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
    throw Error(ErrorCode::kModelNotFound, "model file not found: " + path);
  }
  gguf_init_params params{/*no_alloc=*/true, /*ctx=*/nullptr};
  gguf_context* ctx = gguf_init_from_file(path.c_str(), params);
  if (!ctx) throw Error(ErrorCode::kBadModel, "not a readable GGUF file: " + path);
  std::shared_ptr<GgufFile> f(new GgufFile());
  f->path_ = path;
  f->file_size_ = static_cast<uint64_t>(st.st_size);
  f->ctx_ = ctx;
  f->map_ = std::make_unique<Mapping>();
  const uint64_t data = gguf_get_data_offset(ctx);
  const int64_t n = gguf_get_n_tensors(ctx);
  f->tensors_.reserve(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    TensorInfo t;
    t.name = gguf_get_tensor_name(ctx, i);
    t.type = gguf_get_tensor_type(ctx, i);
    std::copy_n(gguf_get_tensor_ne(ctx, i), 4, t.ne);
    t.offset = data + gguf_get_tensor_offset(ctx, i);
    t.bytes = gguf_get_tensor_size(ctx, i);
    if (t.offset > f->file_size_ || t.bytes > f->file_size_ - t.offset) {
      throw Error(ErrorCode::kBadModel, path + " is truncated: tensor " + t.name + " lies past the end of the file");
    }
    f->tensors_.push_back(std::move(t));
  }
  return f;
}

GgufFile::~GgufFile() {
  if (ctx_) gguf_free(ctx_);
}

int64_t GgufFile::key(const std::string& name) const { return gguf_find_key(ctx_, name.c_str()); }

bool GgufFile::has(const std::string& name) const { return key(name) >= 0; }

namespace {

[[noreturn]] void wrong_type(const std::string& path, const std::string& key, const char* want) {
  throw Error(ErrorCode::kBadModel, path + ": metadata " + key + " is not " + want);
}

bool is_integer(gguf_type t) {
  switch (t) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_INT8: case GGUF_TYPE_UINT16: case GGUF_TYPE_INT16:
    case GGUF_TYPE_UINT32: case GGUF_TYPE_INT32: case GGUF_TYPE_UINT64: case GGUF_TYPE_INT64:
      return true;
    default:
      return false;
  }
}

int64_t integer_value(const gguf_context* ctx, int64_t id) {
  switch (gguf_get_kv_type(ctx, id)) {
    case GGUF_TYPE_UINT8: return gguf_get_val_u8(ctx, id);
    case GGUF_TYPE_INT8: return gguf_get_val_i8(ctx, id);
    case GGUF_TYPE_UINT16: return gguf_get_val_u16(ctx, id);
    case GGUF_TYPE_INT16: return gguf_get_val_i16(ctx, id);
    case GGUF_TYPE_UINT32: return gguf_get_val_u32(ctx, id);
    case GGUF_TYPE_INT32: return gguf_get_val_i32(ctx, id);
    case GGUF_TYPE_UINT64: return static_cast<int64_t>(std::min<uint64_t>(gguf_get_val_u64(ctx, id), INT64_MAX));
    case GGUF_TYPE_INT64: return gguf_get_val_i64(ctx, id);
    default: return 0;
  }
}

}  // namespace

std::string GgufFile::str(const std::string& name, const std::string& fallback) const {
  const int64_t id = key(name);
  if (id < 0) return fallback;
  if (gguf_get_kv_type(ctx_, id) != GGUF_TYPE_STRING) wrong_type(path_, name, "a string");
  return gguf_get_val_str(ctx_, id);
}

int64_t GgufFile::integer(const std::string& name, int64_t fallback) const {
  const int64_t id = key(name);
  if (id < 0) return fallback;
  if (!is_integer(gguf_get_kv_type(ctx_, id))) wrong_type(path_, name, "an integer");
  return integer_value(ctx_, id);
}

double GgufFile::real(const std::string& name, double fallback) const {
  const int64_t id = key(name);
  if (id < 0) return fallback;
  const gguf_type t = gguf_get_kv_type(ctx_, id);
  if (t == GGUF_TYPE_FLOAT32) return gguf_get_val_f32(ctx_, id);
  if (t == GGUF_TYPE_FLOAT64) return gguf_get_val_f64(ctx_, id);
  if (is_integer(t)) return static_cast<double>(integer_value(ctx_, id));
  wrong_type(path_, name, "a number");
}

bool GgufFile::boolean(const std::string& name, bool fallback) const {
  const int64_t id = key(name);
  if (id < 0) return fallback;
  if (gguf_get_kv_type(ctx_, id) != GGUF_TYPE_BOOL) wrong_type(path_, name, "a boolean");
  return gguf_get_val_bool(ctx_, id);
}

std::vector<std::string> GgufFile::strings(const std::string& name) const {
  const int64_t id = key(name);
  if (id < 0) return {};
  if (gguf_get_kv_type(ctx_, id) != GGUF_TYPE_ARRAY || gguf_get_arr_type(ctx_, id) != GGUF_TYPE_STRING) {
    wrong_type(path_, name, "an array of strings");
  }
  std::vector<std::string> out(gguf_get_arr_n(ctx_, id));
  for (size_t i = 0; i < out.size(); ++i) out[i] = gguf_get_arr_str(ctx_, id, i);
  return out;
}

size_t GgufFile::array_size(const std::string& name) const {
  const int64_t id = key(name);
  if (id < 0 || gguf_get_kv_type(ctx_, id) != GGUF_TYPE_ARRAY) return 0;
  return gguf_get_arr_n(ctx_, id);
}

const TensorInfo* GgufFile::find(const std::string& name) const {
  for (const auto& t : tensors_) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

uint64_t GgufFile::weight_bytes() const {
  uint64_t n = 0;
  for (const auto& t : tensors_) n += t.bytes;
  return n;
}

uint64_t GgufFile::parameters() const {
  uint64_t n = 0;
  for (const auto& t : tensors_) n += static_cast<uint64_t>(t.elements());
  return n;
}

const uint8_t* GgufFile::data(const TensorInfo& tensor) const {
  Mapping& m = *map_;
  std::call_once(m.once, [&] {
    const int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      m.error = "cannot open " + path_ + ": " + std::strerror(errno);
      return;
    }
    void* p = mmap(nullptr, file_size_, PROT_READ, MAP_SHARED, fd, 0);
    ::close(fd);
    if (p == MAP_FAILED) {
      m.error = "cannot map " + path_ + ": " + std::strerror(errno);
      return;
    }
    m.base = static_cast<const uint8_t*>(p);
    m.size = file_size_;
  });
  if (!m.base) throw Error(ErrorCode::kIoError, m.error);
  return m.base + tensor.offset;
}

std::vector<float> GgufFile::rows(const std::string& name, const std::vector<int64_t>& rows, int64_t* row_len) const {
  const TensorInfo* t = find(name);
  if (!t) throw Error(ErrorCode::kBadModel, "tensor " + name + " not found in " + path_);
  const ggml_type type = static_cast<ggml_type>(t->type);
  const ggml_type_traits* traits = ggml_get_type_traits(type);
  if (t->ne[2] != 1 || t->ne[3] != 1 || (type != GGML_TYPE_F32 && traits->to_float == nullptr)) {
    throw Error(ErrorCode::kBadModel, "tensor " + name + " cannot be read as rows of floats");
  }
  const size_t row_bytes = ggml_row_size(type, t->ne[0]);
  const uint8_t* base = data(*t);
  std::vector<float> out(rows.size() * t->ne[0]);
  for (size_t r = 0; r < rows.size(); ++r) {
    if (rows[r] < 0 || rows[r] >= t->ne[1]) throw Error(ErrorCode::kBadModel, "row " + std::to_string(rows[r]) + " is outside " + name);
    const uint8_t* src = base + rows[r] * row_bytes;
    float* dst = out.data() + r * t->ne[0];
    if (type == GGML_TYPE_F32) {
      std::memcpy(dst, src, t->ne[0] * sizeof(float));
    } else {
      traits->to_float(src, dst, t->ne[0]);
    }
  }
  *row_len = t->ne[0];
  return out;
}

}  // namespace qrank
