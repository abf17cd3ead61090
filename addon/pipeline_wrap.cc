#include "pipeline_wrap.h"

#include <atomic>
#include <string>
#include <vector>

#include "addon_data.h"
#include "errors.h"
#include "qrank/engine.h"
#include "qrank/gguf_file.h"

namespace qrank_node {
namespace {

using qrank::Error;
using qrank::ErrorCode;

// One finished call on its way to the JS thread. It holds a strong reference to the wrapper, so the
// wrapper cannot be collected (and its finalizer cannot close the pipeline) while a call is pending,
// whatever the caller's callback keeps alive.
struct Completion {
  NativePipeline* model;
  Napi::ObjectReference self;
  Napi::FunctionReference callback;
  qrank::Outcome outcome;
};

std::string get_string(const Napi::Object& o, const char* key, const std::string& fallback = "") {
  Napi::Value v = o.Get(key);
  return v.IsString() ? v.As<Napi::String>().Utf8Value() : fallback;
}

int get_int(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  return v.IsNumber() ? v.As<Napi::Number>().Int32Value() : 0;
}

std::vector<std::string> get_strings(Napi::Env env, const Napi::Value& v, const char* what) {
  if (!v.IsArray()) throw make_error(env, ErrorCode::kInvalidInput, std::string(what) + " must be an array of strings");
  Napi::Array a = v.As<Napi::Array>();
  std::vector<std::string> out;
  out.reserve(a.Length());
  for (uint32_t i = 0; i < a.Length(); ++i) {
    Napi::Value item = a.Get(i);
    if (!item.IsString()) throw make_error(env, ErrorCode::kInvalidInput, std::string(what) + "[" + std::to_string(i) + "] must be a string");
    out.push_back(item.As<Napi::String>().Utf8Value());
  }
  return out;
}

qrank::TextKind get_kind(Napi::Env env, const Napi::Value& v) {
  const std::string kind = v.IsString() ? v.As<Napi::String>().Utf8Value() : "";
  if (kind == "query") return qrank::TextKind::kQuery;
  if (kind == "document") return qrank::TextKind::kDocument;
  throw make_error(env, ErrorCode::kInvalidInput, "kind must be 'query' or 'document'");
}

// The caller's limit on each input: (maxInputTokens: number (0: none), truncate: boolean) at i, i+1.
qrank::InputLimit get_input_limit(Napi::Env env, const Napi::CallbackInfo& info, size_t i) {
  qrank::InputLimit limit;
  if (info[i].IsNumber()) {
    const double n = info[i].As<Napi::Number>().DoubleValue();
    if (!(n >= 0 && n <= 1e9) || n != static_cast<double>(static_cast<size_t>(n))) {
      throw make_error(env, ErrorCode::kInvalidInput, "maxInputTokens must be a whole number of tokens");
    }
    limit.max_tokens = static_cast<size_t>(n);
  }
  limit.cut = !info[i + 1].IsBoolean() || info[i + 1].As<Napi::Boolean>().Value();
  return limit;
}

Napi::Int32Array to_js(Napi::Env env, const qrank::Tokens& tokens) {
  Napi::Int32Array out = Napi::Int32Array::New(env, tokens.size());
  std::copy(tokens.begin(), tokens.end(), out.Data());
  return out;
}

Napi::Object formatted(Napi::Env env, const std::pair<std::string, qrank::Tokens>& f) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("text", Napi::String::New(env, f.first));
  o.Set("tokens", to_js(env, f.second));
  return o;
}

Napi::Float32Array floats(Napi::Env env, const std::vector<float>& v) {
  Napi::Float32Array out = Napi::Float32Array::New(env, v.size());
  std::copy(v.begin(), v.end(), out.Data());
  return out;
}

Napi::Value outcome_to_js(Napi::Env env, qrank::Outcome& outcome) {
  Napi::Object r = Napi::Object::New(env);
  r.Set("values", floats(env, outcome.values));
  if (!outcome.logits.empty()) r.Set("logits", floats(env, outcome.logits));
  r.Set("width", Napi::Number::New(env, static_cast<double>(outcome.width)));
  Napi::Int32Array counts = Napi::Int32Array::New(env, outcome.token_counts.size());
  std::copy(outcome.token_counts.begin(), outcome.token_counts.end(), counts.Data());
  r.Set("tokenCounts", counts);
  r.Set("truncated", Napi::Number::New(env, outcome.truncated));
  return r;
}

void deliver(Napi::Env env, Napi::Function, Completion* c) {
  std::unique_ptr<Completion> done(c);
  if (env == nullptr) {  // the environment is going away: nothing to call, and no reference may be touched
    done->self.SuppressDestruct();
    done->callback.SuppressDestruct();
    return;
  }
  Napi::HandleScope scope(env);
  Napi::Value err = env.Null(), result = env.Undefined();
  if (done->outcome.ok) {
    result = outcome_to_js(env, done->outcome);
  } else {
    err = make_error(env, done->outcome.code, done->outcome.message).Value();
  }
  done->model->Delivered(env);
  try {
    done->callback.Call({err, result});
  } catch (const Napi::Error& e) {
    // An exception thrown by the JS callback is reported as uncaught, as for any other callback.
    e.ThrowAsJavaScriptException();
  }
}

// Loads a model off the JS thread with progress; cancel() flips a flag that the load polls.
class LoadWorker final : public Napi::AsyncProgressWorker<float> {
 public:
  LoadWorker(Napi::Env env, qrank::PipelineOptions options, Napi::Function on_progress,
             std::shared_ptr<std::atomic<bool>> cancelled)
      : Napi::AsyncProgressWorker<float>(env, "qrank:load"),
        deferred_(Napi::Promise::Deferred::New(env)),
        options_(std::move(options)),
        cancelled_(std::move(cancelled)) {
    if (!on_progress.IsEmpty()) progress_ = Napi::Persistent(on_progress);
  }

