// qrank_bench: drives qrank's native core directly (no Node) to measure reranking and embedding
// throughput and latency on a GGUF model, with reproducible synthetic inputs.
//
//   qrank_bench --model M.gguf [--role reranker|embedder] [--device cpu|cuda|auto] [--queries 4] [--docs 32] [--doc-tokens 256]
//               [--batch-tokens 1024] [--max-sequences 64] [--threads 0] [--repeat 3] [--latency-runs 0]
//               [--seed 1] [--dump-prompts FILE]
//
// Each query is one call of --docs documents (one request, as a service sees it); all calls are
// submitted at once so the scheduler packs them. Prints one JSON object on stdout.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "qrank/pipeline.h"

namespace {

struct Args {
  std::string model;
  std::string role = "reranker";
  std::string device = "cpu";
  int queries = 4;
  int docs = 32;
  int doc_tokens = 256;
  int batch_tokens = 0;
  int max_sequences = 0;
  int threads = 0;
  int repeat = 3;
  int latency_runs = 0;
  unsigned seed = 1;
  std::string dump_prompts;
};

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr, "qrank_bench: %s\nsee the header of bench/qrank_bench.cc for the flags\n", why);
  std::exit(2);
}

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(("missing value for " + k).c_str());
      return argv[++i];
    };
    if (k == "--model") a.model = value();
    else if (k == "--role") a.role = value();
    else if (k == "--device") a.device = value();
    else if (k == "--queries") a.queries = std::stoi(value());
    else if (k == "--docs") a.docs = std::stoi(value());
    else if (k == "--doc-tokens") a.doc_tokens = std::stoi(value());
    else if (k == "--batch-tokens") a.batch_tokens = std::stoi(value());
    else if (k == "--max-sequences") a.max_sequences = std::stoi(value());
    else if (k == "--threads") a.threads = std::stoi(value());
    else if (k == "--repeat") a.repeat = std::stoi(value());
    else if (k == "--latency-runs") a.latency_runs = std::stoi(value());
    else if (k == "--seed") a.seed = static_cast<unsigned>(std::stoul(value()));
    else if (k == "--dump-prompts") a.dump_prompts = value();
    else usage(("unknown flag " + k).c_str());
  }
  if (a.model.empty()) usage("--model is required");
  if (a.device != "cpu" && a.device != "cuda" && a.device != "auto") usage("--device is cpu, cuda or auto");
  if (a.queries < 1 || a.docs < 1 || a.doc_tokens < 1 || a.repeat < 1) usage("counts must be positive");
  return a;
}

// Multilingual shop vocabulary: texts look like catalog entries and tokenise like them.
const char* const kWords[] = {
    "wireless", "bluetooth", "headphones", "noise", "cancelling", "battery", "hours", "charging", "case",
    "auriculares", "inalámbricos", "cancelación", "ruido", "batería", "estuche", "carga", "rápida", "negro",
    "无线", "蓝牙", "降噪", "耳机", "续航", "充电盒", "快充", "黑色", "stainless", "steel", "kitchen", "knife",
    "set", "juego", "cuchillos", "acero", "inoxidable", "厨房", "刀具", "套装", "running", "shoes", "zapatillas",
    "跑步鞋", "size", "talla", "尺码", "price", "precio", "价格", "waterproof", "impermeable", "防水", "cotton",
    "algodón", "纯棉", "shirt", "camisa", "衬衫", "with", "con", "和", "for", "para", "适用于", "the", "el", "la"};

// Whole words until the text reaches target_tokens (a few more at most): cutting token ids instead
// could split a multi-byte character and give text that no longer tokenises the same way.
std::string make_text(std::mt19937& rng, const qrank::Pipeline& p, int target_tokens) {
  std::uniform_int_distribution<size_t> pick(0, sizeof kWords / sizeof kWords[0] - 1);
  std::string text;
  int estimate = 0;
  while (true) {
    const std::string next = (text.empty() ? "" : text + " ") + kWords[pick(rng)];
    if (estimate + 8 < target_tokens) {  // cheap growth while far from the target
      text = next;
      estimate += 2;
      continue;
    }
    text = next;
    if (static_cast<int>(p.tokenize(text).size()) >= target_tokens) return text;
  }
}

long peak_rss_kb() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;
}

// Submits calls and waits for all of them; returns the summed token counts.
struct Waiter {
  std::mutex m;
  std::condition_variable cv;
  int remaining = 0;
  uint64_t tokens = 0;
  std::string error;

