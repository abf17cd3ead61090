// Maps qrank::Error onto JavaScript errors that carry a stable `code`; lib/errors.ts turns them
// into QrankError with the caller's stack.
#pragma once

#include <napi.h>

#include <string>

#include "qrank/error.h"

namespace qrank_node {

Napi::Error make_error(Napi::Env env, qrank::ErrorCode code, const std::string& message);
Napi::Error make_error(Napi::Env env, const qrank::Error& error);
// Runs fn and rethrows qrank::Error (and std::exception) as coded JavaScript errors.
template <typename Fn>
auto guard(Napi::Env env, Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const qrank::Error& e) {
    throw make_error(env, e);
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::bad_alloc&) {
    throw make_error(env, qrank::ErrorCode::kOutOfMemory, "out of memory");
  } catch (const std::exception& e) {
    throw make_error(env, qrank::ErrorCode::kEngineFailure, e.what());
  }
}

}  // namespace qrank_node
