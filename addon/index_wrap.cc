#include "index_wrap.h"

#include <functional>
#include <string>
#include <vector>

#include "addon_data.h"
#include "errors.h"

namespace qrank_node {
namespace {

using qrank::ErrorCode;

// Runs `work` on the libuv pool and calls back (err, result) with `done`'s value on the JS thread.
class IndexTask final : public Napi::AsyncWorker {
 public:
  IndexTask(Napi::Function callback, const char* name, std::function<void()> work,
            std::function<Napi::Value(Napi::Env)> done)
      : Napi::AsyncWorker(callback, name), work_(std::move(work)), done_(std::move(done)) {}

  void Execute() override {
    try {
      work_();
    } catch (...) {
      const qrank::Error e = qrank::current_error();
      code_ = e.code();
      SetError(e.what());
    }
  }
  void OnOK() override { Callback().Call({Env().Null(), done_ ? done_(Env()) : Env().Undefined()}); }
  void OnError(const Napi::Error& e) override { Callback().Call({make_error(Env(), code_, e.Message()).Value()}); }

 private:
  std::function<void()> work_;
  std::function<Napi::Value(Napi::Env)> done_;
  ErrorCode code_ = ErrorCode::kEngineFailure;
};

Napi::Function callback_arg(const Napi::CallbackInfo& info, size_t i) {
  if (!info[i].IsFunction()) throw make_error(info.Env(), ErrorCode::kInvalidInput, "callback must be a function");
  return info[i].As<Napi::Function>();
}

std::vector<int64_t> ids_arg(const Napi::CallbackInfo& info, size_t i) {
  if (!info[i].IsTypedArray() || info[i].As<Napi::TypedArray>().TypedArrayType() != napi_bigint64_array) {
    throw make_error(info.Env(), ErrorCode::kInvalidInput, "ids must be a BigInt64Array");
  }
  auto a = info[i].As<Napi::TypedArrayOf<int64_t>>();
  return std::vector<int64_t>(a.Data(), a.Data() + a.ElementLength());
}

std::vector<float> vectors_arg(const Napi::CallbackInfo& info, size_t i) {
  if (!info[i].IsTypedArray() || info[i].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
    throw make_error(info.Env(), ErrorCode::kInvalidInput, "vectors must be a Float32Array");
  }
  auto a = info[i].As<Napi::Float32Array>();
  return std::vector<float>(a.Data(), a.Data() + a.ElementLength());
}

int32_t int_field(const Napi::Object& o, const char* key, int32_t fallback) {
  Napi::Value v = o.Get(key);
  return v.IsNumber() ? v.As<Napi::Number>().Int32Value() : fallback;
}

qrank::IndexKind kind_from(const std::string& s, Napi::Env env) {
  if (s == "flat") return qrank::IndexKind::kFlat;
  if (s == "hnsw") return qrank::IndexKind::kHnsw;
  if (s == "ivf") return qrank::IndexKind::kIvf;
  if (s == "ivfpq") return qrank::IndexKind::kIvfPq;
  throw make_error(env, ErrorCode::kInvalidInput, "kind must be 'flat', 'hnsw', 'ivf' or 'ivfpq'");
}

qrank::Storage storage_from(const Napi::Value& v, Napi::Env env) {
  const std::string s = v.IsString() ? v.As<Napi::String>().Utf8Value() : "f32";
  if (s == "f32") return qrank::Storage::kF32;
  if (s == "f16") return qrank::Storage::kF16;
  if (s == "i8") return qrank::Storage::kI8;
  throw make_error(env, ErrorCode::kInvalidInput, "storage must be 'f32', 'f16' or 'i8'");
}

const char* storage_name(qrank::Storage s) { return s == qrank::Storage::kF16 ? "f16" : s == qrank::Storage::kI8 ? "i8" : "f32"; }

qrank::IndexDevice device_from(const Napi::Value& v, Napi::Env env) {
  const std::string s = v.IsString() ? v.As<Napi::String>().Utf8Value() : "cpu";
  if (s == "cpu") return qrank::IndexDevice::kCpu;
  if (s == "cuda") return qrank::IndexDevice::kCuda;
  throw make_error(env, ErrorCode::kInvalidInput, "device must be 'cpu' or 'cuda'");
}

const char* kind_name(qrank::IndexKind k) {
  switch (k) {
    case qrank::IndexKind::kHnsw: return "hnsw";
    case qrank::IndexKind::kIvf: return "ivf";
    case qrank::IndexKind::kIvfPq: return "ivfpq";
    default: return "flat";
  }
}

size_t checked_count(Napi::Env env, size_t floats, int32_t dim, const char* what) {
  if (floats % static_cast<size_t>(dim) != 0) {
    throw make_error(env, ErrorCode::kInvalidInput, std::string(what) + " has " + std::to_string(floats) +
                                                        " values, not a multiple of dim " + std::to_string(dim));
  }
  return floats / dim;
}

}  // namespace

Napi::Function NativeIndex::Init(Napi::Env env) {
  Napi::Function ctor = DefineClass(env, "NativeIndex",
                                    {
                                        InstanceMethod<&NativeIndex::Add>("add"),
                                        InstanceMethod<&NativeIndex::Train>("train"),
                                        InstanceMethod<&NativeIndex::Search>("search"),
                                        InstanceMethod<&NativeIndex::Remove>("remove"),
                                        InstanceMethod<&NativeIndex::Save>("save"),
                                        InstanceMethod<&NativeIndex::Size>("size"),
                                        InstanceMethod<&NativeIndex::Trained>("trained"),
                                        InstanceMethod<&NativeIndex::Spec>("spec"),
                                        InstanceMethod<&NativeIndex::Ids>("ids"),
                                    });
  addon_data(env).index_constructor = Napi::Persistent(ctor);
  return ctor;
}

namespace {
// Only createIndex and loadIndex make a NativeIndex: they pass this token's address, so a
// constructor reached from JavaScript (through an instance's prototype) refuses to make an index
// without one.
char kInternal = 0;
Napi::Object new_index_object(Napi::Env env) {
  return addon_data(env).index_constructor.New({Napi::External<char>::New(env, &kInternal)});
}
}  // namespace

NativeIndex::NativeIndex(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeIndex>(info) {
  if (info.Length() != 1 || !info[0].IsExternal() || info[0].As<Napi::External<char>>().Data() != &kInternal) {
    throw make_error(info.Env(), ErrorCode::kInvalidInput, "a NativeIndex is made by createIndex or loadIndex, not constructed");
  }
}

Napi::Value NativeIndex::Create(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    if (!info[0].IsObject()) throw make_error(env, ErrorCode::kInvalidInput, "createIndex needs a spec object");
    Napi::Object o = info[0].As<Napi::Object>();
    qrank::IndexSpec spec;
    spec.dim = int_field(o, "dim", 0);
    const Napi::Value metric = o.Get("metric");
    spec.metric = metric.IsString() && metric.As<Napi::String>().Utf8Value() == "l2" ? qrank::Metric::kL2 : qrank::Metric::kInnerProduct;
    const Napi::Value kind = o.Get("kind");
    spec.kind = kind_from(kind.IsString() ? kind.As<Napi::String>().Utf8Value() : "flat", env);
    spec.hnsw_m = int_field(o, "m", spec.hnsw_m);
    spec.ef_construction = int_field(o, "efConstruction", spec.ef_construction);
    spec.ef_search = int_field(o, "efSearch", spec.ef_search);
    spec.nlist = int_field(o, "nlist", spec.nlist);
    spec.nprobe = int_field(o, "nprobe", spec.nprobe);
    spec.pq_m = int_field(o, "pqM", spec.pq_m);
    spec.pq_bits = int_field(o, "pqBits", spec.pq_bits);
    spec.storage = storage_from(o.Get("storage"), env);
    spec.device = device_from(o.Get("device"), env);
    Napi::Object obj = new_index_object(env);
    NativeIndex::Unwrap(obj)->index_ = std::shared_ptr<qrank::VectorIndex>(qrank::VectorIndex::create(spec));
    return obj;
  });
}

