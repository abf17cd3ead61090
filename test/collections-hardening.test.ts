/**
 * Collections under hostile use (issue 10): concurrent first opens, drops and closes while searches
 * and ingests run, filters and fusion signals at and beyond their bounds, prototype keys, caches
 * bounded by bytes, collection names that try to leave the data directory. Each case is checked in
 * the library and, where a request can carry it, over HTTP.
 */
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo, Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Embedder, Reranker } from '../lib/index';
import { SearchEngine, signalsProblem } from '../lib/search/engine';
import { MAX_FILTER_FIELDS, MAX_FILTER_PARAMS, MAX_IN_VALUES } from '../lib/search/filters';
import { createApp } from '../lib/server/app';
import { MAPPING, MODELS, products, rejectsWithCode } from './helpers';

const root = mkdtempSync(join(tmpdir(), 'qrank-hardening-'));
let em: Embedder;
let rr: Reranker;
let n = 0;
/** A fresh data directory. */
const fresh = () => join(root, `d${n++}`);
const outcome = (p: Promise<unknown>) => p.then(() => 'ok', (e: { code?: string; message?: string }) => e.code ?? `untyped: ${e.message}`);

beforeAll(async () => {
  [em, rr] = await Promise.all([Embedder.load({ model: MODELS.embedder, threads: 1 }), Reranker.load({ model: MODELS.reranker, threads: 1 })]);
});
afterAll(async () => {
  await Promise.all([em?.close(), rr?.close()]);
  rmSync(root, { recursive: true, force: true });
});

async function engineWith(count: number, options: { reranker?: Reranker; mapping?: typeof MAPPING; dir?: string } = {}) {
  const se = await SearchEngine.open({ dir: options.dir ?? fresh(), embedder: em, reranker: options.reranker });
  await (await se.collection('p', { index: { kind: 'flat' } })).ingest(products(count), { mapping: options.mapping ?? MAPPING });
  return se;
}

describe('opening a collection (item 8)', () => {
  it('concurrent first calls share one opening; a failed open is not kept', async () => {
    const dir = fresh();
    await (await engineWith(10, { dir })).close();
    const se = await SearchEngine.open({ dir, embedder: em });
    const opened = await Promise.all(Array.from({ length: 20 }, () => se.existing('p')));
    expect(new Set(opened).size).toBe(1);
    await se.close();

    // a damaged index: every concurrent caller gets the error, and once it is repaired the next call opens
    copyFileSync(join(dir, 'p.qrix'), join(dir, 'p.qrix.good'));
    writeFileSync(join(dir, 'p.qrix'), 'not an index');
    const se2 = await SearchEngine.open({ dir, embedder: em });
    const failed = await Promise.all(Array.from({ length: 5 }, () => outcome(se2.existing('p'))));
    expect(failed).toEqual(Array(5).fill('BAD_INDEX'));
    copyFileSync(join(dir, 'p.qrix.good'), join(dir, 'p.qrix'));
    expect(await (await se2.existing('p')).count()).toBe(10);
    await se2.close();
  });
});

describe('a collection that cannot be opened', () => {
  it('is listed with its error (the others are still listed) and can be dropped', async () => {
    const dir = fresh();
    await (await engineWith(5, { dir })).close();
    const se = await SearchEngine.open({ dir, embedder: em });
    await (await se.collection('q', { index: { kind: 'flat' } })).ingest(products(3), { mapping: MAPPING });
    writeFileSync(join(dir, 'p.qrix'), 'not an index');
    const listed = await se.list();
    expect(listed).toEqual([
      { name: 'p', error: { code: 'BAD_INDEX', message: expect.any(String) } },
      expect.objectContaining({ name: 'q', size: 3 }),
    ]);
    await se.drop('p');
    expect(existsSync(join(dir, 'p.sqlite'))).toBe(false);
    expect(existsSync(join(dir, 'p.qrix'))).toBe(false);
    expect((await se.list()).map((c) => c.name)).toEqual(['q']);
    await se.close();
  });

  it('a create whose index options the index refuses leaves no files, and the name stays free', async () => {
    const dir = fresh();
    const se = await SearchEngine.open({ dir, embedder: em });
    await rejectsWithCode(se.create('bad', { index: { kind: 'hnsw', m: 1 } }), 'INVALID_INPUT');
    expect(existsSync(join(dir, 'bad.sqlite'))).toBe(false);
    expect(await se.has('bad')).toBe(false);
    expect(await se.list()).toEqual([]);
    expect(await (await se.create('bad', { index: { kind: 'flat' } })).count()).toBe(0);
    await se.close();
  });
});

