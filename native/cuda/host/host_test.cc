// Host-side checks of the CUDA engine (no GPU, no CUDA headers): the batch planner, the weight
// conversion reference against ggml's own dequantisation, the model layout checks, the workspace
// and input layouts, and the output form the pipeline receives. Each check is against an
// independent statement of what must hold (hand-written expectations, ggml, or an invariant
// recomputed from the original sequences), never against the code's own output.
//
// Prints one line per failed check ("FAIL: ...") and "PASS: N checks" or "FAIL: N of M checks
// failed" last; exits non-zero on failure. Random cases use a fresh seed each run (printed); pass
// one as the first argument to repeat it.
//
//   build-core/qrank_cuda_host_test [seed]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "cuda/host/batch_plan.h"
#include "cuda/host/vector_batch.h"
#include "cuda/host/model_layout.h"
#include "cuda/host/weight_format.h"
#include "cuda/host/workspace_layout.h"
#include "ggml.h"
#include "qrank/error.h"

using namespace qrank;
using namespace qrank::cuda;

namespace {

int g_checks = 0;
int g_failures = 0;
std::mt19937_64 g_rng;

void check(bool ok, const std::string& what) {
  ++g_checks;
  if (!ok) {
    ++g_failures;
    std::printf("FAIL: %s\n", what.c_str());
  }
}

// Runs fn and checks it throws qrank::Error with `code` whose message contains `needle`.
void check_throws(const std::function<void()>& fn, ErrorCode code, const std::string& needle, const std::string& what) {
  try {
    fn();
  } catch (const Error& e) {
    const bool ok = e.code() == code && std::string(e.what()).find(needle) != std::string::npos;
    check(ok, what + ": got " + error_code_name(e.code()) + " \"" + e.what() + "\"");
    return;
  }
  check(false, what + ": nothing was thrown");
}

int uniform(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(g_rng); }

// --- the batch planner -------------------------------------------------------------------------

// A batch whose sequences own their tokens.
struct Batch {
  std::vector<std::vector<Token>> tokens;
  std::vector<EngineSequence> seqs;

