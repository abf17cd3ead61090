// qrank_bench: drives qrank's native core directly (no Node) to measure reranking and embedding
// throughput and latency on a GGUF model, with reproducible synthetic inputs, and to score fixed
// inputs for the correctness checks of scripts/gpu-check.sh.
//
//   qrank_bench --model M.gguf [--role reranker|embedder] [--device cpu|cuda|auto] [--batch-tokens N]
//               [--max-sequences N] [--threads 0] [--seed 1] <one mode>
//
// Modes:
//   (default)   --queries 4 --docs 32 --doc-tokens 256 [--repeat 3] [--latency-runs 0] [--dump-prompts F]
//               Each query is one call of --docs documents (one request, as a service sees it); all
//               calls are submitted at once so the scheduler packs them. One JSON object on stdout.
//   shapes      --shape NAME=RxDxT[-MAX] (repeatable) [--repeat 3] [--latency-runs N] [--dump-prompts F]
//               R queries x D documents of T tokens each (or uniformly MIN..MAX), one model load for
//               all shapes. --latency-runs times one request (the first shape's first query with its D
//               documents). One JSON object on stdout: {"shapes": [...], "latency": {...}, ...}, with
//               per shape tokens/s, pairs/s, batches, tokens evaluated and reused, and the FLOPs of
//               the linear layers (the GEMMs) over what was evaluated.
//   inputs      --inputs F.json --out R.json [--submit grouped|single] [--dump-tokens T.json]
//               F: {"pairs": [{"query", "document", "instruction"?}, ...]} (reranker) or
//                  {"texts": [text | {"text", "kind"?: "query"|"document", "instruction"?, "dimensions"?}]}
//                  (embedder); "instruction", "kind" and "dimensions" at the top are the defaults.
//               grouped: one call per distinct query and settings (its documents share the query's prefix), all
//               calls in flight together, so they are packed into shared batches; single: one call per
//               input, each awaited before the next (no packing, no prefix shared). R: {"scores",
//               "logits"} or {"embeddings"}, with "tokens" (the ids each input was run as) and the
//               engine's counters. T: {"sequences": [[ids], ...]}, the input of scripts/torch_qwen3.py.
//
// Exit status: 0, 1 on an engine error (code and message on stderr), 2 on bad flags or inputs.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <random>
#include <regex>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"
#include "qrank/pipeline.h"

namespace {

using Json = nlohmann::ordered_json;
using Clock = std::chrono::steady_clock;

struct Shape {
  std::string name;
  int queries = 4;
  int docs = 32;
  int min_tokens = 256;
  int max_tokens = 256;
};

struct Args {
  std::string model;
  std::string role = "reranker";
  std::string device = "cpu";
  Shape classic;               // the default mode's workload
  std::vector<Shape> shapes;   // --shape
  int batch_tokens = 0;
  int max_sequences = 0;
  int threads = 0;
  int repeat = 3;
  int latency_runs = 0;
  unsigned seed = 1;
  std::string dump_prompts;
  std::string inputs;
  std::string out;
  std::string submit = "grouped";
  std::string dump_tokens;
};

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(stderr, "qrank_bench: %s\nsee the header of bench/qrank_bench.cc for the flags\n", why.c_str());
  std::exit(2);
}

Shape parse_shape(const std::string& text) {
  static const std::regex form(R"(^([A-Za-z0-9_.-]+)=(\d+)x(\d+)x(\d+)(?:-(\d+))?$)");
  std::smatch m;
  if (!std::regex_match(text, m, form)) usage("--shape " + text + ": expected NAME=QUERIESxDOCSxTOKENS or NAME=QxDxMIN-MAX");
  Shape s{m[1], std::stoi(m[2]), std::stoi(m[3]), std::stoi(m[4]), m[5].matched ? std::stoi(m[5]) : std::stoi(m[4])};
  if (s.queries < 1 || s.docs < 1 || s.min_tokens < 1 || s.max_tokens < s.min_tokens) usage("--shape " + text + ": counts must be positive, MIN <= MAX");
  return s;
}

