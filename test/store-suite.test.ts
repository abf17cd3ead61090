/**
 * The shared store suite: the same tests against both stores (store.ts), so their behaviour is the
 * same: the embedded one (SQLite + vector index files) and Postgres with pgvector (PGlite served
 * over the wire protocol, reached through `pg` as a real server would be). Each test uses its own
 * collection names, so the Postgres server is started once for the file.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Embedder } from '../lib/index';
import { SearchEngine } from '../lib/search/engine';
import { CATEGORIES, MAPPING, MODELS, products, rejectsWithCode } from './helpers';
import { type PgliteServer, startPglite } from './pg-helpers';

const dir = mkdtempSync(join(tmpdir(), 'qrank-stores-'));
let em: Embedder;
let em2: Embedder;
let pg: PgliteServer;
beforeAll(async () => {
  const other = join(dir, 'other-embedder.gguf');
  const { makeTestModel } = await import('../lib/synthetic/model');
  [pg] = await Promise.all([startPglite(), makeTestModel({ kind: 'embedder', shape: 'tiny', out: other, seed: 77 })]);
  [em, em2] = await Promise.all([Embedder.load({ model: MODELS.embedder, threads: 1 }), Embedder.load({ model: other, threads: 1 })]);
}, 120_000);
afterAll(async () => {
  await Promise.all([em?.close(), em2?.close(), pg?.stop()]);
  rmSync(dir, { recursive: true, force: true });
});

const STORES = [
  { store: 'embedded', location: () => join(dir, 'data') },
  { store: 'postgres', location: () => pg.url },
];
const open = (location: string, embedder = em) => SearchEngine.open({ store: location, embedder });
const vectorSearch = (se: SearchEngine, name: string, query: string, options: object = {}) => se.search(name, query, { recall: 'vector', rerank: false, recallK: 50, topN: 50, ...options });

describe.each(STORES)('$store store', ({ store, location }) => {
  it('filters apply inside recall: a selective filter still returns its products, every hit matches', async () => {
    const se = await open(location());
    const col = await se.create('filters', { index: { kind: 'hnsw' }, mapping: MAPPING });
    await col.ingest(products(200));
    const audio = await vectorSearch(se, 'filters', 'wireless headphones', { filter: { category: 'Audio', price: { lte: 100 } }, recallK: 200, topN: 200 });
    const expected = products(200).filter((p) => p.category === 'Audio' && p.price <= 100);
    expect(audio.results.map((h) => h.id).sort()).toEqual(expected.map((p) => p.sku).sort());
    const one = await vectorSearch(se, 'filters', 'wireless headphones', { filter: { sku: 'sku-117' }, recallK: 10 });
    expect(one.results.map((h) => h.id)).toEqual(['sku-117']);
    const some = await vectorSearch(se, 'filters', 'headphones', { filter: { brand: { in: ['Brand1', 'Brand2'] }, category: { ne: 'Audio' }, price: { gt: 50 } }, recallK: 10, topN: 10 });
    expect(some.results).toHaveLength(10);
    for (const h of some.results) expect(['Brand1', 'Brand2'].includes(h.fields.brand as string) && h.fields.category !== 'Audio' && (h.fields.price as number) > 50).toBe(true);
    expect((await vectorSearch(se, 'filters', 'x', { filter: { category: 'Nothing' } })).results).toEqual([]);
    await se.close();
  });

  it('upserts are idempotent: unchanged products are not written again, field changes are not embedded again', async () => {
    const se = await open(location());
    const col = await se.create('upserts', { mapping: MAPPING });
    expect(await col.ingest(products(30))).toMatchObject({ upserted: 30, embedded: 30, unchanged: 0 });
    expect(await col.ingest(products(30))).toMatchObject({ upserted: 0, embedded: 0, unchanged: 30 });
    const changed = products(30).map((p, i) => (i === 3 ? { ...p, popularity: 0.99 } : i === 4 ? { ...p, title_en: 'a new title' } : p));
    expect(await col.ingest(changed)).toMatchObject({ upserted: 2, embedded: 1, unchanged: 28 });
    // the same id twice in one batch: written in order, the last one wins
    expect(await col.ingest([{ ...products(1)[0], brand: 'First' }, { ...products(1)[0], brand: 'Last' }])).toMatchObject({ read: 2, upserted: 2 });
    expect(await col.info()).toMatchObject({ size: 30, pending: 0, vectors: 30 });
    const [hit] = (await vectorSearch(se, 'upserts', 'x', { filter: { sku: 'sku-0' } })).results;
    expect(hit.fields.brand).toBe('Last');
    await se.close();
  });

  it('deletes remove products and their vectors; unknown ids count nothing', async () => {
    const se = await open(location());
    const col = await se.create('deletes', { mapping: { ...MAPPING, embed: [MAPPING.embed as string, '{title_es}'] } });
    await col.ingest(products(20));
    expect(await col.vectorCount()).toBe(40);
    expect(await col.delete(['sku-1', 'sku-2', 'sku-2', 'nope'])).toBe(2);
    expect(await col.info()).toMatchObject({ size: 18, vectors: 36, pending: 0 });
    const all = await vectorSearch(se, 'deletes', 'headphones', { recallK: 100, topN: 100 });
    expect(all.results.map((h) => h.id)).not.toContain('sku-1');
    expect(new Set(all.results.map((h) => h.id)).size).toBe(18); // one hit per product, whatever its vectors
    await se.close();
  });

  it('refuses vectors of another embedding model, and re-indexes on request', async () => {
    const se = await open(location());
    await (await se.create('model', { mapping: MAPPING })).ingest(products(10));
    await se.close();
    const se2 = await open(location(), em2);
    expect((await rejectsWithCode(se2.collection('model'), 'MODEL_MISMATCH')).message).toMatch(/reindex: true/);
    const col = await se2.collection('model', { reindex: true });
    expect(await col.info()).toMatchObject({ size: 10, pending: 0, vectors: 10 });
    await se2.close();
  });

  it('keyword recall finds the terms, with the filter inside; hybrid fuses both lists', async () => {
    const se = await open(location());
    const col = await se.create('keywords', { mapping: { ...MAPPING, keyword: [{ template: '{sku} | {brand}', weight: 4 }, { template: '{title_en} {title_zh}', weight: 1 }] } });
    await col.ingest([...products(40), { sku: 'WH-1000XM5', title_en: 'Sony noise cancelling headphones', title_zh: '索尼降噪耳机', brand: 'Sony', category: 'Audio', price: 350 }]);
    const k = await se.search('keywords', 'wh1000xm5', { recall: 'keyword', rerank: false });
    expect(k.results[0].id).toBe('WH-1000XM5');
    expect((await se.search('keywords', '降噪耳机', { recall: 'keyword', rerank: false })).results[0].id).toBe('WH-1000XM5');
    expect((await se.search('keywords', 'sony', { recall: 'keyword', rerank: false, filter: { category: 'Kitchen' } })).results).toEqual([]);
    // 'brand3' is also the terms 'brand' and '3': the products holding all of them come first
    const brand3 = await se.search('keywords', 'brand3', { recall: 'keyword', rerank: false, topN: 100, filter: { price: { gte: 100 } } });
    const want = products(40).filter((p) => p.brand === 'Brand3' && p.price >= 100).map((p) => p.sku);
    expect(brand3.results.slice(0, want.length).map((h) => h.id).sort()).toEqual(want.sort());
    expect(brand3.results.every((h) => (h.fields.price as number) >= 100)).toBe(true);
    const h = await se.search('keywords', 'sony headphones', { rerank: false, explain: true });
    expect(h.recall).toBe('hybrid');
    expect(h.results.find((r) => r.id === 'WH-1000XM5')?.explain?.recall.keywordRank).toBe(1);
    expect(await col.info()).toMatchObject({ keywords: [{ template: '{sku} | {brand}', weight: 4 }, { template: '{title_en} {title_zh}', weight: 1 }] });
    await se.close();
  });

  it('fusion signals are normalised over the collection', async () => {
    const se = await open(location());
    await (await se.create('signals', { mapping: MAPPING })).ingest(products(20));
    const r = await se.search('signals', 'headphones', { recall: 'vector', rerank: false, explain: true, fusion: { signals: { price: 0.5 } } });
    const prices = products(20).map((p) => p.price);
    const top = r.results[0].explain!.signals.price;
    expect(top.normalised).toBeCloseTo((top.value - Math.min(...prices)) / (Math.max(...prices) - Math.min(...prices)), 9);
    await se.close();
  });

  it('hostile values round-trip and never reach SQL as text: NUL, quotes, __proto__, injection attempts', async () => {
    const se = await open(location());
    const col = await se.create('hostile', { mapping: { ...MAPPING, keyword: '{title_en}' } });
    const evil = [
      { sku: "x'); DROP TABLE qrank_collections; --", title_en: "Robert'); DROP TABLE students;--", category: 'Audio', price: 1 },
      { sku: 'nul\0id', title_en: 'text with a \0 NUL', category: 'a\0b', price: 2, __proto__: { polluted: true } },
      { sku: 'emoji 🎧', title_en: '"quoted" \\backslash\\ $1 ? :name %s', category: "O'Brien", price: 3, nested: { 'a.b': [1, { c: '\0' }] } },
    ].map((p) => JSON.parse(JSON.stringify(p)) as Record<string, unknown>);
    expect(await col.ingest(evil)).toMatchObject({ upserted: 3, rejected: 0 });
    const all = await vectorSearch(se, 'hostile', "'; SELECT pg_sleep(10); --", { filter: { title_en: { ne: "'; DROP" } } });
    expect(all.results.map((h) => h.id).sort()).toEqual(evil.map((p) => p.sku as string).sort());
    const byId = new Map(all.results.map((h) => [h.id, h.fields]));
    for (const p of evil) expect(byId.get(p.sku as string)).toEqual(p);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect((await vectorSearch(se, 'hostile', 'x', { filter: { category: "O'Brien" } })).results.map((h) => h.id)).toEqual(['emoji 🎧']);
    expect((await vectorSearch(se, 'hostile', 'x', { filter: { sku: "x'); DROP TABLE qrank_collections; --" } })).results).toHaveLength(1);
    expect((await se.search('hostile', 'robert students', { recall: 'keyword', rerank: false })).results[0].id).toBe(evil[0].sku);
    expect(await col.delete(['nul\0id'])).toBe(1);
    for (const name of ['../x', 'a b', 'x\0', "x'y", 'q"'.repeat(3)]) await rejectsWithCode(se.create(name), 'INVALID_INPUT');
    expect(await se.names()).toContain('hostile');
    await se.close();
  });

  it('drop removes the collection, and its name can be made again', async () => {
    const se = await open(location());
    await (await se.create('dropme', { mapping: MAPPING })).ingest(products(5));
    await se.drop('dropme');
    expect(await se.has('dropme')).toBe(false);
    await rejectsWithCode(se.search('dropme', 'x'), 'COLLECTION_NOT_FOUND');
    expect(await (await se.create('dropme', { mapping: MAPPING })).count()).toBe(0);
    await se.close();
  });
});

describe('replicas on one Postgres store', () => {
  it('a collection dropped and made again through one engine is seen so by the other (no stale handle)', async () => {
    const [a, b] = await Promise.all([open(pg.url), open(pg.url)]);
    await (await a.create('shared', { mapping: MAPPING })).ingest(products(10));
    expect((await vectorSearch(b, 'shared', 'headphones')).results).toHaveLength(10);
    await a.drop('shared');
    await rejectsWithCode(b.search('shared', 'headphones'), 'COLLECTION_NOT_FOUND');
    expect(await b.has('shared')).toBe(false);
    await (await a.create('shared', { mapping: MAPPING })).ingest(products(3, 100));
    expect((await vectorSearch(b, 'shared', 'headphones')).results.map((h) => h.id).sort()).toEqual(['sku-100', 'sku-101', 'sku-102']);
    // dropped and made again between two searches of b: one search may say so, the next one works
    await a.drop('shared');
    await (await a.create('shared', { mapping: MAPPING })).ingest(products(2, 200));
    const first = await vectorSearch(b, 'shared', 'headphones').catch((e: { code: string }) => e.code);
    if (first !== 'COLLECTION_NOT_FOUND') expect((first as { results: unknown[] }).results).toHaveLength(2);
    expect((await vectorSearch(b, 'shared', 'headphones')).results).toHaveLength(2);
    await Promise.all([a.close(), b.close()]);
  });
});

describe('both stores', () => {
  it('give the same candidates and scores for the same vectors with exact search', async () => {
    const engines = await Promise.all(STORES.map((s) => open(s.location())));
    for (const se of engines) await (await se.create('exact', { index: { kind: 'flat' }, mapping: MAPPING })).ingest(products(150));
    for (const [query, filter] of [['wireless headphones', undefined], ['耳机 Brand3', { category: CATEGORIES[1] }]] as const) {
      const [a, b] = await Promise.all(engines.map((se) => vectorSearch(se, 'exact', query, { filter, recallK: 40, topN: 40 })));
      expect(b.results.map((h) => h.id)).toEqual(a.results.map((h) => h.id));
      b.results.forEach((h, i) => expect(h.recallScore).toBeCloseTo(a.results[i].recallScore, 5));
    }
    await Promise.all(engines.map((se) => se.close()));
  });

  it('a Postgres without the vector extension, or unreachable, is a clear error naming it', async () => {
    const bare = await startPglite({ vector: false });
    try {
      const se = await open(bare.url);
      expect((await rejectsWithCode(se.create('x'), 'UNSUPPORTED')).message).toMatch(/lacks the extension 'vector' \(pgvector\)/);
      await se.close();
    } finally {
      await bare.stop();
    }
    const se = await open('postgres://postgres:secret@127.0.0.1:1/postgres');
    const e = await rejectsWithCode(se.create('x'), 'STORE_UNAVAILABLE');
    expect(e.message).toMatch(/127\.0\.0\.1:1/);
    expect(e.message).not.toMatch(/secret/);
    await rejectsWithCode(se.ready(), 'STORE_UNAVAILABLE');
    await se.close();
  });
});
