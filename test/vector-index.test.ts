import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { VectorIndex } from '../lib/index';
import type { IndexKind } from '../lib/index';
import { rejectsWithCode, throwsWithCode } from './helpers';
import { binding } from '../lib/native';

const dir = mkdtempSync(join(tmpdir(), 'qrank-index-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const DIM = 32;

/** Deterministic unit vectors (embeddings are unit length; inner product = cosine). */
function unitVectors(n: number, seed: number, dim = DIM): Float32Array {
  let s = seed >>> 0;
  const rand = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32 - 0.5;
  };
  const out = new Float32Array(n * dim);
  for (let i = 0; i < n; i++) {
    let norm = 0;
    for (let j = 0; j < dim; j++) norm += (out[i * dim + j] = rand()) ** 2;
    for (let j = 0; j < dim; j++) out[i * dim + j] /= Math.sqrt(norm);
  }
  return out;
}

function bruteForce(data: Float32Array, ids: bigint[], q: Float32Array, k: number, allow?: Set<bigint>): bigint[] {
  const scored = ids
    .map((id, i) => ({ id, s: q.reduce((acc, x, j) => acc + x * data[i * DIM + j], 0) }))
    .filter((e) => !allow || allow.has(e.id));
  return scored.sort((a, b) => b.s - a.s).slice(0, k).map((e) => e.id);
}

const N = 2000;
const data = unitVectors(N, 11);
const ids = Array.from({ length: N }, (_, i) => BigInt(10_000 + i));
const queries = unitVectors(20, 99);
const row = (x: Float32Array, i: number) => x.subarray(i * DIM, (i + 1) * DIM);

async function filled(kind: IndexKind, extra: object = {}): Promise<VectorIndex> {
  const ix = VectorIndex.create({ dim: DIM, kind, ...extra });
  await ix.add(BigInt64Array.from(ids), data);
  return ix;
}

function recallAt10(hits: { ids: BigInt64Array }[]): number {
  let found = 0;
  hits.forEach((h, qi) => {
    const truth = new Set(bruteForce(data, ids, row(queries, qi), 10));
    for (const id of h.ids) if (truth.has(id)) found++;
  });
  return found / (10 * hits.length);
}

describe('VectorIndex kinds', () => {
  it('flat is exact', async () => {
    const ix = await filled('flat');
    expect(ix.size).toBe(N);
    const hits = await ix.search(queries, 10);
    hits.forEach((h, qi) => expect(Array.from(h.ids)).toEqual(bruteForce(data, ids, row(queries, qi), 10)));
    for (let i = 1; i < 10; i++) expect(hits[0].scores[i - 1]).toBeGreaterThanOrEqual(hits[0].scores[i]);
    const [self] = await ix.search(row(data, 7), 1);
    expect(self.ids[0]).toBe(ids[7]);
    expect(self.scores[0]).toBeCloseTo(1, 5);
  });

  it('hnsw recalls at least 95% of the exact top 10, and efSearch per search takes effect', async () => {
    const ix = await filled('hnsw', { m: 16, efSearch: 64, efConstruction: 40 });
    expect(recallAt10(await ix.search(queries, 10))).toBeGreaterThanOrEqual(0.95);
    // a narrow search breadth must find less than a wide one (FAISS 1.7.3 ignores the per-search
    // parameter; the index sets its own field for the duration of the call)
    const narrow = recallAt10(await ix.search(queries, 10, { efSearch: 10 }));
    const wide = recallAt10(await ix.search(queries, 10, { efSearch: 512 }));
    expect(wide).toBeGreaterThan(narrow);
    expect(wide).toBeGreaterThanOrEqual(0.99);
    // and the default comes back afterwards
    expect(recallAt10(await ix.search(queries, 10))).toBeGreaterThanOrEqual(0.95);
  });

  it('ivf trains on its first vectors and is exact when every cell is probed', async () => {
    const ix = await filled('ivf', { nlist: 16 });
    expect(ix.trained).toBe(true);
    expect(ix.spec.nlist).toBe(16);
    expect(recallAt10(await ix.search(queries, 10, { nprobe: 16 }))).toBe(1);
    expect(recallAt10(await ix.search(queries, 10, { nprobe: 4 }))).toBeGreaterThan(0.4);
  });

  it('ivfpq trains product quantizers and still finds neighbours', async () => {
    const ix = await filled('ivfpq', { nlist: 8, pqM: 8, pqBits: 8 });
    expect(recallAt10(await ix.search(queries, 10, { nprobe: 8 }))).toBeGreaterThan(0.3);
    const untrained = VectorIndex.create({ dim: DIM, kind: 'ivfpq', nlist: 8 });
    await rejectsWithCode(untrained.add([1, 2, 3], data.subarray(0, 3 * DIM)), 'INVALID_INPUT'); // 256 codes need 256 points
  });

  it('l2 returns squared distances, smallest first', async () => {
    const ix = VectorIndex.create({ dim: DIM, metric: 'l2' });
    await ix.add(BigInt64Array.from(ids), data);
    const [h] = await ix.search(row(data, 3), 3);
    expect(h.ids[0]).toBe(ids[3]);
    expect(h.scores[0]).toBeCloseTo(0, 5);
    expect(h.scores[1]).toBeGreaterThan(h.scores[0]);
  });
});

describe('filters inside recall', () => {
  const allow = [ids[5], ids[700], ids[1500], ids[1999], ids[42]];
  it.each(['flat', 'hnsw', 'ivf'] as const)('%s returns every allowed id, not a shortened list', async (kind) => {
    const ix = await filled(kind, kind === 'ivf' ? { nlist: 16 } : {});
    const [h] = await ix.search(row(queries, 0), 5, { filter: allow, nprobe: 16, efSearch: 256 });
    expect(new Set(h.ids)).toEqual(new Set(allow));
    expect(Array.from(h.ids)).toEqual(bruteForce(data, ids, row(queries, 0), 5, new Set(allow)));
  });

  it('an empty or unknown filter gives no results', async () => {
    const ix = await filled('flat');
    expect((await ix.search(row(queries, 0), 5, { filter: [] }))[0].ids.length).toBe(0);
    expect((await ix.search(row(queries, 0), 5, { filter: [1, 2] }))[0].ids.length).toBe(0);
  });
});

describe('remove', () => {
  it.each(['flat', 'hnsw', 'ivf'] as const)('%s never returns removed ids and keeps the others addressable', async (kind) => {
    const ix = await filled(kind, kind === 'ivf' ? { nlist: 16 } : {});
    const [before] = await ix.search(row(queries, 1), 5, { nprobe: 16 });
    await ix.remove(before.ids.slice(0, 2));
    expect(ix.size).toBe(N - 2);
    const held = new Set(ix.ids());
    expect(held.size).toBe(N - 2);
    expect(held.has(before.ids[0])).toBe(false);
    const [after] = await ix.search(row(queries, 1), 5, { nprobe: 16, efSearch: 128 });
    expect(Array.from(after.ids)).not.toContain(before.ids[0]);
    expect(Array.from(after.ids)).not.toContain(before.ids[1]);
    expect(Array.from(after.ids.slice(0, 3))).toEqual(Array.from(before.ids.slice(2, 5)));
    // a removed id can be added again
    await ix.add([before.ids[0]], row(data, ids.indexOf(before.ids[0])));
    expect(ix.size).toBe(N - 1);
  });

  it('rejects unknown ids and removes nothing', async () => {
    const ix = await filled('flat');
    const e = await rejectsWithCode(ix.remove([ids[0], 5n]), 'INVALID_INPUT');
    expect(e.message).toContain('unknown id 5');
    expect(ix.size).toBe(N);
  });
});

describe('bad input', () => {
  it('rejects wrong dimensions, NaN, duplicate and negative ids, leaving the index unchanged', async () => {
    const ix = VectorIndex.create({ dim: DIM });
    await rejectsWithCode(ix.add([1], new Float32Array(DIM + 1)), 'INVALID_INPUT');
    await rejectsWithCode(ix.add([1, 2], new Float32Array(DIM)), 'INVALID_INPUT');
    const nan = new Float32Array(DIM);
    nan[3] = NaN;
    await rejectsWithCode(ix.add([1], nan), 'INVALID_INPUT');
    await rejectsWithCode(ix.add([1, 1], new Float32Array(2 * DIM)), 'INVALID_INPUT');
    await rejectsWithCode(ix.add([-1], new Float32Array(DIM)), 'INVALID_INPUT');
    await rejectsWithCode(ix.add([1.5], new Float32Array(DIM)), 'INVALID_INPUT');
    expect(ix.size).toBe(0);
    await ix.add([1], row(data, 0));
    const dup = await rejectsWithCode(ix.add([2, 1], data.subarray(0, 2 * DIM)), 'INVALID_INPUT');
    expect(dup.message).toContain('duplicate id 1');
    expect(ix.size).toBe(1);
    await rejectsWithCode(ix.search(new Float32Array(DIM - 1), 1), 'INVALID_INPUT');
    await rejectsWithCode(ix.search(row(data, 0), 0), 'INVALID_INPUT');
    await rejectsWithCode(ix.search(row(data, 0), 1, { nprobe: -1 }), 'INVALID_INPUT');
  });

  it('rejects bad specs', () => {
    throwsWithCode(() => VectorIndex.create({ dim: 0 }), 'INVALID_INPUT');
    throwsWithCode(() => VectorIndex.create({ dim: 8, kind: 'annoy' as never }), 'INVALID_INPUT');
    throwsWithCode(() => VectorIndex.create({ dim: 10, kind: 'ivfpq', pqM: 3 }), 'INVALID_INPUT');
  });

  it('searches an empty index without error', async () => {
    const ix = VectorIndex.create({ dim: DIM, kind: 'hnsw' });
    expect((await ix.search(row(queries, 0), 3))[0].ids.length).toBe(0);
  });
});

describe('persistence', () => {
  it.each(['flat', 'hnsw', 'ivf', 'ivfpq'] as const)('%s saves and loads with identical results', async (kind) => {
    const ix = await filled(kind, kind === 'ivf' || kind === 'ivfpq' ? { nlist: 8 } : {});
    await ix.remove([ids[3], ids[4]]);
    const path = join(dir, `${kind}.qrix`);
    await ix.save(path);
    const back = await VectorIndex.load(path);
    expect(back.size).toBe(N - 2);
    expect(back.spec).toEqual(ix.spec);
    const a = await ix.search(queries, 10, { nprobe: 8 });
    const b = await back.search(queries, 10, { nprobe: 8 });
    expect(b.map((h) => Array.from(h.ids))).toEqual(a.map((h) => Array.from(h.ids)));
    await rejectsWithCode(back.remove([ids[3]]), 'INVALID_INPUT'); // still removed
  });

  it('writes atomically: a failed save leaves the old file and no temporary files', async () => {
    const ix = await filled('flat');
    const path = join(dir, 'atomic.qrix');
    await ix.save(path);
    const before = readFileSync(path);
    await rejectsWithCode(ix.save(join(dir, 'no-such-dir', 'x.qrix')), 'IO_ERROR');
    await ix.add([1], row(data, 0));
    await ix.save(path);
    expect(readFileSync(path).equals(before)).toBe(false);
    expect(readdirSync(dir).filter((f) => f.includes('.tmp-'))).toEqual([]);
  });

  it('refuses damaged, foreign and missing files with stable codes', async () => {
    const ix = await filled('flat');
    const path = join(dir, 'damaged.qrix');
    await ix.save(path);
    const bytes = readFileSync(path);
    bytes[bytes.length >> 1] ^= 0xff;
    writeFileSync(path, bytes);
    await rejectsWithCode(VectorIndex.load(path), 'BAD_INDEX');
    writeFileSync(path, bytes.subarray(0, 100));
    await rejectsWithCode(VectorIndex.load(path), 'BAD_INDEX');
    writeFileSync(path, 'not an index');
    await rejectsWithCode(VectorIndex.load(path), 'BAD_INDEX');
    await rejectsWithCode(VectorIndex.load(join(dir, 'missing.qrix')), 'INDEX_NOT_FOUND');
  });
});

describe('concurrency', () => {
  it('runs searches concurrently with adds and removes, off the JS thread', async () => {
    const ix = await filled('hnsw');
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    const more = unitVectors(3000, 5);
    const work: Promise<unknown>[] = [ix.add(BigInt64Array.from({ length: 3000 }, (_, i) => BigInt(i)), more)];
    for (let i = 0; i < 20; i++) work.push(ix.search(queries, 10));
    work.push(ix.remove([ids[0]]));
    const results = await Promise.all(work);
    clearInterval(timer);
    expect(ix.size).toBe(N + 3000 - 1);
    for (const r of results.slice(1, 21) as { ids: BigInt64Array }[][]) expect(r).toHaveLength(20);
    expect(ticks).toBeGreaterThan(0);
  });
});

describe('the native classes', () => {
  it('are not exported, and an index cannot be constructed from JavaScript (it would hold no index)', async () => {
    const exported = binding() as unknown as Record<string, unknown>;
    expect(exported.NativeIndex).toBeUndefined();
    expect(exported.NativeModel).toBeUndefined();
    const ix = VectorIndex.create({ dim: 4 });
    const Ctor = (ix as unknown as { native: object }).native.constructor as new (...args: unknown[]) => { size(): number };
    for (const args of [[], [{}], [1]]) {
      const err = (() => {
        try {
          new Ctor(...args).size();
        } catch (e) {
          return e as Error & { code?: string };
        }
      })();
      expect(err?.code).toBe('INVALID_INPUT');
      expect(err?.message).toMatch(/made by createIndex or loadIndex/);
    }
    expect(ix.size).toBe(0);
  });
});
