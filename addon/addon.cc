// qrank's Node-API entry point: registers the native model class and the loader.
#include <napi.h>

#include "addon_data.h"
#include "index_wrap.h"
#include "pipeline_wrap.h"
#include "qrank/engine.h"
#include "qrank/error.h"
#include "qrank/model.h"

namespace {

// cudaStatus() -> { built, devices, deviceName, computeCapability, reason }: whether this build has
// the CUDA engine and whether it can run here (and if not, why).
Napi::Value CudaStatus(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const qrank::CudaStatus s = qrank::cuda_status();
  Napi::Object o = Napi::Object::New(env);
  o.Set("built", s.built);
  o.Set("devices", Napi::Number::New(env, s.devices));
  o.Set("deviceName", s.device_name);
  o.Set("computeCapability", Napi::Number::New(env, s.compute_capability));
  o.Set("reason", s.reason);
  return o;
}

// errorCodes() -> every code the native layer can report (test/errors.test.ts checks lib/errors.ts has each).
Napi::Value ErrorCodes(const Napi::CallbackInfo& info) {
  Napi::Array out = Napi::Array::New(info.Env(), qrank::kErrorCodes);
  for (int i = 0; i < qrank::kErrorCodes; ++i) out.Set(i, qrank::error_code_name(static_cast<qrank::ErrorCode>(i)));
  return out;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  qrank::init_llama_backend();
  env.SetInstanceData(new qrank_node::AddonData());
  qrank_node::NativePipeline::Init(env);  // the classes stay internal: instances come from the functions

  exports.Set("loadModel", Napi::Function::New(env, qrank_node::NativePipeline::Load, "loadModel"));
  exports.Set("inspectModel", Napi::Function::New(env, qrank_node::NativePipeline::Inspect, "inspectModel"));
  qrank_node::NativeIndex::Init(env);
  exports.Set("createIndex", Napi::Function::New(env, qrank_node::NativeIndex::Create, "createIndex"));
  exports.Set("loadIndex", Napi::Function::New(env, qrank_node::NativeIndex::Load, "loadIndex"));
  exports.Set("errorCodes", Napi::Function::New(env, ErrorCodes, "errorCodes"));
  exports.Set("cudaStatus", Napi::Function::New(env, CudaStatus, "cudaStatus"));
  return exports;
}

}  // namespace

NODE_API_MODULE(qrank, Init)
