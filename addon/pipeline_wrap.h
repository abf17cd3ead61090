// NativePipeline: the JavaScript face of qrank::Pipeline. Arguments are copied into plain C++ values
// before any work is queued (no worker thread touches a JS value); results come back through one
// thread-safe function per model, which holds the event loop only while calls are pending.
#pragma once

#include <napi.h>

#include <memory>

#include "qrank/pipeline.h"

namespace qrank_node {

class NativePipeline : public Napi::ObjectWrap<NativePipeline> {
 public:
  static Napi::Function Init(Napi::Env env);
  // loadModel(options, onProgress?) -> { promise: Promise<NativePipeline>, cancel(): void }
  static Napi::Value Load(const Napi::CallbackInfo& info);
  // inspectModel(path) -> Promise<{ ...facts, tensors, roles: { reranker, embedder } }>, no weights loaded
  static Napi::Value Inspect(const Napi::CallbackInfo& info);

  explicit NativePipeline(const Napi::CallbackInfo& info);
  ~NativePipeline() override;

  void Attach(Napi::Env env, std::unique_ptr<qrank::Pipeline> pipeline);
  // Called on the JS thread when a completion arrives.
  void Delivered(Napi::Env env);

 private:
  Napi::Value Score(const Napi::CallbackInfo& info);
  Napi::Value Embed(const Napi::CallbackInfo& info);
  void Cancel(const Napi::CallbackInfo& info);
  Napi::Value Tokenize(const Napi::CallbackInfo& info);
  Napi::Value Detokenize(const Napi::CallbackInfo& info);
  Napi::Value FormatPair(const Napi::CallbackInfo& info);
  Napi::Value FormatText(const Napi::CallbackInfo& info);
  Napi::Value Info(const Napi::CallbackInfo& info);
  Napi::Value Stats(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);

  qrank::Pipeline& pipeline(Napi::Env env);
  uint64_t Submit(Napi::Env env, const Napi::Function& callback,
                  const std::function<uint64_t(qrank::Callback)>& submit);
  void Shutdown();

  std::shared_ptr<qrank::Pipeline> pipeline_;
  Napi::ThreadSafeFunction tsfn_;
  bool tsfn_live_ = false;
  bool closed_ = false;
  uint32_t pending_ = 0;
  napi_env env_ = nullptr;
  static void OnEnvCleanup(void* self);
};

}  // namespace qrank_node