describe('drop and close while work runs (item 9)', () => {
  it('searches, ingests and deletes running when drop starts finish; later calls get COLLECTION_NOT_FOUND; the files go', async () => {
    const dir = fresh();
    const se = await engineWith(40, { dir, reranker: rr });
    const col = await se.existing('p');
    const searches = Array.from({ length: 30 }, (_, i) => outcome(se.search('p', `auriculares ${i}`, { recallK: 10, topN: 5, fusion: { signals: { price: 0.1 } } })));
    const ingest = col.ingest(products(20, 100));
    const deleted = col.delete(['sku-1', 'sku-2']);
    await new Promise((r) => setImmediate(r)); // the searches are under way (embedding their queries)
    const drop = se.drop('p');
    const late = Array.from({ length: 10 }, (_, i) => outcome(se.search('p', `late ${i}`, { recallK: 5 })));
    expect(await Promise.all(searches)).toEqual(Array(30).fill('ok'));
    expect(await Promise.all(late)).toEqual(Array(10).fill('COLLECTION_NOT_FOUND'));
    expect(await ingest).toMatchObject({ upserted: 20 });
    expect(await deleted).toBe(2);
    await drop;
    for (const suffix of ['.sqlite', '.sqlite-wal', '.sqlite-shm', '.qrix']) expect(existsSync(join(dir, `p${suffix}`))).toBe(false);
    expect(await se.has('p')).toBe(false);
    expect(await se.names()).toEqual([]);
    await rejectsWithCode(se.search('p', 'x'), 'COLLECTION_NOT_FOUND');
    await rejectsWithCode(col.ingest(products(1)), 'COLLECTION_NOT_FOUND');
    await expect(col.info()).rejects.toThrow(/no collection named 'p'/);
    // the name is free again: a new, empty collection
    expect(await (await se.create('p', { mapping: MAPPING })).count()).toBe(0);
    await se.close();
  });

  it('a second drop of the same collection is a 404, and a create during a drop waits for it', async () => {
    const se = await engineWith(5);
    const [a, b] = await Promise.all([outcome(se.drop('p')), outcome(se.drop('p'))]);
    expect([a, b].sort()).toEqual(['COLLECTION_NOT_FOUND', 'ok']);
    await (await se.collection('p')).ingest(products(3), { mapping: MAPPING });
    const drop = se.drop('p');
    const created = se.create('p', { mapping: MAPPING });
    await drop;
    expect(await (await created).count()).toBe(0);
    await se.close();
  });

  it('searches running when SearchEngine.close() starts finish; later calls are CLOSED and open nothing', async () => {
    const se = await engineWith(30, { reranker: rr });
    const searches = Array.from({ length: 20 }, (_, i) => outcome(se.search('p', `zapatillas ${i}`, { recallK: 10, topN: 5 })));
    await new Promise((r) => setImmediate(r));
    const closed = se.close();
    const late = outcome(se.search('p', 'late'));
    expect(await Promise.all(searches)).toEqual(Array(20).fill('ok'));
    expect(await late).toBe('CLOSED');
    await closed;
    await rejectsWithCode(se.search('p', 'x'), 'CLOSED');
    await rejectsWithCode(se.collection('p'), 'CLOSED');
  });
});