Args parse(int argc, char** argv) {
  Args a;
  a.classic.name = "default";
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage("missing value for " + k);
      return argv[++i];
    };
    auto number = [&]() -> int {
      const std::string v = value();
      try {
        return std::stoi(v);
      } catch (const std::exception&) {
        usage(k + " takes an integer, not '" + v + "'");
      }
    };
    if (k == "--model") a.model = value();
    else if (k == "--role") a.role = value();
    else if (k == "--device") a.device = value();
    else if (k == "--queries") a.classic.queries = number();
    else if (k == "--docs") a.classic.docs = number();
    else if (k == "--doc-tokens") a.classic.min_tokens = a.classic.max_tokens = number();
    else if (k == "--shape") a.shapes.push_back(parse_shape(value()));
    else if (k == "--batch-tokens") a.batch_tokens = number();
    else if (k == "--max-sequences") a.max_sequences = number();
    else if (k == "--threads") a.threads = number();
    else if (k == "--repeat") a.repeat = number();
    else if (k == "--latency-runs") a.latency_runs = number();
    else if (k == "--seed") a.seed = static_cast<unsigned>(number());
    else if (k == "--dump-prompts") a.dump_prompts = value();
    else if (k == "--inputs") a.inputs = value();
    else if (k == "--out") a.out = value();
    else if (k == "--submit") a.submit = value();
    else if (k == "--dump-tokens") a.dump_tokens = value();
    else usage("unknown flag " + k);
  }
  if (a.model.empty()) usage("--model is required");
  if (a.role != "reranker" && a.role != "embedder") usage("--role is reranker or embedder");
  if (a.device != "cpu" && a.device != "cuda" && a.device != "auto") usage("--device is cpu, cuda or auto");
  if (a.classic.queries < 1 || a.classic.docs < 1 || a.classic.min_tokens < 1 || a.repeat < 1) usage("counts must be positive");
  if (a.submit != "grouped" && a.submit != "single") usage("--submit is grouped or single");
  if (!a.inputs.empty() && a.out.empty()) usage("--inputs needs --out");
  if (!a.inputs.empty() && !a.shapes.empty()) usage("--inputs and --shape are separate modes");
  return a;
}

// --- synthetic texts --------------------------------------------------------------------------------

// Multilingual shop vocabulary: texts look like catalog entries and tokenise like them.
const char* const kWords[] = {
    "wireless", "bluetooth", "headphones", "noise", "cancelling", "battery", "hours", "charging", "case",
    "auriculares", "inalámbricos", "cancelación", "ruido", "batería", "estuche", "carga", "rápida", "negro",
    "无线", "蓝牙", "降噪", "耳机", "续航", "充电盒", "快充", "黑色", "stainless", "steel", "kitchen", "knife",
    "set", "juego", "cuchillos", "acero", "inoxidable", "厨房", "刀具", "套装", "running", "shoes", "zapatillas",
    "跑步鞋", "size", "talla", "尺码", "price", "precio", "价格", "waterproof", "impermeable", "防水", "cotton",
    "algodón", "纯棉", "shirt", "camisa", "衬衫", "with", "con", "和", "for", "para", "适用于", "the", "el", "la"};
constexpr size_t kWordCount = sizeof kWords / sizeof kWords[0];

// Texts of whole words (cutting token ids could split a multi-byte character and give text that no
// longer tokenises the same way), grown by each word's own token count, then checked whole.
class TextMaker {
 public:
  TextMaker(const qrank::Pipeline& p, unsigned seed) : p_(p), rng_(seed) {
    for (const char* w : kWords) cost_.push_back(static_cast<int>(p.tokenize(std::string(" ") + w).size()));
  }

  std::string make(int min_tokens, int max_tokens) {
    const int target = std::uniform_int_distribution<int>(min_tokens, max_tokens)(rng_);
    std::uniform_int_distribution<size_t> pick(0, kWordCount - 1);
    std::string text;
    int estimate = 0;
    auto add = [&]() {
      const size_t w = pick(rng_);
      text += (text.empty() ? "" : " ") + std::string(kWords[w]);
      estimate += cost_[w];
    };
    while (estimate < target) add();
    while (static_cast<int>(p_.tokenize(text).size()) < target) add();
    return text;
  }

 private:
  const qrank::Pipeline& p_;
  std::mt19937 rng_;
  std::vector<int> cost_;
};

struct Workload {
  std::vector<std::string> queries;
  std::vector<std::vector<std::string>> docs;  // per query
};

Workload make_workload(TextMaker& maker, const Shape& s) {
  Workload w;
  w.docs.resize(s.queries);
  for (int q = 0; q < s.queries; ++q) {
    w.queries.push_back(maker.make(8, 8));
    for (int d = 0; d < s.docs; ++d) w.docs[q].push_back(maker.make(s.min_tokens, s.max_tokens));
  }
  return w;
}