  Napi::Promise Promise() const { return deferred_.Promise(); }

  void Execute(const ExecutionProgress& progress) override {
    try {
      options_.on_progress = [&](float p) {
        progress.Send(&p, 1);
        return !cancelled_->load();
      };
      if (cancelled_->load()) throw Error(ErrorCode::kAborted, "model load aborted");
      pipeline_ = qrank::Pipeline::open(options_);
    } catch (...) {
      const Error e = qrank::current_error();
      code_ = e.code();
      SetError(e.what());
    }
  }

  void OnProgress(const float* data, size_t count) override {
    if (progress_.IsEmpty() || count == 0) return;
    Napi::HandleScope scope(Env());
    progress_.Call({Napi::Number::New(Env(), data[count - 1])});
  }

  void OnOK() override {
    Napi::Env env = Env();
    Napi::Object obj = addon_data(env).model_constructor.New({});
    NativePipeline::Unwrap(obj)->Attach(env, std::move(pipeline_));
    deferred_.Resolve(obj);
  }

  void OnError(const Napi::Error& e) override { deferred_.Reject(make_error(Env(), code_, e.Message()).Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  qrank::PipelineOptions options_;
  std::shared_ptr<std::atomic<bool>> cancelled_;
  Napi::FunctionReference progress_;
  std::unique_ptr<qrank::Pipeline> pipeline_;
  ErrorCode code_ = ErrorCode::kEngineFailure;
};

// Closes a pipeline off the JS thread: the scheduler joins its thread after failing what is queued.
class CloseWorker final : public Napi::AsyncWorker {
 public:
  CloseWorker(Napi::Function callback, std::shared_ptr<qrank::Pipeline> pipeline)
      : Napi::AsyncWorker(callback, "qrank:close"), pipeline_(std::move(pipeline)) {}
  // The last reference goes here too, so the weights are freed off the JS thread.
  void Execute() override {
    pipeline_->close();
    pipeline_.reset();
  }

 private:
  std::shared_ptr<qrank::Pipeline> pipeline_;
};

Napi::Object model_info_to_js(Napi::Env env, const qrank::ModelInfo& m) {
  auto number = [&](double v) { return Napi::Number::New(env, v); };
  Napi::Object o = Napi::Object::New(env);
  o.Set("path", m.path);
  o.Set("architecture", m.architecture);
  o.Set("name", m.name);
  o.Set("description", m.description);
  o.Set("pooling", m.pooling);
  o.Set("contextLength", number(static_cast<double>(m.context_length)));
  o.Set("embeddingLength", number(static_cast<double>(m.embedding_length)));
  o.Set("layers", number(static_cast<double>(m.layers)));
  o.Set("heads", number(static_cast<double>(m.heads)));
  o.Set("kvHeads", number(static_cast<double>(m.kv_heads)));
  o.Set("headDim", number(static_cast<double>(m.head_dim)));
  o.Set("ffnLength", number(static_cast<double>(m.ffn_length)));
  o.Set("weightType", m.weight_type);
  o.Set("vocabSize", number(static_cast<double>(m.vocab_size)));
  o.Set("parameters", number(static_cast<double>(m.parameters)));
  o.Set("sizeBytes", number(static_cast<double>(m.size_bytes)));
  Napi::Array labels = Napi::Array::New(env, m.class_labels.size());
  for (size_t i = 0; i < m.class_labels.size(); ++i) labels.Set(static_cast<uint32_t>(i), m.class_labels[i]);
  o.Set("classLabels", labels);
  o.Set("causal", m.causal);
  o.Set("synthetic", m.synthetic);
  return o;
}

// What a GGUF is, from its metadata alone (off the JS thread: the vocabulary is read too): its facts,
// which recipe serves each role (or why none does) and why the CUDA engine could not serve it here.
class InspectWorker final : public Napi::AsyncWorker {
 public:
  InspectWorker(Napi::Env env, std::string path)
      : Napi::AsyncWorker(env, "qrank:inspect"), deferred_(Napi::Promise::Deferred::New(env)), path_(std::move(path)) {}
  Napi::Promise Promise() const { return deferred_.Promise(); }

  void Execute() override {
    try {
      const auto file = qrank::GgufFile::open(path_);
      info_ = qrank::read_model_info(*file);
      tensors_ = file->tensors().size();
      for (const qrank::Role role : {qrank::Role::kReranker, qrank::Role::kEmbedder}) {
        roles_.push_back(qrank::role_support(info_, role));
        cuda_.push_back(qrank::cuda_unsupported_reason(info_, role));
      }
    } catch (...) {
      const Error e = qrank::current_error();
      code_ = e.code();
      SetError(e.what());
    }
  }

  void OnOK() override {
    Napi::Env env = Env();
    Napi::Object o = model_info_to_js(env, info_);
    o.Set("tensors", Napi::Number::New(env, static_cast<double>(tensors_)));
    Napi::Object roles = Napi::Object::New(env);
    const char* names[] = {"reranker", "embedder"};
    for (size_t i = 0; i < roles_.size(); ++i) {
      Napi::Object r = Napi::Object::New(env);
      if (roles_[i].recipe.empty()) {
        r.Set("error", roles_[i].why_not);
      } else {
        r.Set("recipe", roles_[i].recipe);
        r.Set("cuda", cuda_[i].empty() ? Napi::Value(Napi::Boolean::New(env, true)) : Napi::Value(Napi::String::New(env, cuda_[i])));
      }
      roles.Set(names[i], r);
    }
    o.Set("roles", roles);
    deferred_.Resolve(o);
  }

  void OnError(const Napi::Error& e) override { deferred_.Reject(make_error(Env(), code_, e.Message()).Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::string path_;
  qrank::ModelInfo info_;
  size_t tensors_ = 0;
  std::vector<qrank::RoleSupport> roles_;
  std::vector<std::string> cuda_;
  ErrorCode code_ = ErrorCode::kEngineFailure;
};

}  // namespace

Napi::Function NativePipeline::Init(Napi::Env env) {
  Napi::Function ctor = DefineClass(env, "NativePipeline",
                                    {
                                        InstanceMethod<&NativePipeline::Score>("score"),
                                        InstanceMethod<&NativePipeline::Embed>("embed"),
                                        InstanceMethod<&NativePipeline::Cancel>("cancel"),
                                        InstanceMethod<&NativePipeline::Tokenize>("tokenize"),
                                        InstanceMethod<&NativePipeline::Detokenize>("detokenize"),
                                        InstanceMethod<&NativePipeline::FormatPair>("formatPair"),
                                        InstanceMethod<&NativePipeline::FormatText>("formatText"),
                                        InstanceMethod<&NativePipeline::Info>("info"),
                                        InstanceMethod<&NativePipeline::Stats>("stats"),
                                        InstanceMethod<&NativePipeline::Close>("close"),
                                    });
  addon_data(env).model_constructor = Napi::Persistent(ctor);
  return ctor;
}

// inspectModel(path) -> Promise<description>: see InspectWorker.
Napi::Value NativePipeline::Inspect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) throw make_error(env, ErrorCode::kInvalidInput, "inspectModel needs a path");
  auto* worker = new InspectWorker(env, info[0].As<Napi::String>().Utf8Value());
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

Napi::Value NativePipeline::Load(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject()) throw make_error(env, ErrorCode::kInvalidInput, "loadModel needs an options object");
  Napi::Object o = info[0].As<Napi::Object>();
  qrank::PipelineOptions options;
  options.model_path = get_string(o, "model");
  const std::string role = get_string(o, "role", "reranker");
  options.role = role == "embedder" ? qrank::Role::kEmbedder : qrank::Role::kReranker;
  const std::string device = get_string(o, "device", "auto");
  options.device = device == "cuda" ? qrank::Device::kCuda : device == "cpu" ? qrank::Device::kCpu : qrank::Device::kAuto;
  options.max_length = get_int(o, "maxLength");
  options.batch_tokens = get_int(o, "batchTokens");
  options.max_sequences = get_int(o, "maxSequences");
  options.threads = get_int(o, "threads");
  options.device_index = get_int(o, "deviceIndex");

  auto cancelled = std::make_shared<std::atomic<bool>>(false);
  Napi::Function on_progress = info[1].IsFunction() ? info[1].As<Napi::Function>() : Napi::Function();
  auto* worker = new LoadWorker(env, std::move(options), on_progress, cancelled);
  Napi::Object task = Napi::Object::New(env);
  task.Set("promise", worker->Promise());
  task.Set("cancel", Napi::Function::New(env, [cancelled](const Napi::CallbackInfo&) { cancelled->store(true); }, "cancel"));
  worker->Queue();
  return task;
}

NativePipeline::NativePipeline(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativePipeline>(info) {}

NativePipeline::~NativePipeline() { Shutdown(); }

void NativePipeline::OnEnvCleanup(void* self) { static_cast<NativePipeline*>(self)->Shutdown(); }

// Stops the scheduler thread and lets go of the thread-safe function; used by the finalizer and at
// environment teardown (worker threads, process exit), so no live handle outlives its environment.
void NativePipeline::Shutdown() {
  if (env_) {
    napi_remove_env_cleanup_hook(env_, &NativePipeline::OnEnvCleanup, this);
    env_ = nullptr;
  }
  if (pipeline_) pipeline_->close();
  if (tsfn_live_) {
    tsfn_.Release();
    tsfn_live_ = false;
  }
  closed_ = true;
}

void NativePipeline::Attach(Napi::Env env, std::unique_ptr<qrank::Pipeline> pipeline) {
  pipeline_ = std::move(pipeline);
  tsfn_ = Napi::ThreadSafeFunction::New(env, Napi::Function(), "qrank:complete", 0, 1);
  tsfn_.Unref(env);  // held only while calls are pending
  tsfn_live_ = true;
  env_ = env;
  napi_add_env_cleanup_hook(env, &NativePipeline::OnEnvCleanup, this);
}

qrank::Pipeline& NativePipeline::pipeline(Napi::Env env) {
  if (closed_ || !pipeline_) throw make_error(env, ErrorCode::kClosed, "the model is closed");
  return *pipeline_;
}

void NativePipeline::Delivered(Napi::Env env) {
  if (pending_ > 0 && --pending_ == 0 && tsfn_live_) tsfn_.Unref(env);
}

uint64_t NativePipeline::Submit(Napi::Env env, const Napi::Function& callback,
                             const std::function<uint64_t(qrank::Callback)>& submit) {
  auto shared = std::make_shared<Completion*>(new Completion{this, Napi::Persistent(Value()), Napi::Persistent(callback), {}});
  Napi::ThreadSafeFunction tsfn = tsfn_;
  qrank::Callback done = [tsfn, shared](qrank::Outcome&& outcome) mutable {
    Completion* c = *shared;
    *shared = nullptr;
    // When the environment is going away nobody is waiting, and the completion holds a JS function
    // reference that may only be released on the JS thread: it is left to the process's end.
    if (qrank::process_exiting()) return;
    c->outcome = std::move(outcome);
    tsfn.BlockingCall(c, deliver);
  };
  if (pending_++ == 0) tsfn_.Ref(env);
  try {
    return submit(std::move(done));
  } catch (...) {
    // Rejected before it was queued: the callback will never run.
    if (*shared) {
      delete *shared;
      *shared = nullptr;
      Delivered(env);
    }
    throw;
  }
}

// score(queries: string[], documents: string[], instruction: string, maxInputTokens: number,
//       truncate: boolean, callback) -> id
// queries has one entry (shared by every document) or one per document.
Napi::Value NativePipeline::Score(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    qrank::Pipeline& p = pipeline(env);
    std::vector<std::string> queries = get_strings(env, info[0], "queries");
    std::vector<std::string> documents = get_strings(env, info[1], "documents");
    if (queries.size() != 1 && queries.size() != documents.size()) {
      throw make_error(env, ErrorCode::kInvalidInput, "queries must have one entry or one per document");
    }
    std::string instruction = info[2].IsString() ? info[2].As<Napi::String>().Utf8Value() : "";
    const qrank::InputLimit limit = get_input_limit(env, info, 3);
    if (!info[5].IsFunction()) throw make_error(env, ErrorCode::kInvalidInput, "callback must be a function");
    std::vector<qrank::Pair> pairs(documents.size());
    for (size_t i = 0; i < documents.size(); ++i) {
      pairs[i].query = queries.size() == 1 ? queries[0] : std::move(queries[i]);
      pairs[i].document = std::move(documents[i]);
    }
    const uint64_t id = Submit(env, info[5].As<Napi::Function>(), [&](qrank::Callback done) {
      return p.score(std::move(pairs), std::move(instruction), limit, std::move(done));
    });
    return Napi::Number::New(env, static_cast<double>(id));
  });
}

// embed(texts: string[], kind: 'query'|'document', instruction: string, dimensions: number,
//       maxInputTokens: number, truncate: boolean, callback) -> id
Napi::Value NativePipeline::Embed(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    qrank::Pipeline& p = pipeline(env);
    std::vector<std::string> texts = get_strings(env, info[0], "texts");
    const qrank::TextKind kind = get_kind(env, info[1]);
    std::string instruction = info[2].IsString() ? info[2].As<Napi::String>().Utf8Value() : "";
    const int dimensions = info[3].IsNumber() ? info[3].As<Napi::Number>().Int32Value() : 0;
    const qrank::InputLimit limit = get_input_limit(env, info, 4);
    if (!info[6].IsFunction()) throw make_error(env, ErrorCode::kInvalidInput, "callback must be a function");
    const uint64_t id = Submit(env, info[6].As<Napi::Function>(), [&](qrank::Callback done) {
      return p.embed(std::move(texts), kind, std::move(instruction), dimensions, limit, std::move(done));
    });
    return Napi::Number::New(env, static_cast<double>(id));
  });
}