describe('filters (items 11 and 12)', () => {
  let se: SearchEngine;
  beforeAll(async () => {
    se = await engineWith(40);
  });
  afterAll(() => se.close());
  const search = (filter: unknown) => se.search('p', 'auriculares', { filter: filter as never, rerank: false, topN: 40, recallK: 40 });
  const invalid = async (filter: unknown, message: RegExp) => expect((await rejectsWithCode(search(filter), 'INVALID_INPUT')).message).toMatch(message);

  it('bounds fields, in values and parameters, naming the limit', async () => {
    const many = Array.from({ length: 40_000 }, (_, i) => `v${i}`);
    await invalid({ brand: { in: many } }, new RegExp(`^filter\\.brand\\.in: at most ${MAX_IN_VALUES} values`));
    await invalid(Object.fromEntries(Array.from({ length: 2000 }, (_, i) => [`f${i}`, i])), new RegExp(`^filter: at most ${MAX_FILTER_FIELDS} fields`));
    const wide = Object.fromEntries(Array.from({ length: MAX_FILTER_FIELDS }, (_, i) => [`f${i}`, { in: many.slice(0, MAX_IN_VALUES) }]));
    await invalid(wide, new RegExp(`^filter: at most ${MAX_FILTER_PARAMS} values in all`));
    await invalid({ brand: { in: many.slice(0, MAX_IN_VALUES) }, sku: { in: many.slice(0, MAX_IN_VALUES) }, price: 1 }, new RegExp(`^filter: at most ${MAX_FILTER_PARAMS} values in all`));
    // at the limits it works
    const r = await search({ brand: { in: ['Brand1', ...many.slice(0, MAX_IN_VALUES - 1)] }, sku: { in: [...many.slice(0, MAX_IN_VALUES - 2), 'sku-1', 'sku-8'] } }); // 2000 values in all
    expect(r.results.map((h) => h.id).sort()).toEqual(['sku-1', 'sku-8']);
    const widest = Object.fromEntries(Array.from({ length: MAX_FILTER_FIELDS }, (_, i) => [`f${i}`, { gte: 0, lte: 1, ne: 0.5 }]));
    expect((await search(widest)).results).toEqual([]); // no product has those fields: valid, and empty
  });

  it('rejects __proto__, constructor and prototype keys and reads own properties only', async () => {
    // JSON.parse makes __proto__ an own property (Object.entries lists it), unlike an object literal
    const parsed = JSON.parse('{"__proto__": {"eq": "Audio"}}');
    expect(Object.entries(parsed)).toEqual([['__proto__', { eq: 'Audio' }]]);
    await invalid(parsed, /'__proto__' cannot be a field name/);
    await invalid({ constructor: 'x' }, /'constructor' cannot be a field name/);
    await invalid({ 'fields.prototype': 1 }, /'prototype' cannot be a field name/);
    await invalid(JSON.parse('{"price": {"__proto__": 3}}'), /^filter\.price: unknown operator '__proto__'/);
    await invalid({ price: { constructor: 3 } }, /^filter\.price: unknown operator 'constructor'/);
    await invalid({ price: { toString: 3 } }, /unknown operator 'toString'/);
    await invalid(Object.create({ category: 'Audio' }), /^filter: must be an object/); // inherited fields are not a filter
    await invalid(['category'], /^filter: must be an object/);
    await invalid({ price: {} }, /^filter\.price: needs an operator/);
  });

  it('refuses hostile field names and values instead of failing in SQLite', async () => {
    for (const field of ['a..b', 'a.', '.a', 'a b', "a')", '0a', 'a.0', 'x'.repeat(200), '\ud800']) await invalid({ [field]: 1 }, /^filter: /);
    await invalid({ category: '\ud800' }, /^filter\.category: .*lone surrogate/);
    await invalid({ category: 'x'.repeat(5000) }, /^filter\.category: strings are at most/);
    await invalid({ category: { in: [['Audio']] } }, /^filter\.category\.in\.0: values must be/);
    await invalid({ category: { in: [] } }, /^filter\.category\.in: /);
    await invalid({ price: { lte: Number.NaN } }, /^filter\.price\.lte: values must be/);
    await invalid({ price: null }, /^filter\.price: values must be/);
    expect((await search({ category: 'Audio', price: { gte: 0, lt: 1e9 } })).results.length).toBe(10);
  });
});

