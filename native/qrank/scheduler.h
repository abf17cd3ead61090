// The scheduler owns an engine on its own thread. Jobs from any number of callers are queued,
// prepared (tokenised) on that thread, and their sequences packed into shared batches up to the
// engine's token budget, in arrival order. A job says which of its sequences begin with the same
// tokens (one query, many documents: a prefix group) and how many; the scheduler hands such groups
// to the engine, which evaluates the prefix once. Nothing compares tokens to rediscover them.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "qrank/engine.h"
#include "qrank/error.h"

namespace qrank {

class Job {
 public:
  virtual ~Job() = default;
  // Builds sequences() from the job's inputs; runs on the scheduler thread; may throw Error. Long
  // preparations poll `stop` (the scheduler is closing) and cancelled().
  virtual void prepare(const std::atomic<bool>& stop) = 0;
  // Called exactly once, on the scheduler thread: error == nullptr on success, then outputs()
  // holds outputs_per_sequence floats per sequence.
  virtual void finish(const Error* error) = 0;

  // Appends a sequence. Sequences of one job with the same `group` (>= 0) begin with the same
  // `shared` tokens (the prefix the engine may evaluate once).
  void add_sequence(Tokens tokens, int32_t group = -1, int32_t shared = 0);
  const std::vector<Tokens>& sequences() const { return sequences_; }
  std::vector<float>& outputs() { return outputs_; }
  uint64_t id() const { return id_; }
  void cancel() { cancelled_.store(true); }
  bool cancelled() const { return cancelled_.load(); }

 private:
  friend class Scheduler;
  struct Prefix {
    int32_t group;
    int32_t shared;
  };
  std::vector<Tokens> sequences_;
  std::vector<Prefix> prefixes_;  // one per sequence
  std::vector<float> outputs_;
  uint64_t id_ = 0;
  size_t next_ = 0;    // first sequence not yet scheduled
  size_t done_ = 0;    // sequences computed
  bool prepared_ = false;
  std::atomic<bool> cancelled_{false};
};

// True once the process has started exiting (exit() or process.exit()): completions are then
// dropped instead of being posted to a JavaScript environment that is going away.
bool process_exiting();

struct SchedulerStats {
  EngineStats engine;
  size_t queued_jobs = 0;
  uint64_t completed_jobs = 0;
};

class Scheduler {
 public:
  explicit Scheduler(std::unique_ptr<Engine> engine);
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Queues a job; returns its id. After close() the job is finished at once with kClosed.
  uint64_t submit(std::shared_ptr<Job> job);
  // Marks a job aborted: queued sequences are dropped, and it finishes with kAborted.
  void cancel(uint64_t id);
  // Finishes every pending job with kClosed, aborts the batch in flight and joins the thread.
  void close();
  SchedulerStats stats() const;
  const Engine& engine() const { return *engine_; }

 private:
  struct Slice {
    std::shared_ptr<Job> job;
    size_t first;
    size_t count;
  };

  void loop();
  void prepare_new(std::unique_lock<std::mutex>& lock);
  std::vector<Slice> take_batch();
  void run_batch(const std::vector<Slice>& slices);
  static bool shares_prefix(const Job& job, size_t a, size_t b);
  static size_t reusable(const Job& job, size_t i);
  void finish_job(const std::shared_ptr<Job>& job, const Error* error);
  void reap_cancelled();

  std::unique_ptr<Engine> engine_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::shared_ptr<Job>> queue_;
  std::atomic<bool> closing_{false};
  uint64_t next_id_ = 1;
  uint64_t completed_ = 0;
  EngineStats engine_stats_;
  std::once_flag joined_;
  std::thread worker_;
};

}  // namespace qrank