// "query<TAB>document" per line (documents alone for an embedder): the input llama-embedding
// --pooling rank reads, and the Node bench's.
void dump_prompts(const std::string& path, const Args& a, const std::vector<const Workload*>& workloads) {
  std::ofstream f(path);
  for (const Workload* w : workloads)
    for (size_t q = 0; q < w->queries.size(); ++q)
      for (const auto& d : w->docs[q]) f << (a.role == "reranker" ? w->queries[q] + "\t" : "") << d << "\n";
}

// --- running calls ------------------------------------------------------------------------------

long peak_rss_kb() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;
}

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// Waits for a number of calls; keeps each call's outcome.
class Waiter {
 public:
  explicit Waiter(size_t calls) : remaining_(calls), outcomes_(calls) {}

  qrank::Callback callback(size_t call) {
    return [this, call](qrank::Outcome&& o) {
      std::lock_guard<std::mutex> lock(m_);
      if (!o.ok && error_.empty()) error_ = std::string(qrank::error_code_name(o.code)) + ": " + o.message;
      outcomes_[call] = std::move(o);
      if (--remaining_ == 0) cv_.notify_all();
    };
  }
  // The outcomes in call order; throws the first error.
  std::vector<qrank::Outcome>& wait() {
    std::unique_lock<std::mutex> lock(m_);
    cv_.wait(lock, [this] { return remaining_ == 0; });
    if (!error_.empty()) throw std::runtime_error(error_);
    return outcomes_;
  }

 private:
  std::mutex m_;
  std::condition_variable cv_;
  size_t remaining_;
  std::vector<qrank::Outcome> outcomes_;
  std::string error_;
};

uint64_t token_sum(const std::vector<qrank::Outcome>& outcomes) {
  uint64_t n = 0;
  for (const auto& o : outcomes)
    for (int32_t c : o.token_counts) n += static_cast<uint64_t>(c);
  return n;
}

// Submits one call; an input the pipeline refuses at once (Error) becomes that call's failed outcome,
// so that the calls already in flight are still waited for.
template <typename Submit>
void submit_one(Submit& submit, const std::vector<size_t>& ids, qrank::Callback cb) {
  try {
    submit(ids, cb);
  } catch (const qrank::Error& e) {
    qrank::Outcome failed;
    failed.ok = false;
    failed.code = e.code();
    failed.message = e.what();
    cb(std::move(failed));
  }
}

// The first n_queries calls of a workload, all in flight at once; returns the tokens run.
uint64_t submit_all(qrank::Pipeline& p, const Args& a, const Workload& w, size_t n_queries) {
  Waiter waiter(n_queries);
  auto submit = [&](const std::vector<size_t>& ids, qrank::Callback cb) {
    const size_t q = ids[0];
    if (a.role == "reranker") {
      std::vector<qrank::Pair> pairs;
      for (const auto& d : w.docs[q]) pairs.push_back({w.queries[q], d});
      p.score(std::move(pairs), "", qrank::InputLimit{}, std::move(cb));
    } else {
      p.embed(w.docs[q], qrank::TextKind::kDocument, "", 0, qrank::InputLimit{}, std::move(cb));
    }
  };
  for (size_t q = 0; q < n_queries; ++q) submit_one(submit, {q}, waiter.callback(q));
  return token_sum(waiter.wait());
}

// Multiply-add FLOPs of the linear layers (QKV, O, gate+up, down) for one token.
double gemm_flops_per_token(const qrank::ModelInfo& m) {
  const double h = static_cast<double>(m.embedding_length), d = static_cast<double>(m.head_dim);
  const double hq = static_cast<double>(m.heads), hkv = static_cast<double>(m.kv_heads), f = static_cast<double>(m.ffn_length);
  const double per_layer = h * (hq + 2 * hkv) * d + hq * d * h + h * 2 * f + f * h;
  return 2.0 * per_layer * static_cast<double>(m.layers);
}

double percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())))];
}

Json latency_of(qrank::Pipeline& p, const Args& a, const Workload& w) {
  std::vector<double> ms;
  for (int r = 0; r < a.latency_runs; ++r) {
    const auto t0 = Clock::now();
    submit_all(p, a, w, 1);
    ms.push_back(seconds_since(t0) * 1000.0);
  }
  return Json{{"docs", w.docs[0].size()}, {"runs", a.latency_runs}, {"p50_ms", percentile(ms, 0.5)},
              {"p99_ms", percentile(ms, 0.99)}, {"min_ms", percentile(ms, 0.0)}};
}