describe('fusion signals (item 14)', () => {
  const NUMERIC = Array.from({ length: 16 }, (_, i) => `n${i}`);
  const wideMapping = { ...MAPPING, embed: '{title_en}', numeric: NUMERIC };
  const wide = (count: number, start = 0, bump = 0) =>
    products(count, start).map((p, k) => ({ ...p, filler: 'x'.repeat(600), ...Object.fromEntries(NUMERIC.map((f, j) => [f, ((start + k) * (j + 3)) % 997 + bump])) }));

  it('bounds their number; each must be a numeric field of the mapping', async () => {
    const se = await engineWith(20);
    const signals = (names: string[]) => ({ fusion: { signals: Object.fromEntries(names.map((f) => [f, 0])) } });
    const e = await rejectsWithCode(se.search('p', 'x', signals(Array.from({ length: 17 }, (_, i) => `s${i}`))), 'INVALID_INPUT');
    expect(e.message).toMatch(/^fusion\.signals: at most 16 signals/);
    expect((await rejectsWithCode(se.search('p', 'x', { fusion: { signals: { title_en: 0.1 } } }), 'INVALID_INPUT')).message).toMatch(/not a numeric field.*price, popularity/);
    await rejectsWithCode(se.search('p', 'x', { fusion: { signals: JSON.parse('{"__proto__": 0.5}') } }), 'INVALID_INPUT');
    await rejectsWithCode(se.search('p', 'x', { fusion: { signals: { price: 0.6, popularity: 0.6 } } }), 'INVALID_INPUT');
    // weights that sum to 1 in decimal are not refused for the last bit of their binary sum
    expect(0.33 + 0.56 + 0.11).toBeGreaterThan(1);
    expect(signalsProblem({ a: 0.33, b: 0.56, c: 0.11 })).toBeUndefined();
    expect(signalsProblem({ a: 0.5, b: 0.5000001 })?.message).toMatch(/more than 1/);
    await rejectsWithCode(se.search('p', 'x', { fusion: { signals: { price: Number.NaN } } }), 'INVALID_INPUT');
    await rejectsWithCode(se.search('p', 'x', { recallK: 1e9 }), 'INVALID_INPUT');
    await se.close();
  });

  it('normalisation follows upserts and deletes; text values of a numeric field do not count', async () => {
    const se = await engineWith(30);
    const col = await se.existing('p');
    const check = async (prices: number[]) => {
      const r = await se.search('p', 'auriculares', { recallK: 200, topN: 200, rerank: false, fusion: { signals: { price: 0.5 } }, explain: true });
      const [min, max] = [Math.min(...prices), Math.max(...prices)];
      for (const h of r.results) {
        const p = h.fields.price;
        expect(h.explain!.signals.price.normalised).toBeCloseTo(typeof p === 'number' ? (p - min) / (max - min) : 0, 9);
      }
      return r.results.length;
    };
    const base = products(30).map((p) => p.price);
    expect(await check(base)).toBe(30);
    await col.ingest([{ ...products(1, 500)[0], price: '' }]); // an empty CSV cell: stored as text
    expect(await check(base)).toBe(31);
    await col.ingest([{ ...products(1, 501)[0], price: 5000 }]);
    expect(await check([...base, 5000])).toBe(32);
    await col.ingest([{ ...products(1, 501)[0], price: 1 }]);
    expect(await check([...base, 1])).toBe(32);
    await col.delete(['sku-501']);
    expect(await check(base)).toBe(31);
    await se.close();
  });

  it('the most signals on thousands of products cost no table scan per search', async () => {
    const dir = fresh();
    const se = await engineWith(0, { dir, mapping: wideMapping });
    const col = await se.existing('p');
    await col.ingest(wide(4000), { mapping: wideMapping, batchSize: 256 });
    const signals = Object.fromEntries(NUMERIC.map((f) => [f, 1 / 16]));
    // one full scan of a numeric field, measured on the side (what a search would pay per signal)
    const side = new Database(join(dir, 'p.sqlite'), { readonly: true });
    const scan = side.prepare("SELECT min(json_extract(fields, '$.n0')) AS a, max(json_extract(fields, '$.n0')) AS b FROM products");
    const scanMs = median(Array.from({ length: 5 }, () => timed(() => scan.get())));
    side.close();
    // every search follows a write (which invalidates any cached range), with and without the signals
    const run = async (fusion: boolean, k: number) => {
      await col.ingest(wide(1, k, 1000 + k)); // new values, the same text: nothing to embed
      const t = performance.now();
      const r = await se.search('p', 'wireless', { recallK: 5, topN: 5, rerank: false, ...(fusion ? { fusion: { signals } } : {}) });
      expect(r.results).toHaveLength(5);
      return performance.now() - t;
    };
    const plain: number[] = [];
    const fused: number[] = [];
    for (let k = 0; k < 6; k++) {
      plain.push(await run(false, k));
      fused.push(await run(true, k));
    }
    const overhead = median(fused) - median(plain);
    // 16 scans would cost 16 x scanMs; reading the ranges from indexes costs a small part of one
    expect(overhead, `fusion overhead ${overhead.toFixed(1)} ms, one scan ${scanMs.toFixed(1)} ms`).toBeLessThan(4 * scanMs);
    const r = await se.search('p', 'wireless', { recallK: 5, topN: 5, rerank: false, fusion: { signals }, explain: true });
    for (const h of r.results) for (const f of NUMERIC) expect(h.explain!.signals[f].normalised).toBeGreaterThanOrEqual(0);
    await se.close();
  }, 120_000);
});

