#!/usr/bin/env node
// Markdown tables of a bench/ann-bench.mjs result (what bench/RESULTS.md quotes):
//   node bench/ann-tables.mjs bench/results/ann-100k.json [--recall 0.95]
// Per data set: the data's statistics; one row per run with build vectors/s, memory per vector and,
// at the smallest efSearch reaching --recall (else the best), recall@10, p50/p99, QPS single/
// concurrent/batched; then the efSearch sweep of every HNSW run, filters and searches during ingestion.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

const { values: opt, positionals } = parseArgs({ options: { recall: { type: 'string', default: '0.95' } }, allowPositionals: true });
const report = JSON.parse(readFileSync(positionals[0], 'utf8'));
const target = Number(opt.recall);
const f = (v, d = 2) => (v === null || v === undefined ? '' : Number(v).toFixed(d));
const k = (v) => (v >= 1e4 ? `${(v / 1e3).toFixed(1)}k` : f(v, 0));
const out = [];
const table = (head, rows) => {
  out.push(`| ${head.join(' | ')} |`, `| ${head.map(() => '---').join(' | ')} |`, ...rows.map((r) => `| ${r.join(' | ')} |`), '');
};

out.push(`${report.command}`, '', `machine: ${report.machine.cores} cores, ${report.machine.cpu}, ${report.machine.memory_gb} GB, ${report.machine.flags.join(' ')}`, '');
for (const [data, d] of Object.entries(report.data)) {
  const s = d.statistics;
  out.push(`### ${data} (${d.id})`, '');
  table(['PCA: components for 50% / 90% / 95% of the variance', 'variance in the top 32', 'LID (MLE, k 20) median / mean', 'random-pair cosine mean (sd)', 'NN1 / NN10 cosine', 'relative contrast'], [[
    `${s.pca.components_for_50pct} / ${s.pca.components_for_90pct} / ${s.pca.components_for_95pct}`, f(s.pca.variance_in_top['32']),
    `${f(s.lid_mle_k20.median, 1)} / ${f(s.lid_mle_k20.mean, 1)}`, `${f(s.concentration.random_pair_cosine_mean)} (${f(s.concentration.random_pair_cosine_sd)})`,
    `${f(s.concentration.nn1_cosine_mean)} / ${f(s.concentration.nn10_cosine_mean)}`, f(s.concentration.relative_contrast_mean)]]);
  const runs = report.runs.filter((r) => r.data === data);
  table(['engine', 'index', 'storage', 'build vectors/s', 'bytes/vector (index; RSS growth)', 'peak RSS/vector', 'efSearch', 'recall@10', 'p50 ms', 'p99 ms', 'QPS 1 thread', 'QPS 8 threads', 'QPS batched'],
    runs.map((r) => {
      const pick = r.sweep.find((x) => x.recall_at_10 >= target) ?? r.sweep[r.sweep.length - 1];
      return [r.variant, r.index, r.storage, r.index === 'flat' ? '(copy)' : k(r.build.vectors_per_s), `${f(r.memory.index_bytes_per_vector, 0)}; ${f(r.memory.rss_growth_bytes_per_vector, 0)}`,
        f(r.peak_rss_bytes_per_vector, 0), r.index === 'hnsw' ? pick.ef_search : '-', f(pick.recall_at_10, 4), f(pick.p50_ms, 3), f(pick.p99_ms, 3),
        k(pick.qps_single_thread), k(pick.qps_concurrent), k(pick.qps_batched)];
    }));
  const hnsw = runs.filter((r) => r.index === 'hnsw');
  if (hnsw.length) {
    const efs = [...new Set(hnsw.flatMap((r) => r.sweep.map((x) => x.ef_search)))];
    out.push('recall@10 / p50 ms per efSearch:', '');
    table(['engine', 'storage', ...efs.map((e) => `ef ${e}`)], hnsw.map((r) => [r.variant, r.storage,
      ...efs.map((e) => { const x = r.sweep.find((y) => y.ef_search === e); return x ? `${f(x.recall_at_10, 3)} / ${f(x.p50_ms, 3)}` : ''; })]));
  }
  const filtered = runs.filter((r) => r.filters);
  if (filtered.length) {
    out.push('filters (k 10, efSearch 64): recall@10 against the exact filtered top 10 / p50 ms:', '');
    table(['engine', 'index', 'storage', 'allowed', 'exact scan', 'graph walk', "the index's rule"], filtered.flatMap((r) => r.filters.map((x) => [r.variant, r.index, r.storage,
      `${x.selectivity * 100}% (${x.allowed})`, x.exact ? `${f(x.exact.recall_at_10, 3)} / ${f(x.exact.p50_ms, 3)}` : '', x.graph ? `${f(x.graph.recall_at_10, 3)} / ${f(x.graph.p50_ms, 3)}` : '',
      x.auto ? `${f(x.auto.recall_at_10, 3)} / ${f(x.auto.p50_ms, 3)}` : ''])));
  }
  const ingest = runs.filter((r) => r.during_ingest);
  if (ingest.length) {
    out.push('searches (k 10, efSearch 64, one query per call) while an add runs beside them:', '');
    table(['engine', 'storage', 'searchers', 'search QPS', 'add vectors/s meanwhile'], ingest.flatMap((r) => r.during_ingest.map((x) => [r.variant, r.storage, x.searchers, k(x.search_qps), k(x.add_vectors_per_s)])));
  }
}
console.log(out.join('\n'));