Json base_report(const qrank::Pipeline& p, const Args& a, double load_s) {
  return Json{{"engine", "qrank"}, {"backend", p.backend()}, {"recipe", p.recipe()}, {"model", a.model},
              {"role", a.role}, {"device", a.device}, {"load_s", load_s}};
}

void add_memory(Json& js, const qrank::Pipeline& p) {
  const qrank::EngineStats e = p.stats().scheduler.engine;
  js["device_bytes"] = e.device_bytes;
  js["device_peak_bytes"] = e.device_peak_bytes;
  js["peak_rss_mb"] = static_cast<double>(peak_rss_kb()) / 1024.0;
}

// `repeat` timed runs of the whole workload: the wall seconds of each, and the tokens of one.
struct Timed {
  std::vector<double> walls;
  uint64_t tokens = 0;
};
Timed timed_runs(qrank::Pipeline& p, const Args& a, const Workload& w) {
  Timed t;
  for (int r = 0; r < a.repeat; ++r) {
    const auto t0 = Clock::now();
    t.tokens = submit_all(p, a, w, w.queries.size());
    t.walls.push_back(seconds_since(t0));
  }
  return t;
}

// The default mode: one workload, output fields as bench/run-cpu.mjs reads them.
Json run_classic(qrank::Pipeline& p, const Args& a, double load_s) {
  TextMaker maker(p, a.seed);
  const Workload w = make_workload(maker, a.classic);
  if (!a.dump_prompts.empty()) dump_prompts(a.dump_prompts, a, {&w});
  submit_all(p, a, w, 1);  // warm-up: first-touch of weights, context allocation
  auto [walls, tokens] = timed_runs(p, a, w);
  std::sort(walls.begin(), walls.end());
  const double median = walls[walls.size() / 2];
  const int pairs = a.classic.queries * a.classic.docs;
  const Json latency = latency_of(p, a, w);
  const qrank::EngineStats e = p.stats().scheduler.engine;
  Json js = base_report(p, a, load_s);
  js.update(Json{{"queries", a.classic.queries}, {"docs_per_query", a.classic.docs}, {"doc_tokens", a.classic.min_tokens},
                 {"pairs", pairs}, {"tokens", tokens}, {"wall_s_median", median}, {"wall_s_min", walls.front()},
                 {"wall_s_max", walls.back()}, {"tokens_per_s", static_cast<double>(tokens) / median},
                 {"pairs_per_s", pairs / median}, {"batches", e.batches}, {"tokens_evaluated", e.tokens_evaluated},
                 {"tokens_reused", e.tokens_reused}, {"latency_ms_p50", latency["p50_ms"]}, {"latency_ms_p99", latency["p99_ms"]}});
  add_memory(js, p);
  return js;
}

Json run_shape(qrank::Pipeline& p, const Args& a, const Shape& s, const Workload& w) {
  submit_all(p, a, w, w.queries.size());  // warm-up at this shape (workspaces, plans)
  const qrank::EngineStats before = p.stats().scheduler.engine;
  const auto [walls, tokens] = timed_runs(p, a, w);
  const qrank::EngineStats after = p.stats().scheduler.engine;
  const double median = percentile(walls, 0.5);
  const double pairs = static_cast<double>(s.queries) * s.docs;
  const double evaluated = static_cast<double>(after.tokens_evaluated - before.tokens_evaluated) / a.repeat;
  const double flops = evaluated * gemm_flops_per_token(p.info());
  return Json{{"name", s.name}, {"queries", s.queries}, {"docs_per_query", s.docs}, {"doc_tokens", {s.min_tokens, s.max_tokens}},
              {"pairs", pairs}, {"tokens", tokens}, {"tokens_evaluated", evaluated},
              {"tokens_reused", static_cast<double>(after.tokens_reused - before.tokens_reused) / a.repeat},
              {"batches", static_cast<double>(after.batches - before.batches) / a.repeat},
              {"wall_s_median", median}, {"wall_s_all", walls},
              {"tokens_per_s", static_cast<double>(tokens) / median}, {"pairs_per_s", pairs / median},
              {"gemm_flops", flops}, {"gemm_tflops", flops / median / 1e12}};
}