void NativePipeline::Cancel(const Napi::CallbackInfo& info) {
  if (pipeline_ && !closed_ && info[0].IsNumber()) {
    pipeline_->cancel(static_cast<uint64_t>(info[0].As<Napi::Number>().Int64Value()));
  }
}

Napi::Value NativePipeline::Tokenize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    if (!info[0].IsString()) throw make_error(env, ErrorCode::kInvalidInput, "text must be a string");
    return to_js(env, pipeline(env).tokenize(info[0].As<Napi::String>().Utf8Value()));
  });
}

Napi::Value NativePipeline::Detokenize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
      throw make_error(env, ErrorCode::kInvalidInput, "tokens must be an Int32Array");
    }
    Napi::Int32Array a = info[0].As<Napi::Int32Array>();
    const qrank::Tokens tokens(a.Data(), a.Data() + a.ElementLength());
    const int64_t vocab = pipeline(env).info().vocab_size;
    for (qrank::Token t : tokens) {
      if (t < 0 || t >= vocab) throw make_error(env, ErrorCode::kInvalidInput, "token id " + std::to_string(t) + " is outside the vocabulary");
    }
    return Napi::String::New(env, pipeline(env).detokenize(tokens));
  });
}

Napi::Value NativePipeline::FormatPair(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    if (!info[0].IsString() || !info[1].IsString()) throw make_error(env, ErrorCode::kInvalidInput, "query and document must be strings");
    const qrank::Pair pair{info[0].As<Napi::String>().Utf8Value(), info[1].As<Napi::String>().Utf8Value()};
    const std::string instruction = info[2].IsString() ? info[2].As<Napi::String>().Utf8Value() : "";
    return formatted(env, pipeline(env).format_pair(pair, instruction));
  });
}

