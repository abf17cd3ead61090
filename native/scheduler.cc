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

}  // namespace

bool process_exiting() { return g_exiting.load(); }

void Job::add_sequence(Tokens tokens, int32_t group, int32_t shared) {
  sequences_.push_back(std::move(tokens));
  prefixes_.push_back(Prefix{group, shared});
}

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
      job->outputs_.assign(job->sequences_.size() * engine_->output().width, 0.0f);
      job->prepared_ = true;
    } catch (...) {
      const Error err = current_error();
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

// Packs sequences in arrival order until the token budget or the sequence limit is reached. The
// members of a prefix group after its first count their shared prefix once. A sequence longer than
// the whole budget still runs, alone, since the engine grows its context to fit it.
std::vector<Scheduler::Slice> Scheduler::take_batch() {
  std::vector<Slice> slices;
  std::lock_guard<std::mutex> lock(mutex_);
  const EngineLimits limits = engine_->limits();
  const size_t budget = static_cast<size_t>(limits.batch_tokens);
  const size_t max_seqs = static_cast<size_t>(limits.max_sequences);
  const bool reuse = engine_->reuses_prefixes();
  size_t tokens = 0, seqs = 0;
  for (auto& job : queue_) {
    if (!job->prepared_ || job->cancelled()) continue;
    const auto& s = job->sequences_;
    size_t first = job->next_, count = 0;
    while (job->next_ < s.size() && seqs < max_seqs) {
      const size_t i = job->next_;
      size_t cost = s[i].size();
      if (reuse && count > 0 && shares_prefix(*job, i - 1, i)) cost -= reusable(*job, i);
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

bool Scheduler::shares_prefix(const Job& job, size_t a, size_t b) {
  const auto& p = job.prefixes_;
  return p[a].group >= 0 && p[a].group == p[b].group;
}

// The prefix tokens of sequence i that another member of its group lets the engine skip: at least
// kMinSharedPrefix to be worth the bookkeeping, and never the sequence's last token (its output).
size_t Scheduler::reusable(const Job& job, size_t i) {
  const size_t shared = std::min<size_t>(job.prefixes_[i].shared, job.sequences_[i].size() - 1);
  return shared >= kMinSharedPrefix ? shared : 0;
}

void Scheduler::run_batch(const std::vector<Slice>& slices) {
  std::vector<EngineSequence> seqs;
  int32_t group = 0;
  const bool reuse = engine_->reuses_prefixes();
  for (const auto& slice : slices) {
    const Job& job = *slice.job;
    // Runs of consecutive members of one prefix group become one engine group; the prefix is the
    // shortest reusable length among them.
    for (size_t k = 0; k < slice.count;) {
      const size_t begin = slice.first + k;
      size_t end = begin + 1;
      while (end < slice.first + slice.count && shares_prefix(job, begin, end)) ++end;
      size_t prefix = end - begin > 1 && reuse ? reusable(job, begin) : 0;
      for (size_t i = begin + 1; i < end && prefix > 0; ++i) prefix = std::min(prefix, reusable(job, i));
      for (size_t i = begin; i < end; ++i) {
        const Tokens& t = job.sequences_[i];
        seqs.push_back(EngineSequence{t.data(), static_cast<int32_t>(t.size()), prefix > 0 ? group : -1,
                                      static_cast<int32_t>(prefix)});
      }
      if (prefix > 0) ++group;
      k = end - slice.first;
    }
  }
  const size_t width = engine_->output().width;
  std::vector<float> out(seqs.size() * width);
  const std::function<bool()> should_abort = [&] {
    if (closing_) return true;
    return std::all_of(slices.begin(), slices.end(), [](const Slice& sl) { return sl.job->cancelled(); });
  };
  const Error* failure = nullptr;
  Error caught(ErrorCode::kEngineFailure, "");
  try {
    engine_->run(seqs, out.data(), should_abort);
  } catch (...) {
    caught = current_error();
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