Json run_shapes(qrank::Pipeline& p, const Args& a, double load_s) {
  TextMaker maker(p, a.seed);
  std::vector<Workload> workloads;
  for (const Shape& s : a.shapes) workloads.push_back(make_workload(maker, s));
  if (!a.dump_prompts.empty()) {
    std::vector<const Workload*> all;
    for (const auto& w : workloads) all.push_back(&w);
    dump_prompts(a.dump_prompts, a, all);
  }
  Json js = base_report(p, a, load_s);
  js["seed"] = a.seed;
  js["repeat"] = a.repeat;
  js["gemm_flops_per_token"] = gemm_flops_per_token(p.info());
  js["shapes"] = Json::array();
  for (size_t i = 0; i < a.shapes.size(); ++i) {
    js["shapes"].push_back(run_shape(p, a, a.shapes[i], workloads[i]));
    std::fprintf(stderr, "qrank_bench: %s %.0f tokens/s\n", a.shapes[i].name.c_str(), js["shapes"].back()["tokens_per_s"].get<double>());
  }
  if (a.latency_runs > 0) {
    js["latency"] = latency_of(p, a, workloads[0]);
    js["latency"]["shape"] = a.shapes[0].name;
  }
  add_memory(js, p);
  return js;
}

// --- fixed inputs -------------------------------------------------------------------------------

Json read_json(const std::string& path) {
  std::ifstream f(path);
  if (!f) usage("cannot read " + path);
  try {
    return Json::parse(f);
  } catch (const std::exception& e) {
    usage(path + ": " + e.what());
  }
}

// Calls for the inputs: grouped (inputs of one query together, all calls in flight at once) or single
// (one input per call, one call at a time). Returns each input's outcome row: values and logit.
struct Row {
  std::vector<float> values;
  float logit = 0.f;
  int32_t tokens = 0;
};

template <typename Submit>
std::vector<Row> run_calls(const std::vector<std::vector<size_t>>& calls, size_t n_inputs, bool one_at_a_time, Submit submit) {
  std::vector<Row> rows(n_inputs);
  auto collect = [&](size_t c, const qrank::Outcome& o) {
    for (size_t j = 0; j < calls[c].size(); ++j) {
      Row& r = rows[calls[c][j]];
      r.values.assign(o.values.begin() + static_cast<long>(j * o.width), o.values.begin() + static_cast<long>((j + 1) * o.width));
      r.logit = o.logits.empty() ? 0.f : o.logits[j];
      r.tokens = o.token_counts[j];
    }
  };
  if (one_at_a_time) {
    for (size_t c = 0; c < calls.size(); ++c) {
      Waiter w(1);
      submit_one(submit, calls[c], w.callback(0));
      collect(c, w.wait()[0]);
    }
  } else {
    Waiter w(calls.size());
    for (size_t c = 0; c < calls.size(); ++c) submit_one(submit, calls[c], w.callback(c));
    auto& outcomes = w.wait();
    for (size_t c = 0; c < calls.size(); ++c) collect(c, outcomes[c]);
  }
  return rows;
}

std::vector<std::vector<size_t>> group_calls(const std::vector<std::string>& keys, bool single) {
  std::vector<std::vector<size_t>> calls;
  std::map<std::string, size_t> call_of;
  for (size_t i = 0; i < keys.size(); ++i) {
    if (single) {
      calls.push_back({i});
      continue;
    }
    auto [it, fresh] = call_of.emplace(keys[i], calls.size());
    if (fresh) calls.emplace_back();
    calls[it->second].push_back(i);
  }
  return calls;
}

// One input of --inputs: a pair (reranker) or a text (embedder), with the settings of its call.
struct Input {
  qrank::Pair pair;
  std::string text;
  qrank::TextKind kind = qrank::TextKind::kDocument;
  std::string instruction;
  int dimensions = 0;
  std::string call_key() const {  // inputs that may share one call
    return instruction + '\x1f' + (kind == qrank::TextKind::kQuery ? "q" : "d") + std::to_string(dimensions) + '\x1f' + pair.query;
  }
};

