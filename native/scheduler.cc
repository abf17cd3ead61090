#include "qrank/scheduler.h"

#include <algorithm>
#include <cstdlib>
#include <set>

namespace qrank {
namespace {

// Shortest shared prefix worth reusing: below this the bookkeeping costs more than it saves.
constexpr size_t kMinSharedPrefix = 8;

// Live schedulers, closed by an atexit handler: exit() destroys C++ statics (llama.cpp's unicode
// tables among them) while a scheduler thread may still be tokenising or decoding. Both are heap
// objects that are never freed, so they outlive every static destructor.
std::mutex* g_live_mutex = new std::mutex();
std::set<Scheduler*>* g_live = new std::set<Scheduler*>();
std::atomic<bool> g_exiting{false};

void close_all_at_exit() {
  g_exiting = true;
  std::vector<Scheduler*> live;
  {
    std::lock_guard<std::mutex> lock(*g_live_mutex);
    live.assign(g_live->begin(), g_live->end());
  }
  for (Scheduler* s : live) s->close();
}

size_t common_prefix(const Tokens& a, const Tokens& b) {
  const size_t n = std::min(a.size(), b.size());
  size_t i = 0;
  while (i < n && a[i] == b[i]) ++i;
  return i;
}

}  // namespace

bool process_exiting() { return g_exiting.load(); }

Scheduler::Scheduler(std::unique_ptr<Engine> engine) : engine_(std::move(engine)) {
  {
    std::lock_guard<std::mutex> lock(*g_live_mutex);
    g_live->insert(this);
  }
  // Registered now, after the model load created llama.cpp's lazily built statics, so it runs
  // before their destructors (atexit order is the reverse of registration).
  std::atexit(close_all_at_exit);
  worker_ = std::thread([this] { loop(); });
}

Scheduler::~Scheduler() {
  close();
  std::lock_guard<std::mutex> lock(*g_live_mutex);
  g_live->erase(this);
}

uint64_t Scheduler::submit(std::shared_ptr<Job> job) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    job->id_ = next_id_++;
    if (!closing_) {
      queue_.push_back(job);
      wake_.notify_one();
      return job->id_;
    }
  }
  const Error closed(ErrorCode::kClosed, "the model is closed");
  job->finish(&closed);
  return job->id();
}

void Scheduler::cancel(uint64_t id) {
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto& job : queue_) {
    if (job->id_ == id) job->cancel();
  }
  wake_.notify_one();
}

void Scheduler::close() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    closing_ = true;
    wake_.notify_all();
  }
  std::call_once(joined_, [this] {
    if (worker_.joinable()) worker_.join();
  });
}

SchedulerStats Scheduler::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return SchedulerStats{engine_stats_, queue_.size(), completed_};
}

void Scheduler::finish_job(const std::shared_ptr<Job>& job, const Error* error) {
  job->finish(error);
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = std::find(queue_.begin(), queue_.end(), job);
  if (it != queue_.end()) queue_.erase(it);
  ++completed_;
}

void Scheduler::loop() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (true) {
    wake_.wait(lock, [this] { return closing_ || !queue_.empty(); });
    if (closing_) break;
    prepare_new(lock);
    lock.unlock();
    reap_cancelled();
    std::vector<Slice> batch = take_batch();
    if (!batch.empty()) run_batch(batch);
    lock.lock();
  }
  // Closing: everything still queued is finished with kClosed, outside the lock.
  std::deque<std::shared_ptr<Job>> rest;
  rest.swap(queue_);
  lock.unlock();
  const Error closed(ErrorCode::kClosed, "the model was closed before this call finished");
  for (auto& job : rest) job->finish(&closed);
}

// Tokenises jobs that arrived since the last batch. The lock is released while a job prepares, so
// callers can keep submitting; a job that fails to prepare is finished with its error.
void Scheduler::prepare_new(std::unique_lock<std::mutex>& lock) {
  for (size_t i = 0; i < queue_.size() && !closing_; ++i) {
    std::shared_ptr<Job> job = queue_[i];
    if (job->prepared_) continue;
    lock.unlock();
    if (job->cancelled()) {
      const Error aborted(ErrorCode::kAborted, "the call was aborted");
      finish_job(job, &aborted);
      lock.lock();
      i = static_cast<size_t>(-1);
      continue;
    }
    try {
      job->prepare(closing_);
      job->outputs_.assign(job->sequences_.size() * engine_->outputs_per_sequence(), 0.0f);
      job->prepared_ = true;
    } catch (const Error& e) {
      finish_job(job, &e);
    } catch (const std::exception& e) {
      const Error err(ErrorCode::kEngineFailure, e.what());
      finish_job(job, &err);
    }
    lock.lock();
    // The queue may have changed while unlocked: restart from the front (prepared jobs are skipped).
    i = static_cast<size_t>(-1);
  }
}

