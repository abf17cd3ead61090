// NativeIndex: the JavaScript face of qrank::VectorIndex. Every operation that touches vectors runs
// on the libuv pool with its inputs copied first; the index stays alive while an operation holds it.
#pragma once

#include <napi.h>

#include <memory>

#include "qrank/vector_index.h"

namespace qrank_node {

class NativeIndex : public Napi::ObjectWrap<NativeIndex> {
 public:
  static Napi::Function Init(Napi::Env env);
  static Napi::Value Create(const Napi::CallbackInfo& info);  // createIndex(spec) -> NativeIndex
  static Napi::Value Load(const Napi::CallbackInfo& info);    // loadIndex(path, callback)

  explicit NativeIndex(const Napi::CallbackInfo& info);

 private:
  Napi::Value Add(const Napi::CallbackInfo& info);
  Napi::Value Train(const Napi::CallbackInfo& info);
  Napi::Value Search(const Napi::CallbackInfo& info);
  Napi::Value Remove(const Napi::CallbackInfo& info);
  Napi::Value Save(const Napi::CallbackInfo& info);
  Napi::Value Size(const Napi::CallbackInfo& info);
  Napi::Value Trained(const Napi::CallbackInfo& info);
  Napi::Value Spec(const Napi::CallbackInfo& info);
  Napi::Value Ids(const Napi::CallbackInfo& info);

  std::shared_ptr<qrank::VectorIndex> index_;
};

}  // namespace qrank_node
