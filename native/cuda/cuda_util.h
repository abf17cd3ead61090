// CUDA error handling and RAII owners for the engine's CUDA resources.
//
// Errors: every failing CUDA call becomes a qrank::Error: kOutOfMemory for an allocation that does
// not fit (the error is cleared and the context stays usable), kEngineFailure for anything else
// (after a sticky error, e.g. an illegal address, every later call fails the same way).
// Ownership: Stream, Event, DeviceBuffer (stream-ordered allocator: cudaMallocAsync on the owner's
// stream, freed with cudaFreeAsync on it, 256-byte aligned; the stream must outlive its buffers),
// PinnedBuffer (page-locked host memory for asynchronous copies). Move-only.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

#include "qrank/error.h"

namespace qrank::cuda {

inline void check_cuda(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return;
  (void)cudaGetLastError();  // clears a non-sticky error
  const ErrorCode code = e == cudaErrorMemoryAllocation ? ErrorCode::kOutOfMemory : ErrorCode::kEngineFailure;
  throw Error(code, std::string("CUDA: ") + what + ": " + cudaGetErrorString(e));
}

class Stream {
 public:
  Stream() { check_cuda(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate"); }
  ~Stream() {
    if (stream_) cudaStreamDestroy(stream_);
  }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  cudaStream_t get() const { return stream_; }
  void synchronize() const { check_cuda(cudaStreamSynchronize(stream_), "cudaStreamSynchronize"); }

 private:
  cudaStream_t stream_ = nullptr;
};

class Event {
 public:
  // Blocking sync: a host that waits sleeps instead of spinning a core.
  Event() { check_cuda(cudaEventCreateWithFlags(&event_, cudaEventDisableTiming | cudaEventBlockingSync), "cudaEventCreate"); }
  ~Event() {
    if (event_) cudaEventDestroy(event_);
  }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  void record(cudaStream_t stream) { check_cuda(cudaEventRecord(event_, stream), "cudaEventRecord"); }
  void wait() const { check_cuda(cudaEventSynchronize(event_), "cudaEventSynchronize"); }

 private:
  cudaEvent_t event_ = nullptr;
};

// What DeviceBuffer and PinnedBuffer share: move-only ownership of one allocation as the allocator
// gave it (`raw`, released by Free), the pointer handed out (raw rounded up to kAlignment) and its
// size in bytes.
template <class Free>
class OwnedMemory {
 public:
  static constexpr size_t kAlignment = 256;

  OwnedMemory() = default;
  ~OwnedMemory() { reset(); }
  OwnedMemory(OwnedMemory&& o) noexcept { *this = std::move(o); }
  OwnedMemory& operator=(OwnedMemory&& o) noexcept {
    if (this != &o) {
      reset();
      std::swap(raw_, o.raw_);
      std::swap(ptr_, o.ptr_);
      std::swap(bytes_, o.bytes_);
      std::swap(free_, o.free_);
    }
    return *this;
  }
  OwnedMemory(const OwnedMemory&) = delete;
  OwnedMemory& operator=(const OwnedMemory&) = delete;

  void reset() {
    if (raw_) free_(raw_);
    raw_ = ptr_ = nullptr;
    bytes_ = 0;
  }
  size_t bytes() const { return bytes_; }
  template <typename T = void>
  T* at(size_t offset = 0) const {
    return reinterpret_cast<T*>(static_cast<uint8_t*>(ptr_) + offset);
  }

 protected:
  OwnedMemory(void* raw, size_t bytes, Free free)
      : raw_(raw), ptr_(reinterpret_cast<void*>((reinterpret_cast<uintptr_t>(raw) + kAlignment - 1) / kAlignment * kAlignment)),
        bytes_(bytes), free_(free) {}

 private:
  void* raw_ = nullptr;
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
  Free free_{};
};

struct StreamFree {
  cudaStream_t stream = nullptr;
  void operator()(void* p) const { cudaFreeAsync(p, stream); }
};

struct PinnedFree {
  void operator()(void* p) const { cudaFreeHost(p); }
};

// Device memory from the stream-ordered allocator, 256-byte aligned (what cuBLASLt's heuristics
// assume; the allocation takes 256 bytes more so that the alignment holds whatever the pool gives).
class DeviceBuffer : public OwnedMemory<StreamFree> {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(size_t bytes, cudaStream_t stream) : OwnedMemory(allocate(bytes, stream), bytes, StreamFree{stream}) {}

 private:
  static void* allocate(size_t bytes, cudaStream_t stream) {
    void* raw = nullptr;
    check_cuda(cudaMallocAsync(&raw, bytes + kAlignment, stream), ("cannot allocate " + std::to_string(bytes >> 20) + " MiB on the device").c_str());
    return raw;
  }
};

// Page-locked host memory (cudaMallocHost's pages are aligned already).
class PinnedBuffer : public OwnedMemory<PinnedFree> {
 public:
  PinnedBuffer() = default;
  explicit PinnedBuffer(size_t bytes) : OwnedMemory(allocate(bytes), bytes, PinnedFree{}) {}

 private:
  static void* allocate(size_t bytes) {
    void* raw = nullptr;
    check_cuda(cudaMallocHost(&raw, bytes > 0 ? bytes : 1), ("cannot allocate " + std::to_string(bytes >> 20) + " MiB of pinned host memory").c_str());
    return raw;
  }
};

}  // namespace qrank::cuda
