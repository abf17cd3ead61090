#!/usr/bin/env node
// VectorIndex with device: 'cuda' through the Node API, on the GPU machine (scripts/gpu-check.sh's
// vector-api step, with the carried addon and dist/): the GPU index against the CPU index of the same
// spec on the same data, for flat f16, flat f32 and ivf, inner product and L2:
//   - the same ids (recall@10 of the CPU's results >= 0.99: f16 and f32 sums differ in order only) and
//     scores within 1e-3;
//   - concurrent searches (batched into one GPU search) answer as one at a time;
//   - filters (with unknown ids in them), k larger than the index, adds, removes, searches and saves
//     all in flight together; a saved cuda index loads on the CPU (and back) with the same answers;
//   - NaN, wrong dimensions and queries x k past the bound are INVALID_INPUT; hnsw and i8 UNSUPPORTED.
// Prints "PASS name" / "FAIL name: why" per check and "PASS: N checks" or "FAIL: ..." last; exit 1 on failure.
//   node scripts/gpu-vector-api.mjs --dist DIR [--n 20000] [--dim 256] [--device cpu (a dry run of the script itself)]
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';

const { values: opt } = parseArgs({ options: { dist: { type: 'string' }, n: { type: 'string', default: '20000' }, dim: { type: 'string', default: '256' }, device: { type: 'string', default: 'cuda' } } });
const { VectorIndex } = createRequire(import.meta.url)(resolve(opt.dist, 'index.js'));
const N = Number(opt.n), DIM = Number(opt.dim), NQ = 64, K = 10;
const dir = mkdtempSync(join(tmpdir(), 'qrank-gpu-vector-'));
let checks = 0, failures = 0;
const check = (ok, name, why = '') => {
  checks++;
  if (!ok) failures++;
  console.log(ok ? `PASS ${name}` : `FAIL ${name}: ${why}`);
};
const code = (p) => p.then(() => 'none', (e) => e.code);

function rows(n, seed) {  // clustered unit vectors: neighbours exist
  let s = seed >>> 0;
  const r = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
  const x = new Float32Array(n * DIM);
  for (let i = 0; i < n; i++) {
    const c = Math.floor(r() * 50);
    let norm = 0;
    for (let j = 0; j < DIM; j++) {
      const v = Math.sin(c * 7.1 + j * 0.37) + 0.3 * (r() - 0.5);
      x[i * DIM + j] = v;
      norm += v * v;
    }
    for (let j = 0; j < DIM; j++) x[i * DIM + j] /= Math.sqrt(norm);
  }
  return x;
}
const data = rows(N, 1), queries = rows(NQ, 2);
const ids = BigInt64Array.from({ length: N }, (_, i) => BigInt(1000 + i));

function compare(name, gpu, cpu, scoreTol = 1e-3) {
  let found = 0, wanted = 0, worst = 0;
  gpu.forEach((h, q) => {
    const got = new Set(h.ids);
    for (const id of cpu[q].ids) if (id >= 0n) { wanted++; if (got.has(id)) found++; }
    h.ids.forEach((id, i) => { if (id >= 0n && cpu[q].ids[i] === id) worst = Math.max(worst, Math.abs(h.scores[i] - cpu[q].scores[i])); });
  });
  const recall = wanted ? found / wanted : 1;
  check(recall >= 0.99 && worst <= scoreTol, name, `recall ${recall.toFixed(4)}, worst score difference ${worst.toExponential(2)}`);
}

async function pair(spec) {
  const gpu = VectorIndex.create({ dim: DIM, ...spec, device: opt.device });
  const cpu = VectorIndex.create({ dim: DIM, ...spec });
  for (const ix of [gpu, cpu]) {
    if (spec.kind === 'ivf') await ix.train(data.subarray(0, 8000 * DIM));
    await ix.add(ids, data);
  }
  return { gpu, cpu };
}

