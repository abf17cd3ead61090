#include "errors.h"

namespace qrank_node {

Napi::Error make_error(Napi::Env env, qrank::ErrorCode code, const std::string& message) {
  Napi::Error err = Napi::Error::New(env, message);
  err.Set("code", Napi::String::New(env, qrank::error_code_name(code)));
  return err;
}

Napi::Error make_error(Napi::Env env, const qrank::Error& error) { return make_error(env, error.code(), error.what()); }

}  // namespace qrank_node