// Reads {"pairs": [{"query", "document", "instruction"?}]} or {"texts": [text | {"text", "kind"?,
// "instruction"?, "dimensions"?}]}, with file-wide "instruction", "kind", "dimensions" as defaults.
std::vector<Input> read_inputs(const Args& a) {
  const Json in = read_json(a.inputs);
  const std::string key = a.role == "reranker" ? "pairs" : "texts";
  if (!in.contains(key) || !in[key].is_array()) usage(a.inputs + ": a " + a.role + " needs {\"" + key + "\": [...]}");
  Input defaults;
  defaults.instruction = in.value("instruction", std::string());
  defaults.kind = in.value("kind", std::string("document")) == "query" ? qrank::TextKind::kQuery : qrank::TextKind::kDocument;
  defaults.dimensions = in.value("dimensions", 0);
  std::vector<Input> inputs;
  try {
    for (const auto& x : in[key]) {
      Input i = defaults;
      if (a.role == "reranker") {
        i.pair = {x.at("query").get<std::string>(), x.at("document").get<std::string>()};
      } else if (x.is_string()) {
        i.text = x.get<std::string>();
      } else {
        i.text = x.at("text").get<std::string>();
        if (x.contains("kind")) i.kind = x["kind"].get<std::string>() == "query" ? qrank::TextKind::kQuery : qrank::TextKind::kDocument;
        i.dimensions = x.value("dimensions", defaults.dimensions);
      }
      if (x.is_object() && x.contains("instruction") && x["instruction"].is_string()) i.instruction = x["instruction"].get<std::string>();
      inputs.push_back(std::move(i));
    }
  } catch (const std::exception& e) {
    usage(a.inputs + ": " + e.what());
  }
  return inputs;
}

Json run_inputs(qrank::Pipeline& p, const Args& a, double load_s) {
  const std::vector<Input> inputs = read_inputs(a);
  const bool reranker = a.role == "reranker";
  const bool single = a.submit == "single";
  std::vector<std::string> keys;
  Json sequences = Json::array();
  for (const Input& i : inputs) {
    keys.push_back(i.call_key());
    sequences.push_back(reranker ? p.format_pair(i.pair, i.instruction).second : p.format_text(i.text, i.kind, i.instruction).second);
  }
  const std::vector<Row> rows = run_calls(group_calls(keys, single), inputs.size(), single, [&](const std::vector<size_t>& ids, qrank::Callback cb) {
    const Input& first = inputs[ids[0]];
    if (reranker) {
      std::vector<qrank::Pair> batch;
      for (size_t i : ids) batch.push_back(inputs[i].pair);
      p.score(std::move(batch), first.instruction, qrank::InputLimit{}, std::move(cb));
    } else {
      std::vector<std::string> batch;
      for (size_t i : ids) batch.push_back(inputs[i].text);
      p.embed(std::move(batch), first.kind, first.instruction, first.dimensions, qrank::InputLimit{}, std::move(cb));
    }
  });
  Json out = base_report(p, a, load_s);
  out["submit"] = a.submit;
  if (reranker) {
    Json scores = Json::array(), logits = Json::array();
    for (const Row& r : rows) {
      scores.push_back(r.values.at(0));
      logits.push_back(r.logit);
    }
    out["scores"] = scores;
    out["logits"] = logits;
  } else {
    Json embeddings = Json::array();
    for (const Row& r : rows) embeddings.push_back(r.values);
    out["embeddings"] = embeddings;
  }
  out["tokens"] = sequences;
  const qrank::EngineStats e = p.stats().scheduler.engine;
  out["stats"] = Json{{"batches", e.batches}, {"sequences", e.sequences}, {"tokens_evaluated", e.tokens_evaluated}, {"tokens_reused", e.tokens_reused}};
  add_memory(out, p);
  if (!a.dump_tokens.empty()) std::ofstream(a.dump_tokens) << Json{{"sequences", sequences}}.dump() << "\n";
  std::ofstream(a.out) << out.dump() << "\n";
  return Json{{"engine", "qrank"}, {"backend", p.backend()}, {"inputs", rows.size()}, {"out", a.out}, {"stats", out["stats"]}};
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  try {
    qrank::PipelineOptions o;
    o.model_path = a.model;
    o.role = a.role == "embedder" ? qrank::Role::kEmbedder : qrank::Role::kReranker;
    o.device = a.device == "cuda" ? qrank::Device::kCuda : a.device == "auto" ? qrank::Device::kAuto : qrank::Device::kCpu;
    o.batch_tokens = a.batch_tokens;
    o.max_sequences = a.max_sequences;
    o.threads = a.threads;
    const auto t_load = Clock::now();
    auto p = qrank::Pipeline::open(o);
    const double load_s = seconds_since(t_load);
    const Json report = !a.inputs.empty() ? run_inputs(*p, a, load_s) : !a.shapes.empty() ? run_shapes(*p, a, load_s) : run_classic(*p, a, load_s);
    std::cout << report.dump() << std::endl;
    p->close();
  } catch (const qrank::Error& e) {
    std::fprintf(stderr, "qrank_bench: %s: %s\n", qrank::error_code_name(e.code()), e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "qrank_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
