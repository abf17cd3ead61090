// qrank's Node-API entry point: registers the native model class and the loader.
#include <napi.h>

#include "addon_data.h"
#include "index_wrap.h"
#include "model_wrap.h"
#include "qrank/model.h"

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  qrank::init_llama_backend();
  env.SetInstanceData(new qrank_node::AddonData());
  exports.Set("NativeModel", qrank_node::NativeModel::Init(env));
  exports.Set("loadModel", Napi::Function::New(env, qrank_node::NativeModel::Load, "loadModel"));
  exports.Set("NativeIndex", qrank_node::NativeIndex::Init(env));
  exports.Set("createIndex", Napi::Function::New(env, qrank_node::NativeIndex::Create, "createIndex"));
  exports.Set("loadIndex", Napi::Function::New(env, qrank_node::NativeIndex::Load, "loadIndex"));
  exports.Set("cudaAvailable", Napi::Boolean::New(env, false));
  return exports;
}

}  // namespace

NODE_API_MODULE(qrank, Init)