void Scheduler::reap_cancelled() {
  std::vector<std::shared_ptr<Job>> cancelled;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& job : queue_) {
      if (job->cancelled() && job->prepared_) cancelled.push_back(job);
    }
  }
  const Error aborted(ErrorCode::kAborted, "the call was aborted");
  for (auto& job : cancelled) finish_job(job, &aborted);
}

// Packs sequences in arrival order until the token budget or the sequence limit is reached. A job's
// sequences that share a long prefix count it once. A sequence longer than the whole budget still
// runs, alone, since the engine grows its context to fit it.
std::vector<Scheduler::Slice> Scheduler::take_batch() {
  std::vector<Slice> slices;
  std::lock_guard<std::mutex> lock(mutex_);
  const size_t budget = static_cast<size_t>(engine_->batch_tokens());
  const size_t max_seqs = static_cast<size_t>(engine_->max_sequences());
  size_t tokens = 0, seqs = 0;
  for (auto& job : queue_) {
    if (!job->prepared_ || job->cancelled()) continue;
    const auto& s = job->sequences_;
    size_t first = job->next_, count = 0;
    while (job->next_ < s.size() && seqs < max_seqs) {
      const Tokens& seq = s[job->next_];
      size_t cost = seq.size();
      if (count > 0 && engine_->reuses_prefixes()) {
        const size_t shared = common_prefix(s[first], seq);
        if (shared >= kMinSharedPrefix) cost -= std::min(shared, seq.size() - 1);
      }
      if (seqs > 0 && tokens + cost > budget) break;
      tokens += cost;
      ++seqs;
      ++count;
      ++job->next_;
    }
    if (count > 0) slices.push_back(Slice{job, first, count});
    if (seqs >= max_seqs || tokens >= budget || job->next_ < s.size()) break;
  }
  return slices;
}

void Scheduler::run_batch(const std::vector<Slice>& slices) {
  std::vector<EngineSequence> seqs;
  std::vector<float*> dst;
  int32_t group = 0;
  for (const auto& slice : slices) {
    const auto& s = slice.job->sequences_;
    const Tokens& head = s[slice.first];
    // The group prefix is the shortest common prefix of the slice, leaving each member one token.
    size_t shared = head.size();
    for (size_t k = 1; k < slice.count; ++k) shared = std::min(shared, common_prefix(head, s[slice.first + k]));
    for (size_t k = 0; k < slice.count; ++k) shared = std::min(shared, s[slice.first + k].size() - 1);
    const bool grouped = engine_->reuses_prefixes() && slice.count > 1 && shared >= kMinSharedPrefix;
    for (size_t k = 0; k < slice.count; ++k) {
      const Tokens& t = s[slice.first + k];
      seqs.push_back(EngineSequence{t.data(), static_cast<int32_t>(t.size()), grouped ? group : -1,
                                    grouped ? static_cast<int32_t>(shared) : 0});
    }
    ++group;
  }
  const size_t width = engine_->outputs_per_sequence();
  std::vector<float> out(seqs.size() * width);
  const std::function<bool()> should_abort = [&] {
    if (closing_) return true;
    return std::all_of(slices.begin(), slices.end(), [](const Slice& sl) { return sl.job->cancelled(); });
  };
  const Error* failure = nullptr;
  Error caught(ErrorCode::kEngineFailure, "");
  try {
    engine_->run(seqs, out.data(), should_abort);
  } catch (const Error& e) {
    caught = e;
    failure = &caught;
  } catch (const std::exception& e) {
    caught = Error(ErrorCode::kEngineFailure, e.what());
    failure = &caught;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    engine_stats_ = engine_->stats();
  }
  if (failure && failure->code() == ErrorCode::kAborted && closing_) return;  // loop() finishes them with kClosed
  size_t offset = 0;
  for (const auto& slice : slices) {
    auto& job = *slice.job;
    if (failure) {
      finish_job(slice.job, failure);
      offset += slice.count;
      continue;
    }
    std::copy_n(out.begin() + offset * width, slice.count * width, job.outputs_.begin() + slice.first * width);
    offset += slice.count;
    job.done_ += slice.count;
    if (job.done_ == job.sequences_.size()) finish_job(slice.job, nullptr);
  }
}

}  // namespace qrank
