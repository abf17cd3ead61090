#!/usr/bin/env node
// The store benchmark (issue 14): the embedded store (SQLite + qrank's HNSW) and the Postgres store
// (pgvector's HNSW in PGlite, served over the wire protocol by pglite-socket, reached through `pg`)
// on the same generated catalog in one run, through the Store interface (lib/search/store.ts) that
// the search engine uses: ingestion (products/s, in batches of --batch, vectors given), vector recall
// latency (p50/p99, one query at a time), QPS with --concurrency queries in flight, and recall@10
// against exact neighbours computed here. Vectors: clustered unit vectors (--clusters centres,
// Gaussian spread, as in the recall benchmark's embedding-like data), --dim dimensions.
// PGlite is one Postgres process in WebAssembly, one query at a time: the figures show qrank's code
// path on Postgres, not what a Postgres server on the same machine does (faster, and concurrent).
//
//   node bench/store-bench.mjs [--n 100000] [--dim 128] [--queries 200] [--concurrency 8] [--batch 500] [--out store-100k]
// Build first (npx tsc -p tsconfig.build.json); writes bench/results/<out>.json.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createRequire } from 'node:module';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const { EmbeddedStore } = require(join(root, 'dist', 'search', 'embedded-store.js'));
const { PostgresStore } = require(join(root, 'dist', 'search', 'pg-store.js'));
const { parseMapping, toProduct } = require(join(root, 'dist', 'search', 'mapping.js'));

const { values: opt } = parseArgs({
  options: {
    n: { type: 'string', default: '100000' },
    dim: { type: 'string', default: '128' },
    queries: { type: 'string', default: '200' },
    concurrency: { type: 'string', default: '8' },
    batch: { type: 'string', default: '500' },
    clusters: { type: 'string', default: '100' },
    out: { type: 'string', default: '' },
  },
});
const N = Number(opt.n);
const DIM = Number(opt.dim);
const Q = Number(opt.queries);
const CONCURRENCY = Number(opt.concurrency);
const BATCH = Number(opt.batch);
const K = 10;

// deterministic data: xorshift + Box-Muller
let seed = 12345;
const rand = () => {
  seed ^= seed << 13;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  return (seed >>> 0) / 4294967296;
};
const gauss = () => Math.sqrt(-2 * Math.log(rand() + 1e-12)) * Math.cos(2 * Math.PI * rand());
const normalise = (v) => {
  let s = 0;
  for (const x of v) s += x * x;
  const r = 1 / Math.sqrt(s);
  for (let i = 0; i < v.length; i++) v[i] *= r;
  return v;
};
const centres = Array.from({ length: Number(opt.clusters) }, () => normalise(Float32Array.from({ length: DIM }, gauss)));
const near = (c, spread) => normalise(Float32Array.from(c, (x) => x + spread * gauss()));
const vectors = Array.from({ length: N }, () => near(centres[Math.floor(rand() * centres.length)], 0.08));
const queries = Array.from({ length: Q }, () => near(vectors[Math.floor(rand() * N)], 0.05));

const mapping = parseMapping({ id: 'sku', embed: '{title}', rerank: '{title}', keyword: false, numeric: ['price'] });
const product = (i) => toProduct({ sku: `sku-${i}`, title: `product ${i}`, category: `c${i % 20}`, price: i % 1000 }, mapping);

// exact neighbours (vid = i + 1 in both stores: rows are written in order into fresh tables)
function exact(q) {
  const scores = new Float32Array(N);
  for (let i = 0; i < N; i++) {
    const v = vectors[i];
    let s = 0;
    for (let d = 0; d < DIM; d++) s += v[d] * q[d];
    scores[i] = s;
  }
  return [...scores.keys()].sort((a, b) => scores[b] - scores[a]).slice(0, K).map((i) => i + 1);
}

const percentile = (xs, p) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))];

async function measure(name, store) {
  const col = await store.open('bench');
  await col.prepare({ index: { kind: 'hnsw', m: 16, efConstruction: 128, efSearch: 64 }, dim: DIM, reset: false });
  const t0 = performance.now();
  for (let at = 0; at < N; at += BATCH) {
    const items = [];
    for (let i = at; i < Math.min(N, at + BATCH); i++) items.push({ product: product(i), vectors: [vectors[i]] });
    await col.write(items);
    if ((at / BATCH) % 20 === 0) process.stderr.write(`${name}: ${at + items.length}/${N}\r`);
  }
  const ingestS = (performance.now() - t0) / 1000;
  process.stderr.write(`${name}: ingested ${N} in ${ingestS.toFixed(1)} s\n`);
  const latencies = [];
  let hits = 0;
  for (let i = 0; i < Q; i++) {
    const t = performance.now();
    const found = await col.recall(queries[i], K, 1);
    latencies.push(performance.now() - t);
    const truth = new Set(truths[i]);
    hits += found.filter((h) => truth.has(h.vid)).length;
  }
  const filtered = [];
  for (let i = 0; i < Math.min(Q, 50); i++) {
    const t = performance.now();
    await col.recall(queries[i], K, 1, [{ field: 'category', op: '=', values: ['c7'] }]);
    filtered.push(performance.now() - t);
  }
  let next = 0;
  const tq = performance.now();
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (next < Q) await col.recall(queries[next++], K, 1);
  }));
  const qps = Q / ((performance.now() - tq) / 1000);
  await col.close();
  return {
    store: name,
    ingestProductsPerS: N / ingestS,
    ingestS,
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
    qps,
    concurrency: CONCURRENCY,
    recallAt10: hits / (Q * K),
    filteredP50Ms: percentile(filtered, 50),
    filter: 'category = c7 (5% of products)',
  };
}

process.stderr.write(`exact neighbours of ${Q} queries over ${N} x ${DIM}\n`);
const truths = queries.map(exact);
const dir = mkdtempSync(join(tmpdir(), 'qrank-store-bench-'));
const results = [];
try {
  results.push(await measure('embedded (SQLite + qrank HNSW)', new EmbeddedStore(join(dir, 'data'))));
  const server = spawn(process.execPath, [join(root, 'test', 'setup', 'pglite-server.mjs'), '0'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise((ok) => server.stdout.on('data', (c) => /listening (\d+)/.test(String(c)) && ok(/listening (\d+)/.exec(String(c))[1])));
  const pg = await PostgresStore.connect(`postgres://postgres@127.0.0.1:${port}/postgres`);
  try {
    results.push(await measure('postgres (PGlite 0.5 + pgvector 0.8 HNSW, over the wire)', pg));
  } finally {
    await pg.close();
    server.kill('SIGTERM');
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
const report = {
  date: new Date().toISOString(),
  machine: { cpus: cpus().length, model: cpus()[0]?.model },
  data: { n: N, dim: DIM, queries: Q, clusters: Number(opt.clusters), k: K, hnsw: { m: 16, efConstruction: 128, efSearch: 64 } },
  note: 'PGlite is a single-process Postgres in WebAssembly serving one query at a time: these figures show the code path; a Postgres server is faster and serves queries concurrently',
  results,
};
const out = join(root, 'bench', 'results', `${opt.out || `store-${N >= 1e6 ? `${N / 1e6}m` : `${N / 1e3}k`}`}.json`);
writeFileSync(out, JSON.stringify(report, null, 2) + '\n');
console.log(JSON.stringify(report, null, 2));
console.log(`written to ${out}`);
