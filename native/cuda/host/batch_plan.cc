#include "cuda/host/batch_plan.h"

#include <algorithm>
#include <limits>
#include <string>
#include <unordered_map>

#include "qrank/error.h"

namespace qrank::cuda {
namespace {

// A standalone sequence (prefix 0, one member) or a prefix group, in the order of its first member.
struct Unit {
  int32_t prefix = 0;
  std::vector<size_t> members;  // indices into the engine batch
};

void check_sequence(const EngineSequence& s, size_t index, int64_t vocab) {
  if (s.n_tokens <= 0 || s.tokens == nullptr) {
    throw Error(ErrorCode::kInvalidInput, "sequence " + std::to_string(index) + " of the batch is empty");
  }
  if (vocab <= 0) return;
  for (int32_t t = 0; t < s.n_tokens; ++t) {
    if (s.tokens[t] < 0 || s.tokens[t] >= vocab) {
      throw Error(ErrorCode::kInvalidInput, "token id " + std::to_string(s.tokens[t]) + " of sequence " + std::to_string(index) +
                                                " is outside the vocabulary (" + std::to_string(vocab) + " tokens)");
    }
  }
}

bool can_share(const EngineSequence& s) { return s.group >= 0 && s.prefix_len >= 1 && s.prefix_len < s.n_tokens; }

// Members join their group's unit only when their prefix really is the group's: same length, same
// tokens as the first member. Anything else is planned alone, so a wrong claim costs speed, not
// correctness.
std::vector<Unit> group_units(const std::vector<EngineSequence>& batch) {
  std::vector<Unit> units;
  std::unordered_map<int32_t, size_t> unit_of_group;
  for (size_t i = 0; i < batch.size(); ++i) {
    const EngineSequence& s = batch[i];
    if (can_share(s)) {
      const auto found = unit_of_group.find(s.group);
      if (found == unit_of_group.end()) {
        unit_of_group.emplace(s.group, units.size());
        units.push_back(Unit{s.prefix_len, {i}});
        continue;
      }
      Unit& u = units[found->second];
      const EngineSequence& first = batch[u.members.front()];
      if (u.prefix == s.prefix_len && std::equal(first.tokens, first.tokens + s.prefix_len, s.tokens)) {
        u.members.push_back(i);
        continue;
      }
    }
    units.push_back(Unit{0, {i}});
  }
  for (Unit& u : units) {
    if (u.members.size() == 1) u.prefix = 0;  // a group of one shares nothing
  }
  return units;
}

class Packer {
 public:
  Packer(const std::vector<EngineSequence>& batch, const PlanLimits& limits) : batch_(batch), limits_(limits) {}

  void add(const Unit& u) {
    if (u.prefix == 0) {
      const size_t i = u.members.front();
      if (!fits(batch_[i].n_tokens, 1)) close();
      add_rows(batch_[i], 0, batch_[i].n_tokens, 0, 0, i);
      return;
    }
    add_group(u);
  }

  std::vector<DeviceBatch> finish() {
    close();
    return std::move(done_);
  }

 private:
  // Whole if it fits a batch (a new one when the current is too full), else cut between members.
  void add_group(const Unit& u) {
    const int32_t p = u.prefix;
    int64_t whole = p;
    for (size_t i : u.members) whole += batch_[i].n_tokens - p;
    const auto members = static_cast<int64_t>(u.members.size());
    if (!fits(whole, members) && whole <= limits_.max_rows && members <= limits_.max_sequences) close();
    size_t k = 0;
    while (k < u.members.size()) {
      if (!fits(batch_[u.members[k]].n_tokens, 1)) close();
      const EngineSequence& first = batch_[u.members[k]];
      const int32_t prefix_row = add_rows(first, 0, p, 0, 0, kNoOutput);
      uint64_t in_part = 0;
      do {
        const EngineSequence& s = batch_[u.members[k]];
        add_rows(s, p, s.n_tokens - p, prefix_row, p, u.members[k]);
        ++in_part;
        ++k;
      } while (k < u.members.size() && fits(batch_[u.members[k]].n_tokens - p, 1));
      current_.tokens_reused += (in_part - 1) * static_cast<uint64_t>(p);
      if (k < u.members.size()) close();
    }
  }