Napi::Value NativePipeline::FormatText(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    if (!info[0].IsString()) throw make_error(env, ErrorCode::kInvalidInput, "text must be a string");
    const qrank::TextKind kind = get_kind(env, info[1]);
    const std::string instruction = info[2].IsString() ? info[2].As<Napi::String>().Utf8Value() : "";
    return formatted(env, pipeline(env).format_text(info[0].As<Napi::String>().Utf8Value(), kind, instruction));
  });
}

Napi::Value NativePipeline::Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    qrank::Pipeline& p = pipeline(env);
    Napi::Object o = model_info_to_js(env, p.info());
    o.Set("recipe", p.recipe());
    o.Set("backend", p.backend());
    o.Set("maxLength", Napi::Number::New(env, static_cast<double>(p.max_length())));
    const qrank::EngineLimits l = p.limits();
    Napi::Object limits = Napi::Object::New(env);
    limits.Set("batchTokens", Napi::Number::New(env, l.batch_tokens));
    limits.Set("maxSequences", Napi::Number::New(env, l.max_sequences));
    limits.Set("maxBatchTokens", Napi::Number::New(env, l.max_batch_tokens));
    limits.Set("maxSequencesLimit", Napi::Number::New(env, l.max_sequences_limit));
    o.Set("limits", limits);
    o.Set("defaultInstruction", p.default_instruction());
    return o;
  });
}