  void add(std::vector<Token> t, int32_t group = -1, int32_t prefix = 0) {
    tokens.push_back(std::move(t));
    seqs.push_back(EngineSequence{nullptr, 0, group, prefix});
    for (size_t i = 0; i < seqs.size(); ++i) {  // the vector may have moved
      seqs[i].tokens = tokens[i].data();
      seqs[i].n_tokens = static_cast<int32_t>(tokens[i].size());
    }
  }
};

std::vector<Token> iota_tokens(int n, Token first) {
  std::vector<Token> t(n);
  for (int i = 0; i < n; ++i) t[i] = first + i;
  return t;
}

std::vector<Token> with_prefix(const std::vector<Token>& prefix, int own, Token first) {
  std::vector<Token> t = prefix;
  for (int i = 0; i < own; ++i) t.push_back(first + i);
  return t;
}

PlanLimits limits(int64_t rows, int64_t seqs, int32_t tile = 8) { return PlanLimits{rows, seqs, tile, 1 << 20}; }

// The invariants every plan must satisfy, recomputed from the original sequences: what attention
// sees for each output is exactly its sequence (keys = prefix rows + own rows, tokens and positions
// 0..n-1), every output appears once, every row belongs to one segment, every query to one tile,
// tiles go longest first, and batches respect the limits (an oversized unit alone excepted).
void check_plan_invariants(const Batch& in, const std::vector<DeviceBatch>& plan, const PlanLimits& lim, const std::string& name) {
  std::vector<int> seen(in.seqs.size(), 0);
  for (size_t bi = 0; bi < plan.size(); ++bi) {
    const DeviceBatch& b = plan[bi];
    const std::string where = name + " batch " + std::to_string(bi);
    check(b.positions.size() == b.tokens.size() && b.last_rows.size() == b.outputs.size(), where + ": array sizes");
    check(b.n_outputs() <= lim.max_sequences, where + ": at most max_sequences outputs");
    // rows: covered by the segments exactly once, in order
    int64_t next_row = 0;
    bool in_order = true;
    for (const AttnSeq& s : b.segments) {
      in_order = in_order && s.q_start == next_row && s.q_len >= 1 && s.kv_start == s.q_start;
      next_row = s.q_start + s.q_len;
    }
    check(in_order && next_row == b.rows(), where + ": segments cover every row once, in order");
    // each output: keys are its sequence, in order, at positions 0..n-1
    for (size_t k = 0; k < b.outputs.size(); ++k) {
      const int32_t out = b.outputs[k];
      check(out >= 0 && static_cast<size_t>(out) < in.seqs.size(), where + ": output index in range");
      if (out < 0 || static_cast<size_t>(out) >= in.seqs.size()) continue;
      ++seen[out];
      const auto seg = std::find_if(b.segments.begin(), b.segments.end(),
                                    [&](const AttnSeq& s) { return s.q_start + s.q_len - 1 == b.last_rows[k]; });
      check(seg != b.segments.end(), where + ": the last row of output " + std::to_string(out) + " ends a segment");
      if (seg == b.segments.end()) continue;
      std::vector<Token> keys;
      std::vector<int32_t> key_positions;
      for (int32_t j = 0; j < seg->prefix_len; ++j) {
        keys.push_back(b.tokens[seg->prefix_start + j]);
        key_positions.push_back(b.positions[seg->prefix_start + j]);
      }
      for (int32_t j = 0; j < seg->q_len; ++j) {
        keys.push_back(b.tokens[seg->kv_start + j]);
        key_positions.push_back(b.positions[seg->kv_start + j]);
      }
      check(keys == in.tokens[out], where + ": output " + std::to_string(out) + " sees exactly its tokens");
      std::vector<int32_t> expected_positions(in.tokens[out].size());
      for (size_t p = 0; p < expected_positions.size(); ++p) expected_positions[p] = static_cast<int32_t>(p);
      check(key_positions == expected_positions, where + ": output " + std::to_string(out) + " sees positions 0..n-1");
      if (seg->prefix_len > 0) {  // a prefix is a segment of its own that ends where the prefix ends
        const bool own = std::any_of(b.segments.begin(), b.segments.end(), [&](const AttnSeq& s) {
          return s.q_start == seg->prefix_start && s.q_len == seg->prefix_len && s.prefix_len == 0;
        });
        check(own, where + ": the prefix of output " + std::to_string(out) + " is computed as rows of its own");
      }
    }
    // the limits: over max_rows only as one unit (one sequence, or a prefix with one member)
    if (b.rows() > lim.max_rows) check(b.n_outputs() == 1, where + ": only a lone oversized unit exceeds max_rows");
    // tiles: every query of every segment once, longest work first
    std::set<std::pair<int32_t, int32_t>> covered;
    int64_t previous_work = INT64_MAX;
    bool sorted = true, on_boundaries = true, once = true;
    for (const AttnTile& t : b.tiles) {
      const AttnSeq& s = b.segments.at(t.seq);
      on_boundaries = on_boundaries && t.q_offset >= 0 && t.q_offset < s.q_len && t.q_offset % lim.tile_queries == 0;
      for (int32_t q = t.q_offset; q < std::min(t.q_offset + lim.tile_queries, s.q_len); ++q) once = covered.insert({t.seq, q}).second && once;
      const int64_t work = s.prefix_len + std::min(t.q_offset + lim.tile_queries, s.q_len);
      sorted = sorted && work <= previous_work;
      previous_work = work;
    }
    int64_t queries = 0;
    for (const AttnSeq& s : b.segments) queries += s.q_len;
    check(on_boundaries && once && static_cast<int64_t>(covered.size()) == queries, where + ": tiles cover every query once, on tile boundaries");
    check(sorted, where + ": tiles ordered by decreasing work");
  }
  for (size_t i = 0; i < seen.size(); ++i) check(seen[i] == 1, name + ": sequence " + std::to_string(i) + " is output exactly once");
}

uint64_t total_rows(const std::vector<DeviceBatch>& plan) {
  uint64_t n = 0;
  for (const DeviceBatch& b : plan) n += static_cast<uint64_t>(b.rows());
  return n;
}

uint64_t total_reused(const std::vector<DeviceBatch>& plan) {
  uint64_t n = 0;
  for (const DeviceBatch& b : plan) n += b.tokens_reused;
  return n;
}

void test_plan_standalone() {
  Batch in;
  in.add(iota_tokens(5, 100));
  in.add(iota_tokens(1, 200));
  in.add(iota_tokens(7, 300));
  const PlanLimits lim = limits(1000, 10);
  const auto plan = plan_batches(in.seqs, lim);
  check(plan.size() == 1, "standalone: one batch");
  if (plan.size() != 1) return;
  const DeviceBatch& b = plan[0];
  check(b.rows() == 13, "standalone: 13 rows, no padding");
  check((b.last_rows == std::vector<int32_t>{4, 5, 12}), "standalone: last rows 4, 5, 12");
  check((b.outputs == std::vector<int32_t>{0, 1, 2}), "standalone: outputs in input order");
  check(b.positions[5] == 0 && b.positions[6] == 0 && b.positions[12] == 6, "standalone: positions restart per sequence");
  check(b.tokens_reused == 0, "standalone: nothing reused");
  check(b.tiles.size() == 3 && b.tiles[0].seq == 2 && b.tiles[1].seq == 0 && b.tiles[2].seq == 1, "standalone: tiles longest first");
  check_plan_invariants(in, plan, lim, "standalone");
}

void test_plan_prefix_group() {
  Batch in;
  const std::vector<Token> prefix = iota_tokens(4, 10);
  in.add(with_prefix(prefix, 2, 500), 0, 4);
  in.add(iota_tokens(3, 900));  // a standalone between members
  in.add(with_prefix(prefix, 5, 600), 0, 4);
  in.add(with_prefix(prefix, 1, 700), 0, 4);
  const PlanLimits lim = limits(1000, 10);
  const auto plan = plan_batches(in.seqs, lim);
  check(plan.size() == 1, "prefix group: one batch");
  if (plan.size() != 1) return;
  const DeviceBatch& b = plan[0];
  // rows: prefix 0-3, member 0 rows 4-5, members 2 and 3 (6-10, 11), then the standalone 12-14
  check(b.rows() == 4 + 2 + 5 + 1 + 3, "prefix group: the prefix is evaluated once (15 rows, not 23)");
  check(b.tokens_reused == 8, "prefix group: 2 members x 4 prefix tokens reused");
  check(b.segments.size() == 5 && b.segments[0].prefix_len == 0 && b.segments[0].q_len == 4, "prefix group: the prefix is a segment of its own");
  check(b.segments[1].prefix_start == 0 && b.segments[1].prefix_len == 4 && b.segments[1].q_start == 4, "prefix group: members see the prefix rows");
  check(b.positions[4] == 4 && b.positions[6] == 4 && b.positions[11] == 4, "prefix group: member positions start at the prefix length");
  check((b.last_rows == std::vector<int32_t>{5, 10, 11, 14}) && (b.outputs == std::vector<int32_t>{0, 2, 3, 1}),
        "prefix group: last rows and output indices");
  check_plan_invariants(in, plan, lim, "prefix group");
}

void test_plan_not_shared() {
  Batch in;
  const std::vector<Token> prefix = iota_tokens(6, 10);
  in.add(with_prefix(prefix, 3, 100), 1, 6);
  in.add(with_prefix(iota_tokens(6, 50), 3, 100), 1, 6);  // claims the group, different tokens
  in.add(with_prefix(prefix, 3, 200), 1, 5);              // a different prefix length
  in.add(prefix, 1, 6);                                   // prefix_len == n_tokens: nothing of its own
  in.add(with_prefix(prefix, 2, 300), 2, 6);              // a group of one
  in.add(with_prefix(prefix, 2, 400), -1, 6);             // no group
  in.add(with_prefix(prefix, 2, 500), 3, 0);              // a group without prefix
  const PlanLimits lim = limits(1000, 10);
  const auto plan = plan_batches(in.seqs, lim);
  check(plan.size() == 1 && total_reused(plan) == 0, "no sharing without a real common prefix");
  int64_t want = 0;
  for (const auto& t : in.tokens) want += static_cast<int64_t>(t.size());
  check(static_cast<int64_t>(total_rows(plan)) == want, "no sharing: every token evaluated");
  check_plan_invariants(in, plan, lim, "not shared");
}

void test_plan_split_standalone() {
  Batch in;
  for (int i = 0; i < 10; ++i) in.add(iota_tokens(100, 1000 * i));
  const PlanLimits lim = limits(250, 64);
  const auto plan = plan_batches(in.seqs, lim);
  check(plan.size() == 5, "split: 10 x 100 tokens in batches of 250 rows -> 5 batches");
  for (const DeviceBatch& b : plan) check(b.rows() == 200, "split: 200 rows per batch");
  check_plan_invariants(in, plan, lim, "split");
}

void test_plan_group_split() {
  Batch in;
  const std::vector<Token> prefix = iota_tokens(50, 1);
  for (int i = 0; i < 5; ++i) in.add(with_prefix(prefix, 50, 1000 * (i + 1)), 7, 50);
  const PlanLimits lim = limits(160, 64);
  const auto plan = plan_batches(in.seqs, lim);
  // the whole group is 50 + 5 x 50 = 300 rows: parts of prefix + 2 members (150 rows), then + 1
  check(plan.size() == 3, "group split: 3 device batches");
  if (plan.size() == 3) {
    check(plan[0].rows() == 150 && plan[1].rows() == 150 && plan[2].rows() == 100, "group split: 150, 150, 100 rows");
    check(plan[0].tokens_reused == 50 && plan[1].tokens_reused == 50 && plan[2].tokens_reused == 0, "group split: reuse within each part");
    for (const DeviceBatch& b : plan) check(b.segments.front().prefix_len == 0 && b.segments.front().q_len == 50, "group split: each part carries its prefix");
  }
  check_plan_invariants(in, plan, lim, "group split");
}

void test_plan_group_moves_whole() {
  Batch in;
  in.add(iota_tokens(100, 5000));
  const std::vector<Token> prefix = iota_tokens(40, 1);
  for (int i = 0; i < 4; ++i) in.add(with_prefix(prefix, 20, 100 * (i + 1)), 0, 40);
  const PlanLimits lim = limits(200, 64);
  const auto plan = plan_batches(in.seqs, lim);
  // the group (40 + 4 x 20 = 120 rows) does not fit beside 100 rows but fits a batch: it moves whole
  check(plan.size() == 2 && plan[0].rows() == 100 && plan[1].rows() == 120 && plan[1].tokens_reused == 120,
        "a group that fits a fresh batch is not cut");
  check_plan_invariants(in, plan, lim, "group moves whole");
}

void test_plan_degenerate() {
  check(plan_batches({}, limits(10, 10)).empty(), "empty batch: no device batch");
  {
    Batch in;
    in.add({42});
    const auto plan = plan_batches(in.seqs, limits(10, 10));
    check(plan.size() == 1 && plan[0].rows() == 1 && plan[0].last_rows[0] == 0 && plan[0].tiles.size() == 1, "one token: one row, one tile");
  }
  {
    Batch in;
    for (int i = 0; i < 10; ++i) in.add(iota_tokens(3, 10 * i));
    const PlanLimits lim = limits(1000, 3);
    const auto plan = plan_batches(in.seqs, lim);
    check(plan.size() == 4 && plan[3].n_outputs() == 1, "max_sequences 3: 10 sequences in 4 batches");
    check_plan_invariants(in, plan, lim, "max_sequences");
  }
  {
    Batch in;
    const std::vector<Token> prefix = iota_tokens(8, 1);
    for (int i = 0; i < 5; ++i) in.add(with_prefix(prefix, 2, 100 * (i + 1)), 0, 8);
    const PlanLimits lim = limits(1000, 2);
    const auto plan = plan_batches(in.seqs, lim);
    check(plan.size() == 3 && total_reused(plan) == 8 + 8, "max_sequences 2: a group of 5 in 3 parts");
    check_plan_invariants(in, plan, lim, "group over max_sequences");
  }
  {
    Batch in;
    in.add(iota_tokens(10, 0));
    in.add(iota_tokens(500, 0));
    in.add(iota_tokens(10, 0));
    const PlanLimits lim = limits(100, 10);
    const auto plan = plan_batches(in.seqs, lim);
    check(plan.size() == 3 && plan[1].rows() == 500, "a sequence longer than max_rows gets a batch of its own");
    check_plan_invariants(in, plan, lim, "oversized");
  }
  {
    Batch in;
    in.add({1, 2});
    in.add({});
    check_throws([&] { plan_batches(in.seqs, limits(10, 10)); }, ErrorCode::kInvalidInput, "sequence 1", "an empty sequence is refused");
  }
  {
    Batch in;
    in.add({1, 2, 1 << 20});
    check_throws([&] { plan_batches(in.seqs, limits(10, 10)); }, ErrorCode::kInvalidInput, "outside the vocabulary", "a token id past the vocabulary");
    Batch neg;
    neg.add({-1});
    check_throws([&] { plan_batches(neg.seqs, limits(10, 10)); }, ErrorCode::kInvalidInput, "outside the vocabulary", "a negative token id");
  }
  check_throws([] { plan_batches({}, limits(0, 10)); }, ErrorCode::kInvalidInput, "at least one", "max_rows 0 is refused");
}

// Fresh random batches: groups interleaved with standalones, random claims, limits and tiles.
void test_plan_random() {
  for (int round = 0; round < 300; ++round) {
    Batch in;
    const int n = uniform(1, 40);
    std::vector<std::vector<Token>> prefixes;
    for (int g = 0; g < 4; ++g) prefixes.push_back(iota_tokens(uniform(1, 30), 10000 * (g + 1)));
    for (int i = 0; i < n; ++i) {
      const int kind = uniform(0, 4);
      if (kind == 0) {
        in.add(iota_tokens(uniform(1, 60), uniform(0, 1000)));
      } else {
        const int g = uniform(0, 3);
        const int p = static_cast<int>(prefixes[g].size());
        const int claimed = uniform(0, 9) == 0 ? uniform(0, p + 2) : p;  // sometimes a wrong claim
        in.add(with_prefix(prefixes[g], uniform(0, 40), uniform(0, 1000)), g, claimed);
      }
    }
    const int32_t tile = uniform(0, 1) ? kAttnQueries : kAttnMmaQueries;
    const PlanLimits lim = limits(uniform(1, 300), uniform(1, 20), tile);
    const auto plan = plan_batches(in.seqs, lim);
    check_plan_invariants(in, plan, lim, "random round " + std::to_string(round));
    bool bounded = true;
    for (const DeviceBatch& b : plan) bounded = bounded && input_layout(b).bytes <= input_bytes_bound(b.rows(), b.n_outputs());
    check(bounded, "random round " + std::to_string(round) + ": input bytes within input_bytes_bound");
  }
}

// --- weight conversion against ggml --------------------------------------------------------------

float from_bits(uint32_t u) {
  float x;
  std::memcpy(&x, &u, 4);
  return x;
}

bool same_bf16(uint16_t a, uint16_t b) {
  const bool nan_a = (a & 0x7fffu) > 0x7f80u, nan_b = (b & 0x7fffu) > 0x7f80u;
  return nan_a || nan_b ? nan_a && nan_b : a == b;
}

// ggml's dequantisation to fp32, then ggml's reference fp32 -> bf16 rounding.
std::vector<uint16_t> ggml_bf16(ggml_type type, const void* src, int64_t n) {
  std::vector<float> f(n);
  if (type == GGML_TYPE_F32) {
    std::memcpy(f.data(), src, n * sizeof(float));
  } else {
    ggml_get_type_traits(type)->to_float(src, f.data(), n);
  }
  std::vector<ggml_bf16_t> b(n);
  ggml_fp32_to_bf16_row_ref(f.data(), b.data(), n);
  std::vector<uint16_t> out(n);
  for (int64_t i = 0; i < n; ++i) out[i] = b[i].bits;
  return out;
}

void compare_with_ggml(WeightType type, const void* src, int64_t n, const std::string& name) {
  std::vector<uint16_t> ours(n);
  convert_to_bf16_host(type, src, ours.data(), n);
  const std::vector<uint16_t> ref = ggml_bf16(static_cast<ggml_type>(type), src, n);
  int64_t bad = 0, first = -1;
  for (int64_t i = 0; i < n; ++i) {
    if (!same_bf16(ours[i], ref[i])) {
      if (first < 0) first = i;
      ++bad;
    }
  }
  char msg[200];
  std::snprintf(msg, sizeof msg, "%s: %lld of %lld values differ from ggml (first at %lld: 0x%04x vs 0x%04x)", name.c_str(), (long long)bad,
                (long long)n, (long long)first, first >= 0 ? ours[first] : 0, first >= 0 ? ref[first] : 0);
  check(bad == 0, msg);
}

void test_type_ids() {
  check(static_cast<int>(WeightType::F32) == GGML_TYPE_F32 && static_cast<int>(WeightType::F16) == GGML_TYPE_F16 &&
            static_cast<int>(WeightType::Q8_0) == GGML_TYPE_Q8_0 && static_cast<int>(WeightType::BF16) == GGML_TYPE_BF16,
        "WeightType values are ggml_type values");
  for (WeightType t : {WeightType::F32, WeightType::F16, WeightType::Q8_0, WeightType::BF16}) {
    check(stored_bytes(t, 4096) == ggml_row_size(static_cast<ggml_type>(t), 4096), "stored_bytes matches ggml_row_size for " + weight_type_name(int(t)));
  }
  check(stored_bytes(WeightType::Q8_0, 33) == 0, "Q8_0 of 33 values is impossible");
  check(!is_weight_type(GGML_TYPE_Q4_K) && is_weight_type(GGML_TYPE_BF16), "q4_K is not read, bf16 is");
}

// Hand-computed roundings (round to nearest, ties to even), independent of any library.
void test_bf16_rounding() {
  struct Case {
    uint32_t in;
    uint16_t out;
    const char* what;
  };
  const Case cases[] = {
      {0x3f800000u, 0x3f80, "1.0 exact"},
      {0x3f808000u, 0x3f80, "tie, even kept"},
      {0x3f818000u, 0x3f82, "tie, odd rounds up"},
      {0x3f808001u, 0x3f81, "just over half rounds up"},
      {0x3f807fffu, 0x3f80, "just under half rounds down"},
      {0xbf818000u, 0xbf82, "negative tie, odd rounds away"},
      {0x7f7fffffu, 0x7f80, "largest float overflows to infinity"},
      {0x7f800000u, 0x7f80, "+infinity"},
      {0xff800000u, 0xff80, "-infinity"},
      {0x80000000u, 0x8000, "-0"},
      {0x00000001u, 0x0000, "smallest denormal rounds to 0"},
      {0x00008000u, 0x0000, "denormal tie to even 0"},
      {0x00018000u, 0x0002, "denormal tie, odd rounds up"},
      {0x00008001u, 0x0001, "denormal over half"},
      {0x807fffffu, 0x8080, "largest denormal rounds up to the smallest normal"},
  };
  for (const Case& c : cases) check(bf16_bits(from_bits(c.in)) == c.out, std::string("bf16 rounding: ") + c.what);
  const uint32_t nans[] = {0x7fc00000u, 0x7f800001u, 0xff800001u, 0x7fffffffu};
  for (uint32_t u : nans) {
    const uint16_t b = bf16_bits(from_bits(u));
    check((b & 0x7fffu) > 0x7f80u && (b & 0x8000u) == ((u >> 16) & 0x8000u), "NaN stays NaN with its sign");
  }
  check(bf16_value(0x3f80) == 1.0f && bf16_value(0xc000) == -2.0f, "bf16 bits to float");
}

void test_f16_decode() {
  int bad = 0;
  for (uint32_t h = 0; h < 65536; ++h) {
    const float ours = half_value(static_cast<uint16_t>(h));
    const float ref = ggml_fp16_to_fp32(static_cast<ggml_fp16_t>(h));
    if (std::isnan(ref) ? !std::isnan(ours) : std::memcmp(&ours, &ref, 4) != 0) ++bad;
  }
  check(bad == 0, "every fp16 bit pattern decodes as ggml_fp16_to_fp32 does (" + std::to_string(bad) + " differ)");
}

void test_convert_f32() {
  std::vector<float> f(20000);
  std::normal_distribution<float> normal(0.f, 1.f);
  for (auto& x : f) x = normal(g_rng) * std::pow(10.f, static_cast<float>(uniform(-40, 38)) / 2.f);
  for (size_t i = 0; i < 2000; ++i) f[i] = from_bits(static_cast<uint32_t>(g_rng()));  // any bit pattern: NaN, Inf, denormals
  const uint32_t specials[] = {0x3f808000u, 0x3f818000u, 0x00008000u, 0x00018000u, 0x807fffffu, 0x7f7fffffu, 0x7f800000u, 0x7fc00001u, 0x80000000u};
  for (size_t i = 0; i < sizeof specials / sizeof specials[0]; ++i) f[2000 + i] = from_bits(specials[i]);
  compare_with_ggml(WeightType::F32, f.data(), static_cast<int64_t>(f.size()), "F32 -> bf16");
}

void test_convert_f16() {
  std::vector<uint16_t> h(65536);
  for (uint32_t i = 0; i < 65536; ++i) h[i] = static_cast<uint16_t>(i);  // every value: denormals, Inf, NaN
  compare_with_ggml(WeightType::F16, h.data(), 65536, "F16 -> bf16 (all 65536 values)");
}

void test_convert_bf16() {
  std::vector<uint16_t> b(65536);
  for (uint32_t i = 0; i < 65536; ++i) b[i] = static_cast<uint16_t>(i);
  compare_with_ggml(WeightType::BF16, b.data(), 65536, "BF16 -> bf16 (all 65536 values)");
  std::vector<uint16_t> out(65536);
  convert_to_bf16_host(WeightType::BF16, b.data(), out.data(), 65536);
  check(out == b, "BF16 is copied bit for bit");
}

void test_convert_q8_0() {
  const int64_t rows = 64, cols = 256;
  std::vector<float> f(rows * cols);
  std::normal_distribution<float> normal(0.f, 1.f);
  for (int64_t r = 0; r < rows; ++r) {
    const float scale = std::pow(10.f, static_cast<float>(uniform(-9, 2)));  // tiny rows give fp16-denormal scales
    for (int64_t c = 0; c < cols; ++c) f[r * cols + c] = normal(g_rng) * scale;
  }
  std::vector<uint8_t> q(ggml_row_size(GGML_TYPE_Q8_0, cols) * rows);
  ggml_quantize_chunk(GGML_TYPE_Q8_0, f.data(), q.data(), 0, rows, cols, nullptr);
  compare_with_ggml(WeightType::Q8_0, q.data(), rows * cols, "Q8_0 (ggml_quantize_chunk) -> bf16");
  // a hand-made block: d = 0.5 (fp16 0x3800), q = -128..127 stepping; value = q / 2 exactly
  std::vector<uint8_t> block(kQ8BlockBytes);
  block[0] = 0x00;
  block[1] = 0x38;
  for (int j = 0; j < kQ8Block; ++j) block[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(-128 + 8 * j + 3));
  std::vector<uint16_t> out(kQ8Block);
  convert_to_bf16_host(WeightType::Q8_0, block.data(), out.data(), kQ8Block);
  bool ok = true;
  for (int j = 0; j < kQ8Block; ++j) ok = ok && bf16_value(out[j]) == static_cast<float>(-128 + 8 * j + 3) * 0.5f;
  check(ok, "Q8_0 hand-made block: d * q");
}

// --- model layout ----------------------------------------------------------------------------------

ModelInfo small_qwen3() {
  ModelInfo info;
  info.path = "small.gguf";
  info.architecture = "qwen3";
  info.pooling = "rank";
  info.weight_type = "f16";
  info.embedding_length = 128;
  info.layers = 2;
  info.heads = 4;
  info.kv_heads = 2;
  info.head_dim = 128;
  info.ffn_length = 192;
  info.vocab_size = 1000;
  info.rope_theta = 1e6;
  info.rms_eps = 1e-6;
  return info;
}

TensorInfo tensor(const std::string& name, int type, int64_t ne0, int64_t ne1 = 1) {
  TensorInfo t;
  t.name = name;
  t.type = type;
  t.ne[0] = ne0;
  t.ne[1] = ne1;
  t.bytes = ggml_row_size(static_cast<ggml_type>(type), ne0) * static_cast<uint64_t>(ne1);
  return t;
}

// The tensor directory of a Qwen3 GGUF as llama.cpp's converter writes it: ne = [in, out].
std::vector<TensorInfo> qwen3_tensors(const ModelInfo& m, int type, int64_t vocab_rows) {
  const int64_t h = m.embedding_length, q = m.heads * m.head_dim, kv = m.kv_heads * m.head_dim, f = m.ffn_length;
  std::vector<TensorInfo> t{tensor("token_embd.weight", type, h, vocab_rows)};
  for (int64_t l = 0; l < m.layers; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    t.push_back(tensor(b + "attn_norm.weight", GGML_TYPE_F32, h));
    t.push_back(tensor(b + "attn_q.weight", type, h, q));
    t.push_back(tensor(b + "attn_k.weight", type, h, kv));
    t.push_back(tensor(b + "attn_v.weight", type, h, kv));
    t.push_back(tensor(b + "attn_output.weight", type, q, h));
    t.push_back(tensor(b + "attn_q_norm.weight", GGML_TYPE_F32, m.head_dim));
    t.push_back(tensor(b + "attn_k_norm.weight", GGML_TYPE_F32, m.head_dim));
    t.push_back(tensor(b + "ffn_norm.weight", GGML_TYPE_F32, h));
    t.push_back(tensor(b + "ffn_gate.weight", type, h, f));
    t.push_back(tensor(b + "ffn_up.weight", type, h, f));
    t.push_back(tensor(b + "ffn_down.weight", type, f, h));
  }
  t.push_back(tensor("output_norm.weight", GGML_TYPE_F32, h));
  return t;
}

TensorInfo* find(std::vector<TensorInfo>& t, const std::string& name) {
  for (auto& x : t) {
    if (x.name == name) return &x;
  }
  return nullptr;
}

void test_model_support() {
  const ModelInfo ok = small_qwen3();
  check(model_unsupported_reason(ok, Role::kReranker).empty() && model_unsupported_reason(ok, Role::kEmbedder).empty(),
        "a Qwen3 model with heads of 128 is served in both roles");
  ModelInfo m = ok;
  m.architecture = "bert";
  check(model_unsupported_reason(m, Role::kReranker).find("not bert") != std::string::npos, "bert is refused, by name");
  m = ok;
  m.head_dim = 16;
  check(model_unsupported_reason(m, Role::kReranker).find("16 values") != std::string::npos, "head_dim 16 is refused (the tiny test models)");
  m = ok;
  m.kv_heads = 3;
  check(!model_unsupported_reason(m, Role::kReranker).empty(), "4 query heads over 3 kv heads is refused");
  m = ok;
  m.weight_type = "q4_K";
  check(model_unsupported_reason(m, Role::kEmbedder).find("q4_K") != std::string::npos, "q4_K weights are refused, by name");
  m = ok;
  m.causal = false;
  check(!model_unsupported_reason(m, Role::kEmbedder).empty(), "non-causal attention is refused");
  m = ok;
  m.embedding_length = 100;
  check_throws([&] { qwen3_shape(m, Role::kReranker); }, ErrorCode::kUnsupported, "hidden size 100", "hidden 100 is unsupported");
  const std::vector<float> inv = rope_inv_freq(1e6, 128);
  check(inv.size() == 64 && inv[0] == 1.0f && inv[32] == 0.001f && std::fabs(inv[1] - 0.8058421877614819f) < 1e-7f && inv[63] < inv[62],
        "RoPE inverse frequencies 1e6^(-2i/128): 1, 0.8058..., 0.001 at i = 32, decreasing");
  const Qwen3Shape s = qwen3_shape(ok, Role::kReranker);
  check(s.q_width() == 512 && s.kv_width() == 256 && s.qkv_width() == 1024 && s.vocab == 1000, "shape widths from the facts");
}

void test_weight_plan() {
  const ModelInfo info = small_qwen3();
  const Qwen3Shape s = qwen3_shape(info, Role::kReranker);
  for (int type : {GGML_TYPE_F32, GGML_TYPE_F16, GGML_TYPE_BF16, GGML_TYPE_Q8_0}) {
    const auto tensors = qwen3_tensors(info, type, 1024);
    const WeightPlan plan = plan_weights(s, tensors);
    const std::string ty = weight_type_name(type);
    check(plan.layers.size() == 2 && plan.embeddings.rows == 1024 && plan.embeddings.cols == 128, ty + ": embeddings [1024 rows, 128]");
    const LayerPlan& l = plan.layers[1];
    check(l.qkv.rows == 1024 && l.qkv.cols == 128 && l.qkv.parts.size() == 3, ty + ": qkv [(4 + 2 x 2) x 128, 128] in 3 parts");
    check(l.qkv.parts[0].tensor.name == "blk.1.attn_q.weight" && l.qkv.parts[0].first_row == 0 && l.qkv.parts[1].tensor.name == "blk.1.attn_k.weight" &&
              l.qkv.parts[1].first_row == 512 && l.qkv.parts[2].tensor.name == "blk.1.attn_v.weight" && l.qkv.parts[2].first_row == 768,
          ty + ": q rows, then k at 512, then v at 768");
    check(l.gate_up.rows == 384 && l.gate_up.parts[0].tensor.name == "blk.1.ffn_gate.weight" && l.gate_up.parts[1].first_row == 192,
          ty + ": gate rows, then up at F");
    check(l.o.rows == 128 && l.o.cols == 512 && l.down.rows == 128 && l.down.cols == 192, ty + ": o [H, Hq D], down [H, F]");
    check(l.q_norm.name == "blk.1.attn_q_norm.weight" && l.ffn_norm.ne[0] == 128, ty + ": norm vectors");
    const uint64_t matrices = 1024 * 128 + 2 * (1024 * 128 + 128 * 512 + 384 * 128 + 128 * 192);
    const uint64_t vectors = 128 + 2 * (128 + 128 + 128 + 128);
    check(plan.device_bytes() == matrices * 2 + vectors * 4, ty + ": device bytes = bf16 matrices + fp32 vectors");
    uint64_t source = 0;
    for (const auto& t : tensors) source += t.bytes;
    check(plan.source_bytes() == source, ty + ": every tensor read once");
  }
  auto tensors = qwen3_tensors(info, GGML_TYPE_F16, 1024);
  auto without = tensors;
  without.erase(std::remove_if(without.begin(), without.end(), [](const TensorInfo& t) { return t.name == "blk.1.ffn_up.weight"; }), without.end());
  check_throws([&] { plan_weights(s, without); }, ErrorCode::kBadModel, "blk.1.ffn_up.weight is missing", "a missing tensor is kBadModel");
  auto wrong = tensors;
  find(wrong, "blk.0.attn_k.weight")->ne[1] = 512;
  check_throws([&] { plan_weights(s, wrong); }, ErrorCode::kBadModel, "[128, 512]", "a k projection of the wrong size is kBadModel");
  auto transposed = tensors;
  std::swap(find(transposed, "blk.0.ffn_down.weight")->ne[0], find(transposed, "blk.0.ffn_down.weight")->ne[1]);
  check_throws([&] { plan_weights(s, transposed); }, ErrorCode::kBadModel, "ffn_down", "a transposed down projection is kBadModel");
  auto quant = tensors;
  *find(quant, "blk.0.ffn_gate.weight") = tensor("blk.0.ffn_gate.weight", GGML_TYPE_Q4_K, 256, 192);
  find(quant, "blk.0.ffn_gate.weight")->ne[0] = 128;
  check_throws([&] { plan_weights(s, quant); }, ErrorCode::kUnsupported, "ggml type 12", "a q4_K tensor is kUnsupported");
  auto short_bytes = tensors;
  find(short_bytes, "blk.1.attn_v.weight")->bytes -= 2;
  check_throws([&] { plan_weights(s, short_bytes); }, ErrorCode::kBadModel, "bytes", "a tensor with too few bytes is kBadModel");
  const auto small_table = qwen3_tensors(info, GGML_TYPE_F16, 999);
  check_throws([&] { plan_weights(s, small_table); }, ErrorCode::kBadModel, "token_embd", "an embedding table smaller than the vocabulary");
  auto three_d = tensors;
  find(three_d, "output_norm.weight")->ne[1] = 2;
  check_throws([&] { plan_weights(s, three_d); }, ErrorCode::kBadModel, "output_norm", "a norm that is not a vector");
}

// --- workspace, inputs, output form ----------------------------------------------------------------

void test_activation_layout() {
  const Qwen3Shape s = qwen3_shape(small_qwen3(), Role::kReranker);
  for (int64_t rows : {1, 7, 300}) {
    const int64_t outs = std::min<int64_t>(rows, 5);
    const ActivationLayout a = activation_layout(s, rows, outs, 1);
    struct Region {
      size_t at, bytes;
    };
    const Region regions[] = {
        {a.residual, size_t(rows) * 128 * 4},           {a.normed, size_t(rows) * 128 * 2},
        {a.wide, size_t(rows) * std::max<int64_t>({1024, 384, 512}) * 2},
        {a.narrow, size_t(rows) * std::max<int64_t>(1024, 192) * 2},
        {a.last_residual, size_t(outs) * 128 * 4},       {a.last_attn, size_t(outs) * 512 * 2},
        {a.out, size_t(outs) * 4},
    };
    bool aligned = true, disjoint = true, inside = true;
    for (size_t i = 0; i < 7; ++i) {
      aligned = aligned && regions[i].at % kAlign == 0;
      inside = inside && regions[i].at + regions[i].bytes <= a.bytes;
      for (size_t j = 0; j < i; ++j) {
        disjoint = disjoint && (regions[i].at >= regions[j].at + regions[j].bytes || regions[j].at >= regions[i].at + regions[i].bytes);
      }
    }
    const std::string r = std::to_string(rows) + " rows";
    check(aligned && disjoint && inside, r + ": regions aligned, disjoint, inside the workspace");
    check(a.wide_cols == 1024 && a.narrow_cols == 1024, r + ": wide and narrow widths");
  }
  check_throws([&] { activation_layout(s, 3, 4, 1); }, ErrorCode::kInvalidInput, "rows", "more outputs than rows");
}

void test_input_layout() {
  Batch in;
  const std::vector<Token> prefix = iota_tokens(9, 1);
  for (int i = 0; i < 3; ++i) in.add(with_prefix(prefix, 4 + i, 100 * i), 0, 9);
  in.add(iota_tokens(5, 77));
  const auto plan = plan_batches(in.seqs, limits(1000, 10, kAttnMmaQueries));
  check(plan.size() == 1, "inputs: one batch");
  if (plan.size() != 1) return;
  const DeviceBatch& b = plan[0];
  const InputLayout layout = input_layout(b);
  std::vector<uint8_t> bytes(layout.bytes, 0xee);
  pack_inputs(b, layout, bytes.data());
  const auto read = [&](size_t at, size_t i) {
    int32_t v;
    std::memcpy(&v, bytes.data() + at + 4 * i, 4);
    return v;
  };
  bool tokens_ok = true;
  for (size_t i = 0; i < b.tokens.size(); ++i) tokens_ok = tokens_ok && read(layout.tokens, i) == b.tokens[i] && read(layout.positions, i) == b.positions[i];
  check(tokens_ok, "inputs: tokens and positions where the layout says");
  AttnSeq seg;
  std::memcpy(&seg, bytes.data() + layout.segments + sizeof(AttnSeq) * 1, sizeof seg);
  check(seg.q_start == 9 && seg.q_len == 4 && seg.prefix_start == 0 && seg.prefix_len == 9 && seg.kv_start == 9, "inputs: the second segment's bytes");
  AttnTile tile;
  std::memcpy(&tile, bytes.data() + layout.tiles, sizeof tile);
  check(tile.seq == 3 && tile.q_offset == 0, "inputs: the first tile is the longest (prefix 9 + 6 own)");
  check(read(layout.last_rows, 3) == 9 + 4 + 5 + 6 + 4, "inputs: the standalone's last row");
  check(layout.tokens % kAlign == 0 && layout.positions % kAlign == 0 && layout.segments % kAlign == 0 && layout.tiles % kAlign == 0 &&
            layout.last_rows % kAlign == 0 && layout.last_rows + 4 * b.last_rows.size() <= layout.bytes,
        "inputs: aligned regions inside the buffer");
}

void test_output_form() {
  OutputSpec head;
  head.kind = OutputSpec::Kind::kHeadRows;
  head.head_tensor = "cls.output.weight";
  head.head_rows = {0, 1};
  const EngineOutput r = cuda_output(head, 1024);
  // the pipeline takes raw[0] as the relevance logit when relevance_logit is set (ScoreJob::finish)
  check(r.width == 1 && r.relevance_logit && !r.normalised, "reranker: one float, the relevance logit yes - no");
  OutputSpec last;
  last.kind = OutputSpec::Kind::kLastHidden;
  const EngineOutput e = cuda_output(last, 1024);
  // the pipeline copies a normalised full-width vector as is, and renormalises a truncation (EmbedJob::finish)
  check(e.width == 1024 && e.normalised && !e.relevance_logit, "embedder: the full-width L2-normalised vector");
  OutputSpec three = head;
  three.head_rows = {0, 1, 2};
  check_throws([&] { cuda_output(three, 1024); }, ErrorCode::kUnsupported, "3 rows", "a 3-row head is unsupported");
  check_throws([&] { cuda_output(OutputSpec{}, 1024); }, ErrorCode::kUnsupported, "pooling", "llama.cpp's pooling is unsupported");
}


// --- GPU vector search, host side (vector_batch.h) ----------------------------------------------------

void test_vector_keys() {
  std::vector<float> v = {-INFINITY, -3e38f, -1.5f, -1e-30f, -0.0f, 0.0f, 1e-30f, 0.25f, 1.0f, 3e38f, INFINITY};
  for (int i = 0; i < 200; ++i) v.push_back(std::uniform_real_distribution<float>(-4, 4)(g_rng));
  bool ordered = true, inverse = true;
  for (float a : v) {
    for (float b : v) {
      if (a < b && !(ranking_key(a) < ranking_key(b))) ordered = false;
    }
    if (ranking_key(a) == 0 || key_value(ranking_key(a)) != a || std::signbit(key_value(ranking_key(a))) != std::signbit(a)) inverse = false;
  }
  check(ordered, "ranking keys: ordered as the floats");
  check(inverse, "ranking keys: key_value inverts ranking_key, never key 0 for a number");
  check(ranking_key(NAN) == 0 && ranking_key(-NAN) == 0, "ranking keys: a NaN is key 0 (excluded), never above +inf");
}

void test_group_by_cell() {
  for (int round = 0; round < 50; ++round) {
    const size_t nq = uniform(0, 40), nprobe = uniform(1, 6), nlist = uniform(1, 20);
    std::vector<int32_t> probes(nq * nprobe);
    for (auto& p : probes) p = uniform(-1, static_cast<int>(nlist));  // -1 and nlist: skipped
    const CellGroups g = group_by_cell(probes.data(), nq, nprobe, nlist);
    bool ok = g.offsets.size() == g.cells.size() + 1 && g.offsets.front() == 0 && g.offsets.back() == g.entries.size();
    size_t expected = 0;
    for (int32_t p : probes) expected += p >= 0 && static_cast<size_t>(p) < nlist;
    ok = ok && g.entries.size() == expected;
    std::vector<int> seen(nq * nprobe, 0);
    for (size_t c = 0; ok && c < g.cells.size(); ++c) {
      ok = (c == 0 || g.cells[c - 1] < g.cells[c]) && g.offsets[c] < g.offsets[c + 1];
      for (size_t j = g.offsets[c]; ok && j < g.offsets[c + 1]; ++j) {
        ok = probes[g.entries[j]] == g.cells[c] && (j == g.offsets[c] || g.entries[j - 1] < g.entries[j]);
        ++seen[g.entries[j]];
      }
    }
    for (size_t e = 0; ok && e < seen.size(); ++e) ok = seen[e] == (probes[e] >= 0 && static_cast<size_t>(probes[e]) < nlist ? 1 : 0);
    check(ok, "group_by_cell round " + std::to_string(round) + ": every valid (query, cell) once, under its cell, in query order");
  }
}

void test_merge_top_k() {
  for (int round = 0; round < 50; ++round) {
    const size_t nq = uniform(1, 5), lists = uniform(1, 5), per = uniform(1, 6), k = uniform(1, 40);
    std::vector<float> keys(nq * lists * per);
    std::vector<int64_t> tags(keys.size());
    for (size_t i = 0; i < keys.size(); ++i) {
      keys[i] = static_cast<float>(uniform(0, 4));  // few values: ties
      tags[i] = uniform(0, 3) == 0 ? -1 : static_cast<int64_t>(i * 7 % 101);
    }
    std::vector<float> out_keys(nq * k);
    std::vector<int64_t> out_tags(nq * k);
    merge_top_k(keys.data(), tags.data(), nq, lists, per, k, out_keys.data(), out_tags.data());
    bool ok = true;
    for (size_t q = 0; q < nq; ++q) {
      std::vector<std::pair<float, int64_t>> all;
      for (size_t i = q * lists * per; i < (q + 1) * lists * per; ++i) {
        if (tags[i] >= 0) all.emplace_back(-keys[i], tags[i]);  // sorted ascending: best first, ties by tag
      }
      std::sort(all.begin(), all.end());
      for (size_t i = 0; i < k; ++i) {
        if (i < all.size()) {
          ok = ok && out_tags[q * k + i] == all[i].second && out_keys[q * k + i] == -all[i].first;
        } else {
          ok = ok && out_tags[q * k + i] == -1;
        }
      }
    }
    check(ok, "merge_top_k round " + std::to_string(round) + ": the k best of every list, ties by tag, -1 past the candidates");
  }
}

// A runner whose first batch waits at a gate until the test has queued the calls it wants batched.
struct GatedRunner {
  std::mutex m;
  std::condition_variable cv;
  bool open = false;
  std::vector<std::vector<float>> batches;  // each batch's calls, by their first query value
  bool fail_next = false;
  void operator()(const std::vector<BatchCall*>& batch) {
    std::unique_lock<std::mutex> lock(m);
    cv.wait(lock, [&] { return open; });
    batches.emplace_back();
    for (const BatchCall* c : batch) batches.back().push_back(c->queries[0]);
    if (fail_next) {
      fail_next = false;
      throw Error(ErrorCode::kEngineFailure, "device failed");
    }
    for (BatchCall* c : batch) {
      c->scores->assign(c->nq * c->k, c->queries[0]);  // each call's answer: its own first query value
      c->ids->assign(c->nq * c->k, static_cast<int64_t>(c->k));
    }
  }
};

void test_batcher() {
  GatedRunner gate;
  SearchBatcher batcher(8, 1000, [&](const std::vector<BatchCall*>& b) { gate(b); });
  struct Caller {
    float query;
    size_t nq, k;
    int32_t nprobe;
    bool filtered;
    std::vector<float> scores;
    std::vector<int64_t> ids;
    std::string error;
  };
  // the first call holds the gate; the others queue behind it, in this order
  std::vector<Caller> calls = {{1, 1, 10, 8, false, {}, {}, {}}, {2, 3, 10, 8, false, {}, {}, {}}, {3, 3, 10, 8, false, {}, {}, {}},
                               {4, 3, 10, 8, false, {}, {}, {}}, {5, 1, 20, 8, false, {}, {}, {}}, {6, 1, 10, 8, true, {}, {}, {}},
                               {7, 1, 10, 4, false, {}, {}, {}}, {8, 2, 10, 8, false, {}, {}, {}}};
  const std::vector<int64_t> filter = {1, 2};
  std::vector<std::thread> threads;
  auto start = [&](size_t i) {
    threads.emplace_back([&, i] {
      Caller& c = calls[i];
      std::vector<float> q(c.nq * 4, c.query);
      BatchCall call;
      call.queries = q.data();
      call.nq = c.nq;
      call.k = c.k;
      call.nprobe = c.nprobe;
      call.allow = c.filtered ? &filter : nullptr;
      call.scores = &c.scores;
      call.ids = &c.ids;
      try {
        batcher.run(call);
      } catch (const Error& e) {
        c.error = e.what();
      }
    });
  };
  start(0);
  while (batcher.batches() != 1) std::this_thread::yield();  // the first call runs (at the gate)
  for (size_t i = 1; i < calls.size(); ++i) {
    start(i);
    while (batcher.waiting() != i) std::this_thread::yield();
  }
  {
    std::lock_guard<std::mutex> lock(gate.m);
    gate.open = true;
  }
  gate.cv.notify_all();
  for (auto& t : threads) t.join();

  // expected batches, oldest call first: [1] [2 3 8] (8 queries; 4 would pass 8) [4] [5] [6 alone] [7]
  const std::vector<std::vector<float>> want = {{1}, {2, 3, 8}, {4}, {5}, {6}, {7}};
  check(gate.batches == want, "batcher: FIFO batches of one key, at most 8 queries, a filtered call alone");
  check(batcher.batches() == 6 && batcher.largest_batch() == 3, "batcher: counts of batches and their largest");
  bool answered = true;
  for (const Caller& c : calls) {
    answered = answered && c.error.empty() && c.scores.size() == c.nq * c.k && c.scores[0] == c.query && c.ids[0] == static_cast<int64_t>(c.k);
  }
  check(answered, "batcher: every call gets its own rows of its batch's answer");

  // a batch that fails answers each of its calls with the error; the batcher goes on
  gate.fail_next = true;
  std::vector<float> q(4, 9), scores;
  std::vector<int64_t> ids;
  BatchCall call;
  call.queries = q.data();
  call.nq = 1;
  call.k = 3;
  call.scores = &scores;
  call.ids = &ids;
  check_throws([&] { batcher.run(call); }, ErrorCode::kEngineFailure, "device failed", "batcher: a failed batch rethrows in its call");
  BatchCall again = call;
  again.error = nullptr;
  again.done = false;
  batcher.run(again);
  check(scores.size() == 3 && scores[0] == 9, "batcher: the next call runs after a failed batch");
}
}  // namespace

int main(int argc, char** argv) {
  const unsigned long long seed =
      argc > 1 ? std::strtoull(argv[1], nullptr, 10) : static_cast<unsigned long long>(std::chrono::steady_clock::now().time_since_epoch().count());
  g_rng.seed(seed);
  std::printf("qrank_cuda_host_test: seed %llu\n", seed);
  test_plan_standalone();
  test_plan_prefix_group();
  test_plan_not_shared();
  test_plan_split_standalone();
  test_plan_group_split();
  test_plan_group_moves_whole();
  test_plan_degenerate();
  test_plan_random();
  test_type_ids();
  test_bf16_rounding();
  test_f16_decode();
  test_convert_f32();
  test_convert_f16();
  test_convert_bf16();
  test_convert_q8_0();
  test_model_support();
  test_weight_plan();
  test_activation_layout();
  test_input_layout();
  test_output_form();
  test_vector_keys();
  test_group_by_cell();
  test_merge_top_k();
  test_batcher();
  if (g_failures > 0) {
    std::printf("FAIL: %d of %d checks failed (seed %llu)\n", g_failures, g_checks, seed);
    return 1;
  }
  std::printf("PASS: %d checks\n", g_checks);
  return 0;
}
