/**
 * The search and collections routes of the server, over a real SearchEngine in a temporary data
 * directory, with the tiny test models. Results through HTTP are compared with the library's own
 * SearchEngine.search on the same collection.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import type { AddressInfo, Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Embedder, Reranker } from '../lib/index';
import { SearchEngine } from '../lib/search/engine';
import { createApp } from '../lib/server/app';
import { MAPPING, MODELS, products } from './helpers';

const dir = mkdtempSync(join(tmpdir(), 'qrank-server-search-'));
let rr: Reranker;
let em: Embedder;
let se: SearchEngine;
let http: Server;
let bare: Server;
let base: string;
let bareBase: string;

const listen = async (app: ReturnType<typeof createApp>['app']) => {
  const s = app.listen(0, '127.0.0.1');
  await new Promise((r) => s.once('listening', r));
  return [s, `http://127.0.0.1:${(s.address() as AddressInfo).port}`] as const;
};

beforeAll(async () => {
  [rr, em] = await Promise.all([Reranker.load({ model: MODELS.reranker, threads: 1 }), Embedder.load({ model: MODELS.embedder, threads: 1 })]);
  se = await SearchEngine.open({ dir, embedder: em, reranker: rr });
  [http, base] = await listen(createApp({ reranker: rr, embedder: em, search: se, logger: pino({ level: 'silent' }), limits: { maxDocuments: 100 } }).app);
  [bare, bareBase] = await listen(createApp({ reranker: rr, embedder: em, logger: pino({ level: 'silent' }) }).app);
});
afterAll(async () => {
  await Promise.all([new Promise((r) => http?.close(r)), new Promise((r) => bare?.close(r))]);
  se?.close();
  await Promise.all([rr?.close(), em?.close()]);
  rmSync(dir, { recursive: true, force: true });
});

const call = async (method: string, path: string, body?: unknown, at = base) => {
  const r = await fetch(at + path, { method, headers: { 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
  return { status: r.status, body: await r.json() };
};

describe('collections', () => {
  it('creates a collection once; a second create is a 409', async () => {
    const a = await call('POST', '/v1/collections', { name: 'shop', index: { kind: 'hnsw', m: 16 }, mapping: MAPPING });
    expect(a.status).toBe(201);
    expect(a.body).toMatchObject({ name: 'shop', size: 0, pending: 0, index: { kind: 'hnsw', m: 16, dim: em.info.embeddingLength } });
    const b = await call('POST', '/v1/collections', { name: 'shop' });
    expect(b).toMatchObject({ status: 409, body: { error: { code: 'COLLECTION_EXISTS' } } });
    const bad = await call('POST', '/v1/collections', { name: '../etc', index: { kind: 'btree' } });
    expect(bad.status).toBe(400);
    expect(bad.body.error.message).toMatch(/^name:/);
  });

  it('upserts documents idempotently and re-embeds only what changed', async () => {
    const first = await call('POST', '/v1/collections/shop/documents', { documents: products(60) });
    expect(first).toMatchObject({ status: 200, body: { read: 60, upserted: 60, embedded: 60, rejected: 0, size: 60 } });
    const again = await call('POST', '/v1/collections/shop/documents', { documents: products(60) });
    expect(again.body).toMatchObject({ upserted: 0, unchanged: 60, embedded: 0, size: 60 });
    const changed = products(60);
    changed[7].title_en = 'Stainless steel kitchen knife set';
    const third = await call('POST', '/v1/collections/shop/documents', { documents: changed });
    expect(third.body).toMatchObject({ upserted: 1, unchanged: 59, embedded: 1, size: 60 });
    const info = await call('GET', '/v1/collections/shop');
    expect(info.body).toMatchObject({ name: 'shop', size: 60, pending: 0, vectors: 60, mapping: MAPPING });
    const list = await call('GET', '/v1/collections');
    expect(list.body.data.map((c: { name: string }) => c.name)).toEqual(['shop']);
  });

  it('reports records without an id, and keeps the good ones', async () => {
    await call('POST', '/v1/collections', { name: 'partial', mapping: MAPPING });
    const r = await call('POST', '/v1/collections/partial/documents', { documents: [{ title_en: 'no sku' }, ...products(3)] });
    expect(r.body).toMatchObject({ read: 4, upserted: 3, rejected: 1, size: 3 });
    expect(r.body.errors[0]).toMatchObject({ at: 1 });
    expect(r.body.errors[0].reason).toMatch(/sku/);
  });

  it('answers 404 for an unknown collection and 413 beyond the documents limit', async () => {
    expect((await call('GET', '/v1/collections/nope')).body.error.code).toBe('COLLECTION_NOT_FOUND');
    expect((await call('POST', '/v1/collections/nope/documents', { documents: [] })).status).toBe(404);
    expect((await call('POST', '/v1/search', { collection: 'nope', query: 'x' })).status).toBe(404);
    const big = await call('POST', '/v1/collections/shop/documents', { documents: products(101) });
    expect(big).toMatchObject({ status: 413, body: { error: { code: 'TOO_MANY_DOCUMENTS' } } });
    expect((await call('GET', '/v1/collections/shop')).body.size).toBe(60);
    // 100 000 documents within the body limit: refused by count before any work, the server stays up
    const many = await call('POST', '/v1/rerank', { query: 'q', documents: Array(100_000).fill('') });
    expect(many).toMatchObject({ status: 413, body: { error: { code: 'TOO_MANY_DOCUMENTS' } } });
    expect((await call('POST', '/v1/rerank', { query: 'q', documents: ['a'] })).status).toBe(200);
  });
});

describe('POST /v1/search', () => {
  it('returns what the library returns: same ids, same scores, timings per stage', async () => {
    const query = '无线蓝牙降噪耳机';
    const r = await call('POST', '/v1/search', { collection: 'shop', query, recall_k: 30, top_n: 5 });
    expect(r.status).toBe(200);
    const lib = await se.search('shop', query, { recallK: 30, topN: 5 });
    expect(r.body.results.map((h: { id: string }) => h.id)).toEqual(lib.results.map((h) => h.id));
    r.body.results.forEach((h: { score: number; rerank_score: number; recall_score: number }, i: number) => {
      expect(h.score).toBeCloseTo(lib.results[i].score, 6);
      expect(h.rerank_score).toBeCloseTo(lib.results[i].rerankScore!, 6);
      expect(h.recall_score).toBeCloseTo(lib.results[i].recallScore, 5);
    });
    expect(r.body.candidates).toBe(30);
    expect(r.body.reranked).toBe(true);
    for (const k of ['embed_ms', 'recall_ms', 'fetch_ms', 'rerank_ms', 'total_ms']) expect(r.body.timings[k]).toBeGreaterThanOrEqual(0);
  });

  it('applies the filter inside recall and still returns top_n', async () => {
    const r = await call('POST', '/v1/search', { collection: 'shop', query: 'headphones', recall_k: 10, top_n: 10, filter: { category: 'Kitchen', price: { lte: 150 } } });
    const expected = products(60).filter((p) => p.category === 'Kitchen' && p.price <= 150).length;
    expect(expected).toBeGreaterThan(10);
    expect(r.body.results).toHaveLength(10);
    for (const h of r.body.results) {
      expect(h.fields.category).toBe('Kitchen');
      expect(h.fields.price).toBeLessThanOrEqual(150);
    }
  });

  it('explains fusion; recall-only searches carry no rerank score', async () => {
    const r = await call('POST', '/v1/search', { collection: 'shop', query: 'auriculares', top_n: 3, fusion: { signals: { popularity: 0.25 } }, explain: true });
    for (const h of r.body.results) {
      const e = h.explain;
      expect(e.relevance_weight).toBeCloseTo(0.75, 12);
      expect(h.score).toBeCloseTo(0.75 * e.relevance + e.signals.popularity.contribution, 9);
    }
    const recallOnly = await call('POST', '/v1/search', { collection: 'shop', query: 'auriculares', top_n: 3, rerank: false });
    expect(recallOnly.body.reranked).toBe(false);
    expect(recallOnly.body.results[0].rerank_score).toBeUndefined();
    expect(recallOnly.body.results[0].score).toBe(recallOnly.body.results[0].recall_score);
  });

  it('rejects bad requests with the field named', async () => {
    const cases: [unknown, RegExp][] = [
      [{ collection: 'shop' }, /^query:/],
      [{ collection: 'shop', query: '   ' }, /^query: must not be empty/],
      [{ collection: 'shop', query: 'x', filter: { price: { near: 3 } } }, /^filter\.price/],
      [{ collection: 'shop', query: 'x', fusion: { signals: { popularity: 2 } } }, /^fusion\.signals\.popularity/],
      [{ collection: 'shop', query: 'x', top_n: 0 }, /^top_n/],
      [{ collection: 'shop', query: 'x', extra: 1 }, /extra/],
    ];
    for (const [body, message] of cases) {
      const r = await call('POST', '/v1/search', body);
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect(r.body.error.code).toBe('INVALID_INPUT');
      expect(r.body.error.message).toMatch(message);
    }
    expect((await call('POST', '/v1/search', { collection: 'shop', query: 'x', top_n: 100_000 })).status).toBe(413);
  });

  it('deletes products: gone from the store and from every later search', async () => {
    const before = await call('POST', '/v1/search', { collection: 'shop', query: 'Product 3', recall_k: 60, top_n: 60, rerank: false });
    expect(before.body.results).toHaveLength(60);
    const r = await call('DELETE', '/v1/collections/shop/documents', { ids: ['sku-3', 'sku-4', 'missing'] });
    expect(r.body).toEqual({ deleted: 2, size: 58 });
    const after = await call('POST', '/v1/search', { collection: 'shop', query: 'Product 3', recall_k: 60, top_n: 60, rerank: false });
    const ids = after.body.results.map((h: { id: string }) => h.id);
    expect(ids).toHaveLength(58);
    expect(ids).not.toContain('sku-3');
    expect(ids).not.toContain('sku-4');
  });

  it('deletes a collection with its files', async () => {
    expect((await call('DELETE', '/v1/collections/partial')).body).toEqual({ name: 'partial', deleted: true });
    expect((await call('GET', '/v1/collections/partial')).status).toBe(404);
    expect((await call('GET', '/v1/collections')).body.data.map((c: { name: string }) => c.name)).toEqual(['shop']);
  });

  it('says so when the server has no data directory', async () => {
    const r = await call('POST', '/v1/search', { collection: 'shop', query: 'x' }, bareBase);
    expect(r).toMatchObject({ status: 404, body: { error: { code: 'NO_SEARCH' } } });
  });
});
