// Maps qrank::Error onto JavaScript errors that carry a stable `code`; lib/errors.ts turns them
// into QrankError with the caller's stack.
#pragma once

#include <napi.h>

#include <string>

#include "qrank/error.h"

namespace qrank_node {

Napi::Error make_error(Napi::Env env, qrank::ErrorCode code, const std::string& message);
Napi::Error make_error(Napi::Env env, const qrank::Error& error);
// Runs fn and rethrows what it throws as a coded JavaScript error (qrank::current_error decides the code).
template <typename Fn>
auto guard(Napi::Env env, Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const Napi::Error&) {
    throw;
  } catch (...) {
    throw make_error(env, qrank::current_error());
  }
}

}  // namespace qrank_node
