// The vector index's storage kinds (f32, f16, i8) for flat and HNSW, filters at each selectivity,
// save/load of each, the first file format, hostile input and writes beside searches. Data: a small
// clustered set (the benchmark's shape, bench/ann_data.h, at 64 dimensions), so that recall means
// something; thresholds leave room for the approximate kinds and say what they measure.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { VectorIndex } from '../lib/index';
import type { IndexOptions, VectorStorage } from '../lib/index';
import { rejectsWithCode, throwsWithCode } from './helpers';

const dir = mkdtempSync(join(tmpdir(), 'qrank-storage-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const DIM = 64;
const N = 3000;

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

function gaussian(r: () => number): number {
  return Math.sqrt(-2 * Math.log(r() || 1e-12)) * Math.cos(2 * Math.PI * r());
}

/** Unit vectors around 30 centres in an 8-dimensional subspace, plus a little noise. */
function clustered(n: number, seed: number): Float32Array {
  const r = rng(7); // the same centres and subspace for data and queries
  const basis = Array.from({ length: 8 }, () => Array.from({ length: DIM }, () => gaussian(r)));
  const centres = Array.from({ length: 30 }, () => Array.from({ length: 8 }, () => gaussian(r)));
  const p = rng(seed);
  const out = new Float32Array(n * DIM);
  for (let i = 0; i < n; i++) {
    const c = centres[Math.floor(p() * centres.length)];
    const z = c.map((v) => v + 0.3 * gaussian(p));
    let norm = 0;
    for (let j = 0; j < DIM; j++) {
      let v = 0.05 * gaussian(p);
      for (let t = 0; t < 8; t++) v += z[t] * basis[t][j];
      out[i * DIM + j] = v;
      norm += v * v;
    }
    for (let j = 0; j < DIM; j++) out[i * DIM + j] /= Math.sqrt(norm);
  }
  return out;
}

const data = clustered(N, 1);
const queries = clustered(40, 2);
const ids = Array.from({ length: N }, (_, i) => BigInt(5000 + i));
const row = (x: Float32Array, i: number) => x.subarray(i * DIM, (i + 1) * DIM);

function exact(q: Float32Array, k: number, allow?: Set<bigint>): bigint[] {
  const scored: { id: bigint; s: number }[] = [];
  for (let i = 0; i < N; i++) {
    if (allow && !allow.has(ids[i])) continue;
    let s = 0;
    for (let j = 0; j < DIM; j++) s += q[j] * data[i * DIM + j];
    scored.push({ id: ids[i], s });
  }
  return scored.sort((a, b) => b.s - a.s).slice(0, k).map((e) => e.id);
}

function recall(hits: { ids: BigInt64Array }[], k: number, allow?: Set<bigint>): number {
  let found = 0, wanted = 0;
  hits.forEach((h, qi) => {
    const truth = exact(row(queries, qi), k, allow);
    wanted += truth.length;
    const got = new Set(h.ids);
    for (const id of truth) if (got.has(id)) found++;
  });
  return found / wanted;
}

async function filled(options: Partial<IndexOptions>): Promise<VectorIndex> {
  const ix = VectorIndex.create({ dim: DIM, ...options });
  await ix.add(BigInt64Array.from(ids), data);
  return ix;
}

const STORAGES: VectorStorage[] = ['f32', 'f16', 'i8'];
// recall@10 the stored form allows at least (flat: the quantisation alone; hnsw: quantisation and graph)
const FLOOR: Record<VectorStorage, number> = { f32: 1, f16: 0.99, i8: 0.9 };

describe.each(STORAGES)('storage %s', (storage) => {
  it('flat: exact up to the stored precision, scores close to the true inner products', async () => {
    const ix = await filled({ kind: 'flat', storage });
    expect(ix.spec.storage).toBe(storage);
    const hits = await ix.search(queries, 10);
    expect(recall(hits, 10)).toBeGreaterThanOrEqual(FLOOR[storage]);
    const [self] = await ix.search(row(data, 11), 1);
    expect(self.ids[0]).toBe(ids[11]);
    expect(self.scores[0]).toBeCloseTo(1, storage === 'i8' ? 1 : 2);
  });

  it('hnsw: recall@10 against exact search, and efSearch per call', async () => {
    const ix = await filled({ kind: 'hnsw', storage, m: 16, efConstruction: 64 });
    const narrow = recall(await ix.search(queries, 10, { efSearch: 10 }), 10);
    const wide = recall(await ix.search(queries, 10, { efSearch: 256 }), 10);
    expect(wide).toBeGreaterThanOrEqual(FLOOR[storage] - 0.02);
    expect(wide).toBeGreaterThanOrEqual(narrow);
    expect(ix.spec.efSearch).toBe(64); // a per-call efSearch leaves the index's own alone
  });

  it('hnsw: a k or efSearch that covers the whole index scans exactly (every vector, as flat ranks them)', async () => {
    const hnsw = await filled({ kind: 'hnsw', storage });
    const flat = await filled({ kind: 'flat', storage });
    // scores, not ids, are compared: i8 has ties, and the two kinds order tied vectors by their slots
    const [all] = await hnsw.search(row(queries, 0), N); // a graph walk misses the nodes it cannot reach
    expect(new Set(all.ids).size).toBe(N);
    expect(Array.from(all.scores)).toEqual(Array.from((await flat.search(row(queries, 0), N))[0].scores));
    const wide = await hnsw.search(queries, 10, { efSearch: N });
    expect(wide.map((h) => Array.from(h.scores))).toEqual((await flat.search(queries, 10)).map((h) => Array.from(h.scores)));
  });

  it.each([0.001, 0.01, 0.1])('filters of selectivity %f return the k best allowed (flat and hnsw)', async (selectivity) => {
    const allowList = ids.filter((_, i) => (i * 2654435761) % 1000 < selectivity * 1000);
    const allow = new Set(allowList);
    for (const kind of ['flat', 'hnsw'] as const) {
      const ix = await filled({ kind, storage });
      const hits = await ix.search(queries, 10, { filter: allowList });
      for (const h of hits) {
        expect(h.ids.length).toBe(Math.min(10, allowList.length));
        for (const id of h.ids) expect(allow.has(id)).toBe(true);
      }
      // selective filters are scanned exactly; 10% (300 here) too: below the walk's break-even
      expect(recall(hits, 10, allow)).toBeGreaterThanOrEqual(FLOOR[storage]);
    }
  });

  it('saves and loads flat and hnsw with identical results (removals and the i8 scale kept)', async () => {
    for (const kind of ['flat', 'hnsw'] as const) {
      const ix = await filled({ kind, storage });
      await ix.remove([ids[0], ids[1]]);
      const path = join(dir, `${kind}-${storage}.qrix`);
      await ix.save(path);
      const back = await VectorIndex.load(path);
      expect(back.spec).toEqual(ix.spec);
      expect(back.size).toBe(N - 2);
      const a = await ix.search(queries, 10);
      const b = await back.search(queries, 10);
      expect(b.map((h) => Array.from(h.ids))).toEqual(a.map((h) => Array.from(h.ids)));
      expect(b.map((h) => Array.from(h.scores))).toEqual(a.map((h) => Array.from(h.scores)));
      await rejectsWithCode(back.remove([ids[0]]), 'INVALID_INPUT');
      await back.add([ids[0]], row(data, 0)); // a removed slot is reused
      expect(back.size).toBe(N - 1);
      const [self] = await back.search(row(data, 0), 1);
      expect(self.ids[0]).toBe(ids[0]);
    }
  });
});

describe('storage options', () => {
  it('f16 and i8 are for flat and hnsw; i8 learns its scale on the first vectors', async () => {
    throwsWithCode(() => VectorIndex.create({ dim: DIM, kind: 'ivf', storage: 'f16' }), 'INVALID_INPUT');
    throwsWithCode(() => VectorIndex.create({ dim: DIM, storage: 'f8' as never }), 'INVALID_INPUT');
    const ix = VectorIndex.create({ dim: DIM, kind: 'hnsw', storage: 'i8' });
    expect(ix.trained).toBe(false);
    await ix.train(data.subarray(0, 100 * DIM));
    expect(ix.trained).toBe(true);
    await ix.add(BigInt64Array.from(ids), data);
    expect(recall(await ix.search(queries, 10, { efSearch: 128 }), 10)).toBeGreaterThan(0.85);
  });

  it('device cuda needs the CUDA build, for create and load alike', async () => {
    throwsWithCode(() => VectorIndex.create({ dim: DIM, device: 'cuda' }), 'UNSUPPORTED');
    const path = join(dir, 'for-cuda.qrix');
    await (await filled({ kind: 'flat', storage: 'f16' })).save(path);
    await rejectsWithCode(VectorIndex.load(path, { device: 'cuda' }), 'UNSUPPORTED');
    await rejectsWithCode(VectorIndex.load(path, { device: 'gpu' as never }), 'INVALID_INPUT');
    expect((await VectorIndex.load(path, { device: 'cpu' })).size).toBe(N);
  });
});

describe('the first file format (FAISS flat, HNSW and IVF files of earlier qrank versions)', () => {
  const fixture = JSON.parse(readFileSync(join(__dirname, 'fixtures', 'index-v1-vectors.json'), 'utf8')) as {
    dim: number; ids: string[]; removed: string[]; vectors: number[];
  };
  const x = Float32Array.from(fixture.vectors);
  it.each(['flat', 'hnsw', 'ivf'])('%s loads with its ids, removals and vectors', async (kind) => {
    const ix = await VectorIndex.load(join(__dirname, 'fixtures', `index-v1-${kind}.qrix`));
    expect(ix.spec.kind).toBe(kind);
    expect(ix.size).toBe(fixture.ids.length - fixture.removed.length);
    const held = new Set(Array.from(ix.ids(), String));
    for (const id of fixture.removed) expect(held.has(id)).toBe(false);
    const [self] = await ix.search(x.subarray(5 * fixture.dim, 6 * fixture.dim), 1, { nprobe: 4 });
    expect(String(self.ids[0])).toBe(fixture.ids[5]);
    const path = join(dir, `migrated-${kind}.qrix`);
    await ix.save(path); // written again in the current format
    expect((await VectorIndex.load(path)).size).toBe(ix.size);
  });
});

describe('hostile input', () => {
  it('refuses NaN, wrong dimensions, huge k x queries and duplicates with stable codes', async () => {
    const ix = await filled({ kind: 'hnsw', storage: 'f16' });
    const nan = new Float32Array(DIM).fill(0.1);
    nan[5] = NaN;
    await rejectsWithCode(ix.search(nan, 3), 'INVALID_INPUT');
    await rejectsWithCode(ix.add([1], nan), 'INVALID_INPUT');
    await rejectsWithCode(ix.search(new Float32Array(DIM + 3), 3), 'INVALID_INPUT');
    await rejectsWithCode(ix.add([ids[0]], row(data, 0)), 'INVALID_INPUT');
    await rejectsWithCode(ix.add([7n, 7n], data.subarray(0, 2 * DIM)), 'INVALID_INPUT');
    // k up to 100000 is fine (fewer results exist); queries x k past the per-call bound is refused
    const [all] = await ix.search(row(queries, 0), 100_000);
    expect(all.ids.length).toBe(N);
    await rejectsWithCode(ix.search(new Float32Array(200 * DIM).fill(0.1), 100_000), 'INVALID_INPUT');
    expect(ix.size).toBe(N);
  });

  it('survives adds, removes, searches and saves all in flight together', async () => {
    const ix = await filled({ kind: 'hnsw', storage: 'f32' });
    const more = clustered(2000, 9);
    const path = join(dir, 'busy.qrix');
    const work: Promise<unknown>[] = [];
    for (let b = 0; b < 4; b++) {
      work.push(ix.add(BigInt64Array.from({ length: 500 }, (_, i) => BigInt(b * 500 + i)), more.subarray(b * 500 * DIM, (b + 1) * 500 * DIM)));
      work.push(ix.remove([ids[b]]));
      work.push(ix.save(path));
      for (let s = 0; s < 5; s++) work.push(ix.search(queries, 10, { efSearch: 32 + s * 16, filter: s % 2 ? ids.slice(0, 50) : undefined }));
    }
    const sizes: number[] = [];
    const timer = setInterval(() => sizes.push(ix.size, ix.ids().length), 0);
    await Promise.all(work);
    clearInterval(timer);
    expect(ix.size).toBe(N + 2000 - 4);
    for (const s of sizes) expect(s).toBeLessThanOrEqual(N + 2000);
    const back = await VectorIndex.load(path);
    expect(back.size).toBeGreaterThanOrEqual(N - 4);
  });

  it('size, ids and trained answer while an add runs on the pool', async () => {
    const ix = VectorIndex.create({ dim: DIM, kind: 'hnsw', efConstruction: 200 });
    const big = clustered(20000, 3);
    const adding = ix.add(BigInt64Array.from({ length: 20000 }, (_, i) => BigInt(i)), big);
    await new Promise((r) => setTimeout(r, 20)); // the add is on the pool now
    const t = performance.now();
    const answers = [ix.size, ix.trained, ix.ids().length];
    const took = performance.now() - t;
    await adding;
    expect(answers[0]).toBe(0); // ids become visible when the add publishes them, all at once
    expect(answers[1]).toBe(true);
    expect(took).toBeLessThan(50); // the add takes seconds; these never wait for it
    expect(ix.size).toBe(20000);
  });
});