Napi::Value NativeIndex::Load(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) throw make_error(env, ErrorCode::kInvalidInput, "path must be a string");
  const std::string path = info[0].As<Napi::String>().Utf8Value();
  const qrank::IndexDevice device = device_from(info[1], env);
  auto slot = std::make_shared<std::shared_ptr<qrank::VectorIndex>>();
  (new IndexTask(callback_arg(info, 2), "qrank:index-load", [path, device, slot] { *slot = qrank::VectorIndex::load(path, device); },
                 [slot](Napi::Env e) {
                   Napi::Object obj = new_index_object(e);
                   NativeIndex::Unwrap(obj)->index_ = *slot;
                   return obj;
                 }))
      ->Queue();
  return env.Undefined();
}

Napi::Value NativeIndex::Add(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::vector<int64_t> ids = ids_arg(info, 0);
  std::vector<float> vectors = vectors_arg(info, 1);
  const size_t n = checked_count(env, vectors.size(), index_->dim(), "vectors");
  if (n != ids.size()) {
    throw make_error(env, ErrorCode::kInvalidInput, std::to_string(ids.size()) + " ids for " + std::to_string(n) + " vectors");
  }
  auto index = index_;
  auto batch = std::make_shared<std::pair<std::vector<int64_t>, std::vector<float>>>(std::move(ids), std::move(vectors));
  (new IndexTask(callback_arg(info, 2), "qrank:index-add",
                 [index, batch] { index->add(batch->first.data(), batch->second.data(), batch->first.size()); }, nullptr))
      ->Queue();
  return env.Undefined();
}

