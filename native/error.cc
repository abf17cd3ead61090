#include "qrank/error.h"

#include <exception>
#include <new>

namespace qrank {

Error current_error() {
  try {
    throw;
  } catch (const Error& e) {
    return e;
  } catch (const std::bad_alloc&) {
    return Error(ErrorCode::kOutOfMemory, "out of memory");
  } catch (const std::exception& e) {
    return Error(ErrorCode::kEngineFailure, e.what());
  } catch (...) {
    return Error(ErrorCode::kEngineFailure, "unknown failure");
  }
}

const char* error_code_name(ErrorCode code) {
  switch (code) {
    case ErrorCode::kModelNotFound: return "MODEL_NOT_FOUND";
    case ErrorCode::kBadModel: return "BAD_MODEL";
    case ErrorCode::kInvalidInput: return "INVALID_INPUT";
    case ErrorCode::kClosed: return "CLOSED";
    case ErrorCode::kAborted: return "ABORTED";
    case ErrorCode::kOutOfMemory: return "OUT_OF_MEMORY";
    case ErrorCode::kUnsupported: return "UNSUPPORTED";
    case ErrorCode::kIndexNotFound: return "INDEX_NOT_FOUND";
    case ErrorCode::kBadIndex: return "BAD_INDEX";
    case ErrorCode::kIoError: return "IO_ERROR";
    case ErrorCode::kInputTooLong: return "INPUT_TOO_LONG";
    case ErrorCode::kEngineFailure: return "ENGINE_FAILURE";
  }
  return "ENGINE_FAILURE";
}

}  // namespace qrank
