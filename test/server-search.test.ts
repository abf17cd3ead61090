/**
 * The search and collections routes of the server, over a real SearchEngine in a temporary data
 * directory, with the tiny test models. Results through HTTP are compared with the library's own
 * SearchEngine.search on the same collection.
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo, Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { Embedder, Reranker } from '../lib/index';
import { SearchEngine } from '../lib/search/engine';
import { createApp } from '../lib/server/app';
import { MAPPING, MODELS, makeDocs, openApiChecker, products, recordingApp } from './helpers';

const dir = mkdtempSync(join(tmpdir(), 'qrank-server-search-'));
let rr: Reranker;
let em: Embedder;
let se: SearchEngine;
let http: Server;
let bare: Server;
let base: string;
let bareBase: string;

let recorded: ReturnType<typeof recordingApp>;
const listen = async (app: ReturnType<typeof createApp>['app']) => {
  const s = app.listen(0, '127.0.0.1');
  await new Promise((r) => s.once('listening', r));
  return [s, `http://127.0.0.1:${(s.address() as AddressInfo).port}`] as const;
};

beforeAll(async () => {
  [rr, em] = await Promise.all([Reranker.load({ model: MODELS.reranker, threads: 1 }), Embedder.load({ model: MODELS.embedder, threads: 1 })]);
  se = await SearchEngine.open({ dir, embedder: em, reranker: rr });
  recorded = recordingApp(createApp({ reranker: rr, embedder: em, search: se, logger: pino({ level: 'silent' }), limits: { maxDocuments: 100, maxTokensPerDocument: 48, maxUploadBytes: 200_000 } }).app);
  [http, base] = await listen(recorded.app);
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

  it('bounds the index parameters that size what the server allocates', async () => {
    for (const index of [{ kind: 'hnsw', m: 1e8 }, { kind: 'hnsw', efConstruction: 1e6 }, { kind: 'hnsw', efSearch: 2 ** 31 }, { kind: 'ivf', nlist: 1e9 }, { kind: 'ivf', nprobe: 1e7 }, { kind: 'ivfpq', pqM: 1e6 }]) {
      const r = await call('POST', '/v1/collections', { name: 'huge', index });
      expect({ index, status: r.status }).toEqual({ index, status: 400 });
      expect(r.body.error.message).toMatch(/^index\./);
    }
    expect((await call('GET', '/v1/collections/huge')).status).toBe(404);
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

  it('checks the collection name in the path: nothing outside the data directory is opened, told apart or deleted', async () => {
    const outside = `qrank-outside-${process.pid}`;
    writeFileSync(join(dir, '..', `${outside}.sqlite`), 'not a collection');
    try {
      for (const [method, name] of [['GET', outside], ['GET', 'nope-at-all'], ['DELETE', outside], ['POST', outside]] as const) {
        const path = `/v1/collections/..%2F${name}${method === 'POST' ? '/documents' : ''}`;
        const r = await call(method, path, method === 'POST' ? { documents: [] } : undefined);
        expect({ path, status: r.status, code: r.body.error?.code }).toEqual({ path, status: 400, code: 'INVALID_INPUT' });
        expect(r.body.error.message).toMatch(/^name \(in the path\): /);
      }
      expect(existsSync(join(dir, '..', `${outside}.sqlite`))).toBe(true);
    } finally {
      rmSync(join(dir, '..', `${outside}.sqlite`), { force: true });
    }
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

describe('streamed uploads (NDJSON, CSV)', () => {
  const upload = async (name: string, body: string | Buffer, type: string) => {
    const r = await fetch(`${base}/v1/collections/${name}/documents`, { method: 'POST', headers: { 'content-type': type }, body });
    return { status: r.status, body: await r.json() };
  };
  const ndjson = (rows: object[]) => rows.map((x) => JSON.stringify(x)).join('\n') + '\n';

  it('ingests an NDJSON upload beyond the documents-per-request limit, with bad lines reported', async () => {
    await call('POST', '/v1/collections', { name: 'bulk', index: { kind: 'flat' }, mapping: MAPPING });
    const rows = products(400, 1000);
    const body = ndjson(rows.slice(0, 200)) + '{broken\n' + ndjson(rows.slice(200));
    const r = await upload('bulk', body, 'application/x-ndjson');
    expect(r).toMatchObject({ status: 200, body: { read: 401, upserted: 400, embedded: 400, rejected: 1, size: 400 } });
    expect(r.body.errors).toEqual([{ at: 201, reason: expect.stringMatching(/^invalid JSON/) }]);
    const hit = await call('POST', '/v1/search', { collection: 'bulk', query: 'x', top_n: 1, filter: { sku: 'sku-1399' }, rerank: false });
    expect(hit.body.results[0].fields.title_zh).toBe(rows[399].title_zh);
  });

  it('ingests a CSV upload, numbers parsed by the mapping', async () => {
    const rows = products(30, 5000);
    const cols = Object.keys(rows[0]);
    const csv = [cols.join(','), ...rows.map((x) => cols.map((c) => `"${String((x as Record<string, unknown>)[c])}"`).join(','))].join('\n');
    const r = await upload('bulk', csv, 'text/csv; charset=utf-8');
    expect(r.body).toMatchObject({ read: 30, upserted: 30, rejected: 0, size: 430 });
    const hit = await call('POST', '/v1/search', { collection: 'bulk', query: 'x', top_n: 1, filter: { sku: 'sku-5000' }, rerank: false });
    expect(hit.body.results[0].fields.price).toBe(rows[0].price);
  });

  it('refuses invalid UTF-8, oversized uploads, other charsets and collections without a mapping; what was stored stays consistent', async () => {
    const good = Buffer.from(ndjson(products(5, 6000)));
    const bad = await upload('bulk', Buffer.concat([good, Buffer.from([0xff, 0x0a])]), 'application/x-ndjson');
    expect(bad).toMatchObject({ status: 400, body: { error: { code: 'INVALID_INPUT' } } });
    expect(bad.body.error.message).toMatch(/not valid UTF-8/);
    const big = await upload('bulk', '\n'.repeat(250_000), 'application/x-ndjson');
    expect(big).toMatchObject({ status: 413, body: { error: { code: 'INPUT_TOO_LARGE' } } });
    expect((await upload('bulk', 'id\n1\n', 'text/csv; charset=latin1')).status).toBe(415);
    await call('POST', '/v1/collections', { name: 'nomap' });
    expect((await upload('nomap', good, 'application/x-ndjson')).body.error.message).toMatch(/^mapping:/);
    const info = (await call('GET', '/v1/collections/bulk')).body;
    expect(info.pending).toBe(0);
    expect(info.vectors).toBe(info.size);
    expect(info.size).toBeGreaterThanOrEqual(430);
    await call('DELETE', '/v1/collections/nomap');
    await call('DELETE', '/v1/collections/bulk');
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
    for (const k of ['embed_ms', 'keyword_ms', 'recall_ms', 'fetch_ms', 'rerank_ms', 'total_ms']) expect(r.body.timings[k]).toBeGreaterThanOrEqual(0);
    expect(r.body.recall).toBe('hybrid');
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

  it('recalls by keyword, vector or both: recall, keyword_k and fusion as the library takes them, ranks in explain', async () => {
    const query = 'stainless steel kitchen knife';
    const r = await call('POST', '/v1/search', { collection: 'shop', query, recall: 'keyword', rerank: false, top_n: 5, explain: true });
    expect(r.status).toBe(200);
    expect(r.body.recall).toBe('keyword');
    expect(r.body.results[0].id).toBe('sku-7'); // the one product whose title changed to a knife set
    expect(r.body.results[0].explain.recall).toEqual({ keyword_rank: 1, keyword_score: r.body.results[0].recall_score });
    expect(r.body.timings.keyword_ms).toBeGreaterThan(0);
    const lib = await se.search('shop', query, { recall: 'keyword', rerank: false, topN: 5 });
    expect(r.body.results.map((h: { id: string }) => h.id)).toEqual(lib.results.map((h) => h.id));

    const body = { collection: 'shop', query, recall: 'hybrid', recall_k: 20, keyword_k: 5, top_n: 20, rerank: false, explain: true, fusion: { rrf_k: 10, keyword_weight: 2, vector_weight: 0.5 } };
    const h = await call('POST', '/v1/search', body);
    expect(h.status).toBe(200);
    expect(h.body.recall).toBe('hybrid');
    const fused = await se.search('shop', query, { recall: 'hybrid', recallK: 20, keywordK: 5, topN: 20, rerank: false, explain: true, fusion: { rrfK: 10, keywordWeight: 2, vectorWeight: 0.5 } });
    expect(h.body.results.map((x: { id: string }) => x.id)).toEqual(fused.results.map((x) => x.id));
    for (const x of h.body.results) {
      const e = x.explain.recall;
      expect(e.fused_score).toBeCloseTo((e.keyword_rank ? 2 / (10 + e.keyword_rank) : 0) + (e.vector_rank ? 0.5 / (10 + e.vector_rank) : 0), 12);
      expect(e.keyword_rank === undefined || e.keyword_rank <= 5).toBe(true);
    }
    expect((await call('POST', '/v1/search', { collection: 'shop', query, rerank: false })).body.recall).toBe('hybrid'); // the default
    expect((await call('POST', '/v1/search', { collection: 'shop', query: '"*"', recall: 'keyword', rerank: false })).body.recall).toBe('vector'); // no terms
    expect((await call('GET', '/v1/collections/shop')).body.keywords).toEqual([{ template: MAPPING.rerank, weight: 1 }]);

    const bad: [unknown, RegExp][] = [
      [{ recall: 'bm25' }, /^recall:/],
      [{ keyword_k: 0 }, /^keyword_k:/],
      [{ keyword_k: 10_001 }, /^keyword_k:/],
      [{ fusion: { rrf_k: -1 } }, /^fusion\.rrf_k:/],
      [{ fusion: { keyword_weight: 1000 } }, /^fusion\.keyword_weight:/],
      [{ fusion: { vector_weight: 'high' } }, /^fusion\.vector_weight:/],
      [{ fusion: { rrfK: 60 } }, /rrfK/],
    ];
    for (const [extra, message] of bad) {
      const res = await call('POST', '/v1/search', { collection: 'shop', query, ...(extra as object) });
      expect({ extra, status: res.status, code: res.body.error?.code }).toEqual({ extra, status: 400, code: 'INVALID_INPUT' });
      expect(res.body.error.message).toMatch(message);
    }
    // a collection without a keyword index: vector by default, keyword recall refused with the reason
    expect((await call('POST', '/v1/collections', { name: 'nokeywords', mapping: { ...MAPPING, keyword: false } })).status).toBe(201);
    await call('POST', '/v1/collections/nokeywords/documents', { documents: products(5) });
    expect((await call('POST', '/v1/search', { collection: 'nokeywords', query, rerank: false })).body.recall).toBe('vector');
    const refused = await call('POST', '/v1/search', { collection: 'nokeywords', query, recall: 'keyword' });
    expect(refused.status).toBe(400);
    expect(refused.body.error.message).toMatch(/needs a keyword index/);
    expect((await call('DELETE', '/v1/collections/nokeywords')).status).toBe(200);
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
    // recall_k candidates are reranked: the documents-per-request limit (100 here) holds for them too
    const deep = await call('POST', '/v1/search', { collection: 'shop', query: 'x', recall_k: 101 });
    expect(deep).toMatchObject({ status: 413, body: { error: { code: 'TOO_MANY_DOCUMENTS', message: expect.stringMatching(/recall_k/) } } });
    expect((await call('POST', '/v1/search', { collection: 'shop', query: 'x', recall_k: 100, top_n: 1 })).status).toBe(200);
    // without recall_k, a server that allows fewer documents than the default 100 reranks no more
    const [strict, strictBase] = await listen(createApp({ reranker: rr, embedder: em, search: se, logger: pino({ level: 'silent' }), limits: { maxDocuments: 20 } }).app);
    try {
      const r = await call('POST', '/v1/search', { collection: 'shop', query: 'x', top_n: 5 }, strictBase);
      expect(r.status).toBe(200);
      expect(r.body.candidates).toBe(20);
    } finally {
      await new Promise((ok) => strict.close(ok));
    }
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

  it('exports the search caches in /metrics', async () => {
    await call('POST', '/v1/search', { collection: 'shop', query: 'cache me', top_n: 3 });
    await call('POST', '/v1/search', { collection: 'shop', query: 'cache me', top_n: 3 });
    const text = await (await fetch(`${base}/metrics`)).text();
    const value = (name: string, cache: string) => Number(text.match(new RegExp(`^${name}\\{cache="${cache}"\\} (\\d+)`, 'm'))?.[1]);
    const c = se.cacheStats();
    expect(value('qrank_search_cache_hits', 'query_embeddings')).toBe(c.queryEmbeddings.hits);
    expect(value('qrank_search_cache_hits', 'rerank_scores')).toBe(c.rerankScores.hits);
    expect(value('qrank_search_cache_misses', 'rerank_scores')).toBe(c.rerankScores.misses);
    expect(c.queryEmbeddings.hits).toBeGreaterThan(0);
  });

  it('says so when the server has no data directory', async () => {
    const r = await call('POST', '/v1/search', { collection: 'shop', query: 'x' }, bareBase);
    expect(r).toMatchObject({ status: 404, body: { error: { code: 'NO_SEARCH' } } });
  });
});

describe('token limit per document (maxTokensPerDocument: 48)', () => {
  const long = makeDocs(1, 120, 5)[0];
  const cut = (model: Reranker | Embedder, t: string, n: number) => model.detokenize(model.tokenize(t).slice(0, n));

  it('cuts long documents token-exactly by default, or to max_tokens_per_doc when lower', async () => {
    expect(rr.countTokens(long)).toBeGreaterThan(48);
    const r = await call('POST', '/v1/rerank', { query: 'auriculares', documents: ['short one', long] });
    expect(r.status).toBe(200);
    const expected = await rr.score([{ query: 'auriculares', document: 'short one' }, { query: 'auriculares', document: cut(rr, long, 48) }]);
    const byIndex = new Map(r.body.results.map((x: { index: number; relevance_score: number }) => [x.index, x.relevance_score]));
    expect(byIndex.get(0)).toBeCloseTo(expected[0], 6);
    expect(byIndex.get(1)).toBeCloseTo(expected[1], 6);
    const r8 = await call('POST', '/v1/rerank', { query: 'auriculares', documents: [long], max_tokens_per_doc: 8 });
    const [s8] = await rr.score([{ query: 'auriculares', document: cut(rr, long, 8) }]);
    expect(r8.body.results[0].relevance_score).toBeCloseTo(s8, 6);
  });

  it('refuses them with 413 INPUT_TOO_LONG when the request says truncate: false', async () => {
    const r = await call('POST', '/v1/rerank', { query: 'q', documents: ['ok', long], truncate: false });
    expect(r).toMatchObject({ status: 413, body: { error: { code: 'INPUT_TOO_LONG' } } });
    expect(r.body.error.message).toMatch(/^documents\[1\] is \d+ tokens, more than the limit of 48/);
    const e = await call('POST', '/v1/embeddings', { input: [long], truncate: false });
    expect(e).toMatchObject({ status: 413, body: { error: { code: 'INPUT_TOO_LONG' } } });
  });

  it('leaves the cutting to the core: the JS thread tokenises nothing; /score gets the limit too', async () => {
    const spies = [vi.spyOn(rr, 'tokenize'), vi.spyOn(em, 'tokenize'), vi.spyOn(rr, 'detokenize'), vi.spyOn(em, 'detokenize')];
    try {
      expect((await call('POST', '/v1/rerank', { query: 'q', documents: [long] })).status).toBe(200);
      expect((await call('POST', '/v1/embeddings', { input: [long] })).status).toBe(200);
      for (const s of spies) expect(s).not.toHaveBeenCalled();
    } finally {
      for (const s of spies) s.mockRestore();
    }
    const r = await call('POST', '/score', { text_1: 'auriculares', text_2: [long] });
    const [want] = await rr.score([{ query: 'auriculares', document: cut(rr, long, 48) }]);
    expect(r.body.data[0].score).toBeCloseTo(want, 6);
  });

  it('cuts embedding inputs the same way', async () => {
    const r = await call('POST', '/v1/embeddings', { input: [long], encoding_format: 'float' });
    const [expected] = await em.embed([cut(em, long, 48)], { kind: 'document' });
    expect(r.body.data[0].embedding).toHaveLength(expected.length);
    r.body.data[0].embedding.forEach((x: number, i: number) => expect(x).toBeCloseTo(expected[i], 5));
    expect(r.body.usage.prompt_tokens).toBeLessThanOrEqual(50);
  });
});

describe('OpenAPI', () => {
  it('every JSON response of this file matched the schema of its route in /openapi.json', async () => {
    const checker = openApiChecker(await (await fetch(`${base}/openapi.json`)).json());
    for (const r of recorded.seen) checker.check(r.method, r.url, r.status, r.body);
    const routes = new Set(recorded.seen.map((r) => `${r.method} ${new URL(r.url, 'http://x').pathname.replace(/\/v1\/collections\/[^/]+/, '/v1/collections/{name}')}`));
    for (const route of ['POST /v1/search', 'GET /v1/collections', 'POST /v1/collections', 'GET /v1/collections/{name}', 'DELETE /v1/collections/{name}', 'POST /v1/collections/{name}/documents', 'DELETE /v1/collections/{name}/documents']) {
      expect(routes).toContain(route);
    }
    expect(checker.checked).toBe(recorded.seen.length);
  });
});