Napi::Value NativeIndex::Train(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto vectors = std::make_shared<std::vector<float>>(vectors_arg(info, 0));
  const size_t n = checked_count(env, vectors->size(), index_->dim(), "vectors");
  auto index = index_;
  (new IndexTask(callback_arg(info, 1), "qrank:index-train", [index, vectors, n] { index->train(vectors->data(), n); }, nullptr))->Queue();
  return env.Undefined();
}

// search(queries: Float32Array, k, efSearch, nprobe, allow: BigInt64Array | null, callback)
Napi::Value NativeIndex::Search(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto queries = std::make_shared<std::vector<float>>(vectors_arg(info, 0));
  const size_t nq = checked_count(env, queries->size(), index_->dim(), "queries");
  qrank::SearchOptions options;
  options.k = info[1].IsNumber() ? info[1].As<Napi::Number>().Int32Value() : 0;
  options.ef_search = info[2].IsNumber() ? info[2].As<Napi::Number>().Int32Value() : 0;
  options.nprobe = info[3].IsNumber() ? info[3].As<Napi::Number>().Int32Value() : 0;
  std::shared_ptr<std::vector<int64_t>> allow;
  if (!info[4].IsNull() && !info[4].IsUndefined()) allow = std::make_shared<std::vector<int64_t>>(ids_arg(info, 4));
  auto index = index_;
  auto hits = std::make_shared<qrank::SearchHits>();
  (new IndexTask(callback_arg(info, 5), "qrank:index-search",
                 [index, queries, nq, options, allow, hits]() mutable {
                   options.allow = allow.get();
                   *hits = index->search(queries->data(), nq, options);
                 },
                 [hits](Napi::Env e) {
                   Napi::Object r = Napi::Object::New(e);
                   auto ids = Napi::BigInt64Array::New(e, hits->ids.size());
                   std::copy(hits->ids.begin(), hits->ids.end(), ids.Data());
                   auto scores = Napi::Float32Array::New(e, hits->scores.size());
                   std::copy(hits->scores.begin(), hits->scores.end(), scores.Data());
                   r.Set("ids", ids);
                   r.Set("scores", scores);
                   return r;
                 }))
      ->Queue();
  return env.Undefined();
}

Napi::Value NativeIndex::Remove(const Napi::CallbackInfo& info) {
  auto ids = std::make_shared<std::vector<int64_t>>(ids_arg(info, 0));
  auto index = index_;
  (new IndexTask(callback_arg(info, 1), "qrank:index-remove", [index, ids] { index->remove(ids->data(), ids->size()); }, nullptr))->Queue();
  return info.Env().Undefined();
}

Napi::Value NativeIndex::Save(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) throw make_error(env, ErrorCode::kInvalidInput, "path must be a string");
  const std::string path = info[0].As<Napi::String>().Utf8Value();
  auto index = index_;
  (new IndexTask(callback_arg(info, 1), "qrank:index-save", [index, path] { index->save(path); }, nullptr))->Queue();
  return env.Undefined();
}

Napi::Value NativeIndex::Size(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), static_cast<double>(index_->size())); }
Napi::Value NativeIndex::Trained(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), index_->trained()); }

Napi::Value NativeIndex::Ids(const Napi::CallbackInfo& info) {
  const std::vector<int64_t> ids = index_->ids();
  auto out = Napi::BigInt64Array::New(info.Env(), ids.size());
  std::copy(ids.begin(), ids.end(), out.Data());
  return out;
}

Napi::Value NativeIndex::Spec(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const qrank::IndexSpec s = index_->spec();
  Napi::Object o = Napi::Object::New(env);
  o.Set("dim", s.dim);
  o.Set("metric", s.metric == qrank::Metric::kL2 ? "l2" : "ip");
  o.Set("kind", kind_name(s.kind));
  o.Set("m", s.hnsw_m);
  o.Set("efConstruction", s.ef_construction);
  o.Set("efSearch", s.ef_search);
  o.Set("nlist", s.nlist);
  o.Set("nprobe", s.nprobe);
  o.Set("pqM", s.pq_m);
  o.Set("pqBits", s.pq_bits);
  o.Set("storage", storage_name(s.storage));
  o.Set("device", s.device == qrank::IndexDevice::kCuda ? "cuda" : "cpu");
  return o;
}

}  // namespace qrank_node
