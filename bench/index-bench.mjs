#!/usr/bin/env node
// Vector recall benchmark: flat (exact) and HNSW at N vectors of 1024 dimensions (random unit
// vectors, seeded), in one run. Reports build time, single-query latency p50/p99, queries/s for
// single queries issued concurrently and for one batched call, recall@10 of HNSW against flat, and
// peak RSS. Writes bench/results/index-<date>.json.
//
//   node bench/index-bench.mjs [--sizes 100000,1000000] [--dim 1024] [--queries 200] [--m 32]
//                              [--ef-construction 64] [--ef-search 64,256,1024] [--hnsw-max 100000]
// HNSW is built only up to --hnsw-max vectors: with Debian's FAISS (SSE-only distance kernels) on
// 2 cores it inserts ~250 vectors/s at 1024 dimensions with M 16, efC 40 (over an hour for 1M) and
// ~1400/s with M 8, efC 16 (12 minutes for 1M: the row in bench/RESULTS.md).
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const { VectorIndex } = require(join(root, 'dist', 'index.js'));
const { values: opt } = parseArgs({
  options: {
    sizes: { type: 'string', default: '100000,1000000' },
    dim: { type: 'string', default: '1024' },
    queries: { type: 'string', default: '200' },
    m: { type: 'string', default: '32' },
    'ef-construction': { type: 'string', default: '64' },
    'ef-search': { type: 'string', default: '64,256,1024' },
    'hnsw-max': { type: 'string', default: '100000' },
    out: { type: 'string', default: '' },
  },
});
const dim = Number(opt.dim);

function unitVectors(n, seed) {
  let s = seed >>> 0;
  const out = new Float32Array(n * dim);
  for (let i = 0; i < n; i++) {
    let norm = 0;
    for (let j = 0; j < dim; j++) {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      const v = s / 4294967296 - 0.5;
      out[i * dim + j] = v;
      norm += v * v;
    }
    const inv = 1 / Math.sqrt(norm);
    for (let j = 0; j < dim; j++) out[i * dim + j] *= inv;
  }
  return out;
}

const pct = (xs, q) => xs.slice().sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))];
const rssMb = () => process.memoryUsage().rss / 2 ** 20;

async function measure(ix, queries, nq, efSearch) {
  const o = efSearch ? { efSearch } : {};
  const lat = [];
  for (let i = 0; i < nq; i++) {
    const t = performance.now();
    await ix.search(queries.subarray(i * dim, (i + 1) * dim), 10, o);
    lat.push(performance.now() - t);
  }
  let t = performance.now();
  await Promise.all(Array.from({ length: nq }, (_, i) => ix.search(queries.subarray(i * dim, (i + 1) * dim), 10, o)));
  const concurrentQps = nq / ((performance.now() - t) / 1000);
  t = performance.now();
  const batched = await ix.search(queries, 10, o);
  const batchQps = nq / ((performance.now() - t) / 1000);
  return { latency_ms_p50: pct(lat, 0.5), latency_ms_p99: pct(lat, 0.99), qps_concurrent_single: concurrentQps, qps_batched: batchQps, results: batched };
}

async function main() {
  const rows = [];
  const nq = Number(opt.queries);
  const queries = unitVectors(nq, 7);
  for (const n of opt.sizes.split(',').map(Number)) {
    console.error(`bench: ${n} x ${dim} random unit vectors`);
    const data = unitVectors(n, 1);
    const ids = BigInt64Array.from({ length: n }, (_, i) => BigInt(i));
    const flat = VectorIndex.create({ dim, kind: 'flat' });
    let t = performance.now();
    await flat.add(ids, data);
    const flatBuild = (performance.now() - t) / 1000;
    const f = await measure(flat, queries, nq);
    if (n > Number(opt['hnsw-max'])) {
      const row = { vectors: n, dim, flat: { build_s: flatBuild, ...strip(f) }, hnsw: 'not built (over --hnsw-max)', rss_mb: rssMb() };
      rows.push(row);
      console.log(JSON.stringify(row));
      continue;
    }
    const hnsw = VectorIndex.create({ dim, kind: 'hnsw', m: Number(opt.m), efConstruction: Number(opt['ef-construction']) });
    t = performance.now();
    const chunk = 50_000; // progress, and the same total work as one add
    for (let i = 0; i < n; i += chunk) {
      await hnsw.add(ids.subarray(i, Math.min(n, i + chunk)), data.subarray(i * dim, Math.min(n, i + chunk) * dim));
      console.error(`  hnsw ${Math.min(n, i + chunk)}/${n} after ${((performance.now() - t) / 1000).toFixed(0)} s`);
    }
    const hnswBuild = (performance.now() - t) / 1000;
    // efSearch trades latency for recall: one row per setting, recall@10 against the exact top 10
    const sweep = [];
    for (const ef of opt['ef-search'].split(',').map(Number)) {
      const h = await measure(hnsw, queries, nq, ef);
      let found = 0;
      f.results.forEach((exact, qi) => {
        const truth = new Set(exact.ids);
        for (const id of h.results[qi].ids) if (truth.has(id)) found++;
      });
      sweep.push({ ef_search: ef, recall_at_10_vs_flat: found / (10 * nq), ...strip(h) });
    }
    const row = {
      vectors: n, dim,
      flat: { build_s: flatBuild, ...strip(f) },
      hnsw: { m: Number(opt.m), ef_construction: Number(opt['ef-construction']), build_s: hnswBuild, by_ef_search: sweep },
      rss_mb: rssMb(),
    };
    rows.push(row);
    console.log(JSON.stringify(row));
  }
  const report = { date: new Date().toISOString(), machine: { cores: cpus().length, cpu: cpus()[0]?.model }, command: `node bench/index-bench.mjs ${process.argv.slice(2).join(' ')}`.trim(), rows };
  mkdirSync(join(root, 'bench', 'results'), { recursive: true });
  const file = join(root, 'bench', 'results', opt.out || `index-${report.date.slice(0, 10)}.json`);
  writeFileSync(file, JSON.stringify(report, null, 2) + '\n');
  console.error(`bench: wrote ${file}`);
}

function strip({ results, ...rest }) {
  return rest;
}

main();
