#!/usr/bin/env node
// End-to-end search latency per stage: the shipped cross-border catalog (305 products, en/zh/es) is
// ingested, then its 103 queries (7 languages) run through embed -> recall (HNSW) -> fetch ->
// rerank, cold and then again from the caches. Reports p50/p99 per stage. Synthetic tiny models by
// default (--embedder/--reranker for real GGUFs). Writes bench/results/search-<date>.json.
//
//   node bench/search-bench.mjs [--recall-k 50] [--threads 2] [--embedder E.gguf --reranker R.gguf]
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const { Embedder, Reranker, SearchEngine } = require(join(root, 'dist', 'index.js'));
const { readQueries } = require(join(root, 'dist', 'eval', 'beir.js'));
const { demoRecords } = require(join(root, 'dist', 'search', 'demo-catalog.js'));
const { values: opt } = parseArgs({
  options: {
    'recall-k': { type: 'string', default: '50' },
    threads: { type: 'string', default: '2' },
    embedder: { type: 'string', default: join(root, 'test', '.models', 'tiny-embedder.gguf') },
    reranker: { type: 'string', default: join(root, 'test', '.models', 'tiny-reranker.gguf') },
  },
});
const dataset = join(root, 'eval', 'crossborder-shop');
const pct = (xs, q) => xs.slice().sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))];

const threads = Number(opt.threads);
const em = await Embedder.load({ model: opt.embedder, threads: Math.max(1, threads >> 1) });
const rr = await Reranker.load({ model: opt.reranker, threads: Math.max(1, threads >> 1) });
const dir = mkdtempSync(join(tmpdir(), 'qrank-search-bench-'));
try {
  const se = await SearchEngine.open({ dir, embedder: em, reranker: rr });
  const records = [];
  for await (const r of demoRecords(dataset)) records.push(r);
  const col = await se.collection('shop', { index: { kind: 'hnsw' } });
  let t = performance.now();
  await col.ingest(records, {
    mapping: { id: 'id', embed: '{title_en} | {title_zh} | {title_es} | {brand} | {category}', rerank: '{title_en}\n{title_zh}\n{title_es}\n{brand}; {category}; {price}', numeric: ['price', 'popularity'] },
  });
  const ingestS = (performance.now() - t) / 1000;
  const queries = await readQueries(dataset);
  const runs = {};
  for (const pass of ['cold', 'cached']) {
    const stages = { embedMs: [], recallMs: [], fetchMs: [], rerankMs: [], totalMs: [] };
    for (const q of queries) {
      const r = await se.search('shop', q.text, { recallK: Number(opt['recall-k']), topN: 10 });
      for (const k of Object.keys(stages)) stages[k].push(r.timings[k]);
    }
    runs[pass] = Object.fromEntries(Object.entries(stages).map(([k, xs]) => [k, { p50: pct(xs, 0.5), p99: pct(xs, 0.99) }]));
    console.log(pass, Object.entries(runs[pass]).map(([k, v]) => `${k} p50 ${v.p50.toFixed(1)} p99 ${v.p99.toFixed(1)}`).join(', '));
  }
  const report = {
    date: new Date().toISOString(),
    command: `node bench/search-bench.mjs ${process.argv.slice(2).join(' ')}`.trim(),
    models: { embedder: em.info.description, reranker: rr.info.description, synthetic: em.info.synthetic || rr.info.synthetic },
    products: records.length, queries: queries.length, recall_k: Number(opt['recall-k']), top_n: 10, threads,
    ingest_s: ingestS, stages_ms: runs, cache: se.cacheStats(),
  };
  mkdirSync(join(root, 'bench', 'results'), { recursive: true });
  const file = join(root, 'bench', 'results', `search-${report.date.slice(0, 10)}.json`);
  writeFileSync(file, JSON.stringify(report, null, 2) + '\n');
  console.log(`ingest ${ingestS.toFixed(1)} s; wrote ${file}`);
  await se.close();
} finally {
  rmSync(dir, { recursive: true, force: true });
  await Promise.all([em.close(), rr.close()]);
}