async function main() {
  for (const spec of [{ kind: 'flat', storage: 'f16' }, { kind: 'flat', storage: 'f32' }, { kind: 'flat', storage: 'f16', metric: 'l2' },
    { kind: 'ivf', nlist: 64, nprobe: 8 }, { kind: 'ivf', nlist: 64, nprobe: 8, metric: 'l2' }]) {
    const name = `${spec.kind} ${spec.storage ?? 'f32'} ${spec.metric ?? 'ip'}`;
    const { gpu, cpu } = await pair(spec);
    check(gpu.spec.device === opt.device && gpu.size === N, `${name}: created on ${opt.device}`, JSON.stringify(gpu.spec));
    const one = await gpu.search(queries, K);
    compare(`${name}: the CPU index's results`, one, await cpu.search(queries, K));
    const apart = await Promise.all(Array.from({ length: NQ }, (_, q) => gpu.search(queries.subarray(q * DIM, (q + 1) * DIM), K)));
    check(apart.every(([h], q) => h.ids.join() === one[q].ids.join()), `${name}: ${NQ} concurrent searches answer as one batch`);
    const filter = [...ids.subarray(0, 200), 5n, 99999999n];  // unknown ids are ignored
    if (spec.kind === 'flat') compare(`${name}: filtered`, await gpu.search(queries, K, { filter }), await cpu.search(queries, K, { filter }));
    const [all] = await gpu.search(queries.subarray(0, DIM), N + 10);
    const held = all.ids.filter((id) => id >= 0n).length;
    check(spec.kind === 'ivf' ? held > 0 && held <= N : held === N, `${name}: k past the index size`, `${held} results`);
    // writes and searches in flight together, then the same answers as the CPU index given the same writes
    const extra = rows(500, 3), extraIds = BigInt64Array.from({ length: 500 }, (_, i) => BigInt(900000 + i));
    const path = join(dir, `${spec.kind}-${spec.storage ?? 'f32'}-${spec.metric ?? 'ip'}.qrix`);
    await Promise.all([gpu.add(extraIds, extra), gpu.remove(ids.subarray(0, 100)), gpu.search(queries, K), gpu.save(path), gpu.search(queries, K, { filter })]);
    await cpu.add(extraIds, extra);
    await cpu.remove(ids.subarray(0, 100));
    check(gpu.size === N + 400, `${name}: adds and removes beside searches and a save`, `size ${gpu.size}`);
    const after = await gpu.search(queries, K);
    compare(`${name}: after the writes`, after, await cpu.search(queries, K));
    await gpu.save(path);
    const onCpu = await VectorIndex.load(path);
    const back = await VectorIndex.load(path, { device: opt.device });
    compare(`${name}: saved from the GPU, loaded on the CPU`, await onCpu.search(queries, K), after);
    compare(`${name}: loaded back on the GPU`, await back.search(queries, K), after);
    const nan = new Float32Array(DIM).fill(0.1);
    nan[3] = NaN;
    check(await code(gpu.search(nan, K)) === 'INVALID_INPUT' && await code(gpu.search(new Float32Array(DIM + 1), K)) === 'INVALID_INPUT' &&
      await code(gpu.search(new Float32Array(300 * DIM).fill(0.1), 100_000)) === 'INVALID_INPUT', `${name}: bad queries are INVALID_INPUT`);
  }
  if (opt.device !== 'cuda') return;
  const unsupported = [{ kind: 'hnsw' }, { kind: 'flat', storage: 'i8' }, { kind: 'ivfpq' }].map((s) => {
    try { VectorIndex.create({ dim: DIM, ...s, device: 'cuda' }); return 'none'; } catch (e) { return e.code; }
  });
  check(unsupported.every((c) => c === 'UNSUPPORTED'), 'hnsw, i8 and ivfpq on the GPU are UNSUPPORTED', unsupported.join());
}

main().then(
  () => { console.log(failures ? `FAIL: ${failures} of ${checks} checks failed` : `PASS: ${checks} checks`); rmSync(dir, { recursive: true, force: true }); process.exit(failures ? 1 : 0); },
  (e) => { console.log(`FAIL: ${e.code ?? ''} ${e.stack}`); process.exit(1); },
);