Napi::Value NativePipeline::Stats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    const qrank::PipelineStats ps = pipeline(env).stats();
    const qrank::SchedulerStats& s = ps.scheduler;
    Napi::Object o = Napi::Object::New(env);
    o.Set("batches", Napi::Number::New(env, static_cast<double>(s.engine.batches)));
    o.Set("sequences", Napi::Number::New(env, static_cast<double>(s.engine.sequences)));
    o.Set("tokensEvaluated", Napi::Number::New(env, static_cast<double>(s.engine.tokens_evaluated)));
    o.Set("tokensReused", Napi::Number::New(env, static_cast<double>(s.engine.tokens_reused)));
    o.Set("queuedCalls", Napi::Number::New(env, static_cast<double>(s.queued_jobs)));
    o.Set("completedCalls", Napi::Number::New(env, static_cast<double>(s.completed_jobs)));
    o.Set("queryPrompts", Napi::Number::New(env, static_cast<double>(ps.query_prompts)));
    o.Set("deviceBytes", Napi::Number::New(env, static_cast<double>(s.engine.device_bytes)));
    o.Set("devicePeakBytes", Napi::Number::New(env, static_cast<double>(s.engine.device_peak_bytes)));
    return o;
  });
}

// close(callback): pending calls fail with CLOSED; the callback runs once the thread has stopped.
Napi::Value NativePipeline::Close(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsFunction()) throw make_error(env, ErrorCode::kInvalidInput, "callback must be a function");
  Napi::Function callback = info[0].As<Napi::Function>();
  if (closed_ || !pipeline_) {
    callback.Call({env.Null()});
    return env.Undefined();
  }
  closed_ = true;
  if (env_) {
    napi_remove_env_cleanup_hook(env_, &NativePipeline::OnEnvCleanup, this);
    env_ = nullptr;
  }
  // The completion function is released only after the close worker is done, so the CLOSED
  // rejections that the scheduler posts while stopping are still delivered.
  Napi::ThreadSafeFunction tsfn = tsfn_;
  tsfn_live_ = false;
  Napi::Function after = Napi::Function::New(env, [tsfn, callback = Napi::Persistent(callback)](const Napi::CallbackInfo& i) mutable {
    Napi::ThreadSafeFunction t = tsfn;
    t.Release();
    callback.Call({i[0]});
  });
  (new CloseWorker(after, std::move(pipeline_)))->Queue();
  return env.Undefined();
}

}  // namespace qrank_node