describe('caches bounded by bytes (item 19)', () => {
  it('keeps each cache under its byte bound, keys included, and reports the sizes', async () => {
    const dir = fresh();
    await (await engineWith(30, { dir })).close();
    const se = await SearchEngine.open({ dir, embedder: em, reranker: rr, cache: { queryEmbeddingsBytes: 8192, rerankScoresBytes: 4096 } });
    for (let i = 0; i < 20; i++) await se.search('p', `${i} ${'auriculares inalámbricos '.repeat(120)}`, { recallK: 5, rerank: false });
    for (let i = 0; i < 20; i++) await se.search('p', `zapatillas ${i}`, { recallK: 10, topN: 3 });
    const { queryEmbeddings: q, rerankScores: s } = se.cacheStats();
    expect(q).toMatchObject({ maxBytes: 8192 });
    expect(s).toMatchObject({ maxBytes: 4096 });
    expect(q.bytes).toBeLessThanOrEqual(8192);
    expect(s.bytes).toBeLessThanOrEqual(4096);
    expect(q.size).toBeGreaterThan(0);
    expect(s.size).toBeGreaterThan(0);
    // an entry holds the vector and a short key, not the 3 000-character query
    expect(q.bytes / q.size).toBeLessThan(4 * em.info.embeddingLength + 512);
    expect(q.misses).toBe(40);
    await se.close();
    const def = await SearchEngine.open({ dir, embedder: em });
    expect(def.cacheStats().queryEmbeddings.maxBytes).toBeGreaterThan(1 << 20);
    await def.close();
    await expect(SearchEngine.open({ dir, embedder: em, cache: { queryEmbeddings: 10 } as never })).rejects.toMatchObject({ code: 'INVALID_INPUT', message: expect.stringMatching(/^cache: /) });
    await expect(SearchEngine.open({ dir, embedder: em, cache: { rerankScoresBytes: -1 } })).rejects.toMatchObject({ code: 'INVALID_INPUT' });
  });
});