  // An empty batch takes anything (an oversized unit gets a batch of its own).
  bool fits(int64_t rows, int64_t outputs) const {
    return current_.tokens.empty() ||
           (current_.rows() + rows <= limits_.max_rows && current_.n_outputs() + outputs <= limits_.max_sequences);
  }

  void close() {
    if (current_.tokens.empty()) return;
    make_tiles(current_, limits_.tile_queries);
    done_.push_back(std::move(current_));
    current_ = DeviceBatch{};
  }

  static constexpr size_t kNoOutput = std::numeric_limits<size_t>::max();

  // Appends tokens [from, from + count) of `s` as a segment (positions from..), whose keys start with
  // `prefix_len` rows at `prefix_row`; returns its first row. `output`: the engine batch index whose
  // result is this segment's last row, or kNoOutput (a prefix).
  int32_t add_rows(const EngineSequence& s, int32_t from, int32_t count, int32_t prefix_row, int32_t prefix_len, size_t output) {
    const int64_t start = current_.rows();
    if (start + count > std::numeric_limits<int32_t>::max()) {
      throw Error(ErrorCode::kInvalidInput, "a device batch would exceed 2^31 tokens");
    }
    const auto row = static_cast<int32_t>(start);
    current_.tokens.insert(current_.tokens.end(), s.tokens + from, s.tokens + from + count);
    for (int32_t t = 0; t < count; ++t) current_.positions.push_back(from + t);
    current_.segments.push_back(AttnSeq{row, count, prefix_row, prefix_len, row});
    if (output != kNoOutput) {
      current_.last_rows.push_back(row + count - 1);
      current_.outputs.push_back(static_cast<int32_t>(output));
    }
    return row;
  }

  const std::vector<EngineSequence>& batch_;
  const PlanLimits& limits_;
  DeviceBatch current_;
  std::vector<DeviceBatch> done_;
};

}  // namespace

void make_tiles(DeviceBatch& b, int32_t tile_queries) {
  if (tile_queries <= 0) throw Error(ErrorCode::kInvalidInput, "attention tiles need at least one query");
  b.tiles.clear();
  for (size_t s = 0; s < b.segments.size(); ++s) {
    for (int32_t q = 0; q < b.segments[s].q_len; q += tile_queries) b.tiles.push_back(AttnTile{static_cast<int32_t>(s), q});
  }
  const auto work = [&](const AttnTile& t) {
    const AttnSeq& s = b.segments[t.seq];
    return static_cast<int64_t>(s.prefix_len) + std::min<int64_t>(static_cast<int64_t>(t.q_offset) + tile_queries, s.q_len);
  };
  std::stable_sort(b.tiles.begin(), b.tiles.end(), [&](const AttnTile& x, const AttnTile& y) { return work(x) > work(y); });
}

std::vector<DeviceBatch> plan_batches(const std::vector<EngineSequence>& batch, const PlanLimits& limits) {
  if (limits.max_rows <= 0 || limits.max_sequences <= 0) {
    throw Error(ErrorCode::kInvalidInput, "a device batch needs room for at least one token and one sequence");
  }
  if (limits.max_sequences > std::numeric_limits<int32_t>::max() || batch.size() > static_cast<size_t>(std::numeric_limits<int32_t>::max())) {
    throw Error(ErrorCode::kInvalidInput, "too many sequences for one engine batch");
  }
  for (size_t i = 0; i < batch.size(); ++i) check_sequence(batch[i], i, limits.vocab);
  Packer packer(batch, limits);
  for (const Unit& u : group_units(batch)) packer.add(u);
  return packer.finish();
}

}  // namespace qrank::cuda
