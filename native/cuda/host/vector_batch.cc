#include "cuda/host/vector_batch.h"

#include <algorithm>
#include <numeric>

namespace qrank::cuda {

void SearchBatcher::run(BatchCall& call) {
  std::unique_lock<std::mutex> lock(mutex_);
  waiting_.push_back(&call);
  while (!call.done) {
    if (running_) {
      changed_.wait(lock);
      continue;
    }
    running_ = true;
    const std::vector<BatchCall*> batch = take_batch();
    ++batches_;
    largest_ = std::max(largest_, batch.size());
    lock.unlock();
    std::exception_ptr error;
    try {
      runner_(batch);
    } catch (...) {
      error = std::current_exception();
    }
    lock.lock();
    for (BatchCall* c : batch) {
      c->error = error;
      c->done = true;
    }
    running_ = false;
    changed_.notify_all();
  }
  if (call.error) std::rethrow_exception(call.error);
}

std::vector<BatchCall*> SearchBatcher::take_batch() {
  std::vector<BatchCall*> batch{waiting_.front()};
  waiting_.pop_front();
  const BatchCall& first = *batch.front();
  if (first.allow) return batch;
  size_t queries = first.nq;
  for (auto it = waiting_.begin(); it != waiting_.end();) {
    BatchCall* c = *it;
    const bool fits = queries + c->nq <= max_queries_ && (queries + c->nq) * first.k <= max_results_;
    if (!c->allow && c->k == first.k && c->nprobe == first.nprobe && fits) {
      batch.push_back(c);
      queries += c->nq;
      it = waiting_.erase(it);
    } else {
      ++it;
    }
  }
  return batch;
}

size_t SearchBatcher::batches() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return batches_;
}

size_t SearchBatcher::largest_batch() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return largest_;
}

size_t SearchBatcher::waiting() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return waiting_.size();
}

CellGroups group_by_cell(const int32_t* probes, size_t nq, size_t nprobe, size_t nlist) {
  std::vector<size_t> count(nlist + 1, 0);
  for (size_t e = 0; e < nq * nprobe; ++e) {
    if (probes[e] >= 0 && static_cast<size_t>(probes[e]) < nlist) ++count[probes[e] + 1];
  }
  std::partial_sum(count.begin(), count.end(), count.begin());  // count[c]: where cell c starts
  CellGroups g;
  g.entries.resize(count[nlist]);
  std::vector<size_t> at(count.begin(), count.end() - 1);
  for (size_t e = 0; e < nq * nprobe; ++e) {
    if (probes[e] >= 0 && static_cast<size_t>(probes[e]) < nlist) g.entries[at[probes[e]]++] = static_cast<uint32_t>(e);
  }
  g.offsets.push_back(0);
  for (size_t c = 0; c < nlist; ++c) {
    if (count[c + 1] == count[c]) continue;
    g.cells.push_back(static_cast<int32_t>(c));
    g.offsets.push_back(count[c + 1]);
  }
  return g;
}

void merge_top_k(const float* keys, const int64_t* tags, size_t nq, size_t lists, size_t per_list, size_t k, float* out_keys,
                 int64_t* out_tags) {
  std::vector<std::pair<float, int64_t>> found;
  const auto better = [](const std::pair<float, int64_t>& a, const std::pair<float, int64_t>& b) {
    return a.first != b.first ? a.first > b.first : a.second < b.second;
  };
  for (size_t q = 0; q < nq; ++q) {
    found.clear();
    for (size_t i = q * lists * per_list; i < (q + 1) * lists * per_list; ++i) {
      if (tags[i] >= 0) found.emplace_back(keys[i], tags[i]);
    }
    const size_t n = std::min(k, found.size());
    std::partial_sort(found.begin(), found.begin() + n, found.end(), better);
    for (size_t i = 0; i < k; ++i) {
      out_keys[q * k + i] = i < n ? found[i].first : 0.0f;
      out_tags[q * k + i] = i < n ? found[i].second : -1;
    }
  }
}

}  // namespace qrank::cuda