  qrank::Callback callback() {
    return [this](qrank::Outcome&& o) {
      std::lock_guard<std::mutex> lock(m);
      if (!o.ok) error = o.message;
      for (int32_t c : o.token_counts) tokens += c;
      if (--remaining == 0) cv.notify_all();
    };
  }
  void wait() {
    std::unique_lock<std::mutex> lock(m);
    cv.wait(lock, [this] { return remaining == 0; });
    if (!error.empty()) throw std::runtime_error(error);
  }
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

uint64_t submit_all(qrank::Pipeline& p, const Args& a, const std::vector<std::string>& queries,
                    const std::vector<std::vector<std::string>>& docs, int n_queries) {
  Waiter w;
  w.remaining = n_queries;
  for (int q = 0; q < n_queries; ++q) {
    if (a.role == "reranker") {
      std::vector<qrank::Pair> pairs;
      for (const auto& d : docs[q]) pairs.push_back({queries[q], d});
      p.score(std::move(pairs), "", w.callback());
    } else {
      p.embed(docs[q], qrank::TextKind::kDocument, "", 0, w.callback());
    }
  }
  w.wait();
  return w.tokens;
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
    const auto t_load = std::chrono::steady_clock::now();
    auto p = qrank::Pipeline::open(o);
    const double load_s = seconds_since(t_load);

    std::mt19937 rng(a.seed);
    std::vector<std::string> queries;
    std::vector<std::vector<std::string>> docs(a.queries);
    for (int q = 0; q < a.queries; ++q) {
      queries.push_back(make_text(rng, *p, 8));
      for (int d = 0; d < a.docs; ++d) docs[q].push_back(make_text(rng, *p, a.doc_tokens));
    }
    if (!a.dump_prompts.empty()) {
      // "query<TAB>document" per line: the input llama-embedding --pooling rank reads.
      std::ofstream f(a.dump_prompts);
      for (int q = 0; q < a.queries; ++q)
        for (const auto& d : docs[q]) f << (a.role == "reranker" ? queries[q] + "\t" : "") << d << "\n";
    }

    submit_all(*p, a, queries, docs, 1);  // warm-up: first-touch of weights, context allocation
    std::vector<double> walls;
    uint64_t tokens = 0;
    for (int r = 0; r < a.repeat; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      tokens = submit_all(*p, a, queries, docs, a.queries);
      walls.push_back(seconds_since(t0));
    }
    std::sort(walls.begin(), walls.end());
    const double median = walls[walls.size() / 2];
    const int pairs = a.queries * a.docs;

    std::vector<double> latencies;
    for (int r = 0; r < a.latency_runs; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      submit_all(*p, a, queries, docs, 1);
      latencies.push_back(seconds_since(t0) * 1000.0);
    }
    std::sort(latencies.begin(), latencies.end());
    auto pct = [&](double q) { return latencies.empty() ? 0.0 : latencies[std::min(latencies.size() - 1, static_cast<size_t>(q * latencies.size()))]; };

    const qrank::SchedulerStats s = p->stats().scheduler;
    std::ostringstream js;
    js << "{\"engine\":\"qrank\",\"backend\":\"" << p->backend() << "\",\"recipe\":\"" << p->recipe() << "\",\"model\":\""
       << a.model << "\",\"role\":\"" << a.role << "\",\"queries\":" << a.queries << ",\"docs_per_query\":" << a.docs
       << ",\"doc_tokens\":" << a.doc_tokens << ",\"pairs\":" << pairs << ",\"tokens\":" << tokens
       << ",\"load_s\":" << load_s << ",\"wall_s_median\":" << median << ",\"wall_s_min\":" << walls.front()
       << ",\"wall_s_max\":" << walls.back() << ",\"tokens_per_s\":" << tokens / median
       << ",\"pairs_per_s\":" << pairs / median << ",\"batches\":" << s.engine.batches
       << ",\"tokens_evaluated\":" << s.engine.tokens_evaluated << ",\"tokens_reused\":" << s.engine.tokens_reused
       << ",\"latency_ms_p50\":" << pct(0.5) << ",\"latency_ms_p99\":" << pct(0.99)
       << ",\"peak_rss_mb\":" << peak_rss_kb() / 1024.0 << "}";
    std::cout << js.str() << std::endl;
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
