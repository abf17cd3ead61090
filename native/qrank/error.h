// Errors that cross qrank's layers. Every failure the engine reports carries a stable code that the
// N-API glue maps 1:1 onto QrankError.code in JavaScript.
#pragma once

#include <stdexcept>
#include <string>

namespace qrank {

enum class ErrorCode {
  kModelNotFound,  // the model file does not exist or cannot be read
  kBadModel,       // the file is not a usable model for the requested role
  kInvalidInput,   // the caller's input is wrong (empty, too long for the template, ...)
  kClosed,         // the model was closed before the work ran
  kAborted,        // the caller aborted the work
  kOutOfMemory,    // an allocation in the engine failed
  kUnsupported,    // this build or machine cannot do what was asked (e.g. CUDA in a CPU build)
  kIndexNotFound,  // no index file at that path
  kBadIndex,       // the index file is damaged or not a qrank index
  kIoError,        // reading or writing a file failed
  kInputTooLong,   // an input is longer than its token limit and the caller asked not to cut it
  kEngineFailure,  // the engine failed for a reason of its own (keep it last: see kErrorCodes)
};
constexpr int kErrorCodes = static_cast<int>(ErrorCode::kEngineFailure) + 1;

// The stable name JavaScript sees (QrankError.code); lib/errors.ts lists each, checked by a test.
const char* error_code_name(ErrorCode code);

class Error;
// The one translation of a caught exception into a coded Error, for every layer that catches (the
// N-API glue's workers and guards, the scheduler): call it inside a catch block. qrank::Error keeps
// its code, std::bad_alloc is kOutOfMemory, any other exception kEngineFailure with its message.
Error current_error();

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ErrorCode code() const { return code_; }

 private:
  ErrorCode code_;
};

}  // namespace qrank