describe('collection names (item 20)', () => {
  it('a name that leaves the data directory is INVALID_INPUT everywhere, whether or not a file is there', async () => {
    const base = fresh();
    const dir = join(base, 'data');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(base, 'x.sqlite'), '');
    const se = await SearchEngine.open({ dir, embedder: em });
    for (const name of ['../x', '../y', 'a/b', '..', '', 'x'.repeat(65), 'a b', 'x\0', 42 as unknown as string]) {
      await expect(se.has(name), String(name)).rejects.toThrow(/collection name/);
      for (const call of [() => se.existing(name), () => se.create(name), () => se.drop(name), () => se.collection(name), () => se.search(name, 'q')]) {
        await rejectsWithCode(call(), 'INVALID_INPUT');
      }
    }
    expect(existsSync(join(base, 'x.sqlite'))).toBe(true);
    await se.close();
  });
});

describe('over HTTP', () => {
  let se: SearchEngine;
  let server: Server;
  let base: string;
  let dataDir: string;
  beforeAll(async () => {
    const top = fresh();
    dataDir = join(top, 'data');
    mkdirSync(top, { recursive: true });
    writeFileSync(join(top, 'x.sqlite'), '');
    // collections made by an earlier engine: this one opens each on first use
    const earlier = await engineWith(40, { dir: dataDir });
    for (const name of ['a0', 'a1', 'a2']) await (await earlier.create(name)).ingest(products(5), { mapping: MAPPING });
    await earlier.close();
    se = await SearchEngine.open({ dir: dataDir, embedder: em, reranker: rr });
    server = createApp({ reranker: rr, embedder: em, search: se, logger: pino({ level: 'silent' }) }).app.listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await new Promise((r) => server?.close(r));
    await se?.close();
  });
  const send = async (method: string, path: string, body?: unknown) => {
    const r = await fetch(base + path, { method, headers: { 'content-type': 'application/json' }, body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body) });
    return { status: r.status, body: await r.json() };
  };
  const rejected = async (body: unknown, message: RegExp) => {
    const r = await send('POST', '/v1/search', body);
    expect(r.status, JSON.stringify(r.body)).toBe(400);
    expect(r.body.error.code).toBe('INVALID_INPUT');
    expect(r.body.error.message).toMatch(message);
  };

  it('filters: the limits named, prototype keys refused, never a 500', async () => {
    const q = { collection: 'p', query: 'auriculares', rerank: false };
    await rejected({ ...q, filter: { brand: { in: Array.from({ length: 40_000 }, (_, i) => `v${i}`) } } }, new RegExp(`^filter\\.brand\\.in: at most ${MAX_IN_VALUES} values`));
    await rejected({ ...q, filter: Object.fromEntries(Array.from({ length: 2000 }, (_, i) => [`f${i}`, i])) }, new RegExp(`^filter: at most ${MAX_FILTER_FIELDS} fields`));
    await rejected('{"collection": "p", "query": "x", "filter": {"__proto__": {"eq": "Audio"}}}', /^filter: '__proto__' cannot be a field name/);
    await rejected('{"collection": "p", "query": "x", "filter": {"constructor": "Audio"}}', /'constructor' cannot be a field name/);
    await rejected('{"collection": "p", "query": "x", "filter": {"price": {"__proto__": 1}}}', /^filter\.price/);
    await rejected('{"collection": "p", "query": "x", "filter": {"category": "\\ud800"}}', /lone surrogate/);
    await rejected({ ...q, filter: { 'a..b': 1 } }, /^filter: /);
    await rejected({ ...q, filter: { price: { constructor: 1 } } }, /^filter\.price/);
    const ok = await send('POST', '/v1/search', { ...q, filter: { category: 'Audio' }, top_n: 40, recall_k: 40 });
    expect(ok.status).toBe(200);
    expect(ok.body.results).toHaveLength(10);
  });

  it('fusion: at most 16 signals, numeric fields only, prototype keys refused', async () => {
    const q = { collection: 'p', query: 'auriculares' };
    await rejected({ ...q, fusion: { signals: Object.fromEntries(Array.from({ length: 2000 }, (_, i) => [`s${i}`, 0])) } }, /^fusion\.signals: at most 16 signals/);
    await rejected({ ...q, fusion: { signals: { title_en: 0.2 } } }, /^fusion\.signals\.title_en: not a numeric field/);
    await rejected('{"collection": "p", "query": "x", "fusion": {"signals": {"__proto__": 0.5}}}', /^fusion\.signals: '__proto__' cannot be a field name/);
    await rejected({ ...q, fusion: { signals: { price: 2 } } }, /^fusion\.signals\.price/);
    await rejected({ ...q, recall_k: 10_001 }, /^recall_k/);
  });

  it('names outside the data directory: 400 whether or not a file is there', async () => {
    for (const name of ['..%2Fx', '..%2Fy', 'a%2Fb', 'a%20b']) {
      for (const method of ['GET', 'DELETE']) {
        const r = await send(method, `/v1/collections/${name}`);
        expect(r, `${method} ${name}`).toMatchObject({ status: 400, body: { error: { code: 'INVALID_INPUT' } } });
      }
      const d = await send('POST', `/v1/collections/${name}/documents`, { documents: [] });
      expect(d.status).toBe(400);
    }
    expect(existsSync(join(dataDir, '..', 'x.sqlite'))).toBe(true);
  });

  it('listing while collections are dropped: every listing answers, the dropped ones go', async () => {
    const kept = ['a0', 'a1', 'a2', 'p'];
    for (let round = 0; round < 4; round++) {
      // a collection this engine has not opened: a listing loads its index from disk, and yields meanwhile
      const side = await SearchEngine.open({ dir: dataDir, embedder: em });
      await (await side.create(`b${round}`)).ingest(products(5), { mapping: MAPPING });
      await side.close();
      kept.push(`b${round}`);
      const name = `zz${round}`;
      expect((await send('POST', '/v1/collections', { name, mapping: MAPPING })).status).toBe(201);
      const lists = Array.from({ length: 6 }, () => send('GET', '/v1/collections'));
      const drop = send('DELETE', `/v1/collections/${name}`);
      for (const l of await Promise.all(lists)) {
        expect(l.status, JSON.stringify(l.body)).toBe(200);
        expect(l.body.data.map((c: { name: string }) => c.name)).toEqual(expect.arrayContaining(kept));
      }
      expect((await drop).status).toBe(200);
      expect((await send('GET', `/v1/collections/${name}`)).status).toBe(404);
      expect((await send('GET', '/v1/collections')).body.data.map((c: { name: string }) => c.name)).toEqual([...kept].sort());
    }
  });

  it('deleting a collection during searches: each search answers 200 or 404, never 500', async () => {
    expect((await send('POST', '/v1/collections', { name: 'busy', index: { kind: 'flat' }, mapping: MAPPING })).status).toBe(201);
    expect((await send('POST', '/v1/collections/busy/documents', { documents: products(40) })).status).toBe(200);
    const searches = Array.from({ length: 60 }, (_, i) => send('POST', '/v1/search', { collection: 'busy', query: `auriculares ${i}`, recall_k: 10, top_n: 5 }));
    await new Promise((r) => setTimeout(r, 20));
    const drop = send('DELETE', '/v1/collections/busy');
    const statuses = (await Promise.all(searches)).map((r) => r.status);
    for (const s of statuses) expect([200, 404]).toContain(s);
    expect((await drop).status).toBe(200);
    expect(existsSync(join(dataDir, 'busy.sqlite'))).toBe(false);
  });
});

function timed(fn: () => unknown): number {
  const t = performance.now();
  fn();
  return performance.now() - t;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}
