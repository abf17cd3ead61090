// qrank's Node-API entry point: registers the native model class and the loader.
#include <napi.h>

#include "model_wrap.h"
#include "qrank/model.h"

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  qrank::init_llama_backend();
  exports.Set("NativeModel", qrank_node::NativeModel::Init(env));
  exports.Set("loadModel", Napi::Function::New(env, qrank_node::NativeModel::Load, "loadModel"));
  exports.Set("cudaAvailable", Napi::Boolean::New(env, false));
  return exports;
}

}  // namespace

NODE_API_MODULE(qrank, Init)
