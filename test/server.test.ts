/**
 * The HTTP server against the clients operators already use: the official cohere-ai (v1 and v2)
 * and openai packages unchanged, and plain fetch for the Jina, TEI and vLLM shapes. The server runs
 * in this process on a free loopback port with the tiny test models.
 */
import type { AddressInfo, Server } from 'node:net';
import { CohereClient, CohereClientV2 } from 'cohere-ai';
import OpenAI from 'openai';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Embedder, Reranker } from '../lib/index';
import { createApp } from '../lib/server/app';
import { MODELS, MODEL_DIR, makeDocs, openApiChecker, recordingApp, throwsWithCode } from './helpers';

let rr: Reranker;
let em: Embedder;
let http: Server;
let base: string;
let server: ReturnType<typeof createApp>;
let recorded: ReturnType<typeof recordingApp>;
const KEY = 'test-key';
const query = 'auriculares bluetooth';
const docs = makeDocs(6, 8, 3);

beforeAll(async () => {
  [rr, em] = await Promise.all([Reranker.load({ model: MODELS.reranker, threads: 1 }), Embedder.load({ model: MODELS.embedder, threads: 1 })]);
  server = createApp({ reranker: rr, embedder: em, apiKeys: [KEY], logger: pino({ level: 'silent' }), limits: { maxDocuments: 50, maxBodyBytes: 64 * 1024, maxConcurrent: 4 } });
  recorded = recordingApp(server.app);
  http = recorded.app.listen(0, '127.0.0.1');
  await new Promise((r) => http.once('listening', r));
  base = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await new Promise((r) => http?.close(r));
  await Promise.all([rr?.close(), em?.close()]);
});

const post = (path: string, body: unknown, headers: Record<string, string> = {}) =>
  fetch(base + path, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}`, ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });

describe('drop-in clients', () => {
  it('cohere-ai v1 client reranks with the same scores as the library', async () => {
    const client = new CohereClient({ token: KEY, environment: base });
    const r = await client.rerank({ query, documents: docs, topN: 3, returnDocuments: true, model: 'qrank' });
    const want = await rr.rerank(query, docs, { topN: 3 });
    expect(r.results.map((x) => x.index)).toEqual(want.map((x) => x.index));
    r.results.forEach((x, i) => expect(x.relevanceScore).toBeCloseTo(want[i].score, 5));
    expect(r.results[0].document?.text).toBe(docs[want[0].index]);
  });

  it('cohere-ai v2 client reranks', async () => {
    const client = new CohereClientV2({ token: KEY, environment: base });
    const r = await client.rerank({ model: 'qrank', query, documents: docs, topN: 2 });
    expect(r.results).toHaveLength(2);
    expect(r.results[0].relevanceScore).toBeGreaterThanOrEqual(r.results[1].relevanceScore);
  });

  it('openai client embeds, base64 (its default) and float alike', async () => {
    const client = new OpenAI({ apiKey: KEY, baseURL: `${base}/v1` });
    const texts = ['无线蓝牙降噪耳机', 'auriculares bluetooth'];
    const b64 = await client.embeddings.create({ model: 'qrank', input: texts });
    const flt = await client.embeddings.create({ model: 'qrank', input: texts, encoding_format: 'float' });
    const want = await em.embed(texts, { kind: 'document' });
    expect(b64.data).toHaveLength(2);
    b64.data.forEach((d, i) => d.embedding.forEach((x, j) => expect(x).toBeCloseTo(want[i][j], 6)));
    flt.data.forEach((d, i) => d.embedding.forEach((x, j) => expect(x).toBeCloseTo(want[i][j], 6)));
    expect(b64.usage.prompt_tokens).toBeGreaterThan(0);
    const short = await client.embeddings.create({ model: 'qrank', input: 'x', dimensions: 16, encoding_format: 'float' });
    expect(short.data[0].embedding).toHaveLength(16);
  });
});

describe('other shapes, by plain fetch', () => {
  it('Jina (POST /v1/rerank with {text} documents) gets usage and results', async () => {
    const r = await (await post('/v1/rerank', { model: 'jina', query, documents: docs.map((text) => ({ text })), top_n: 2, return_documents: true })).json();
    expect(r.results).toHaveLength(2);
    expect(r.results[0].document.text).toBe(docs[r.results[0].index]);
    expect(r.usage.total_tokens).toBeGreaterThan(0);
  });

  it('TEI (POST /rerank with texts) returns a sorted array, raw scores on request', async () => {
    const r = await (await post('/rerank', { query, texts: docs, return_text: true })).json();
    expect(r).toHaveLength(docs.length);
    expect(r[0].score).toBeGreaterThanOrEqual(r[1].score);
    expect(r[0].text).toBe(docs[r[0].index]);
    const raw = await (await post('/rerank', { query, texts: docs, raw_scores: true })).json();
    expect(raw[0].score).toBeCloseTo(Math.log(r[0].score / (1 - r[0].score)), 4);
    const tooLong = await post('/rerank', { query, texts: ['word '.repeat(2000)], truncate: false });
    expect(tooLong.status).toBe(413);
  });

  it('vLLM (POST /score) scores one-to-many and pairwise, in order', async () => {
    const r = await (await post('/score', { model: 'm', text_1: query, text_2: docs })).json();
    const want = await rr.score(docs.map((document) => ({ query, document })));
    expect(r.data.map((d: { score: number }) => d.score)).toEqual(want.map((s) => expect.closeTo(s, 5)));
    const pairwise = await (await post('/score', { text_1: [query, query], text_2: [docs[0], docs[1]] })).json();
    expect(pairwise.data).toHaveLength(2);
    expect((await post('/score', { text_1: ['a', 'b'], text_2: ['c'] })).status).toBe(400);
  });

  it("llama.cpp's server: top_n with texts, empty lists refused, mixed string and token inputs", async () => {
    const top = await (await post('/rerank', { query, texts: docs, top_n: 2 })).json();
    const all = await (await post('/rerank', { query, texts: docs })).json();
    expect(top).toEqual(all.slice(0, 2));
    // an empty list is an error on every rerank route, as llama.cpp's server, TEI and Cohere answer
    for (const [path, body] of [['/rerank', { query, documents: [] }], ['/rerank', { query, texts: [] }], ['/v1/rerank', { query, documents: [] }], ['/v2/rerank', { query, documents: [] }]] as const) {
      const res = await post(path, body);
      expect({ path, body, status: res.status }).toEqual({ path, body, status: 400 });
      expect((await res.json()).error).toMatchObject({ code: 'INVALID_INPUT', message: expect.stringMatching(/^(documents|texts): /) });
    }
    const ids = em.tokenize('auriculares bluetooth');
    const mixed = await (await post('/v1/embeddings', { input: ['无线蓝牙降噪耳机', ids], encoding_format: 'float' })).json();
    const want = await em.embed(['无线蓝牙降噪耳机', em.detokenize(ids)], { kind: 'document' });
    expect(mixed.data).toHaveLength(2);
    mixed.data.forEach((d: { embedding: number[] }, i: number) => d.embedding.forEach((x, j) => expect(x).toBeCloseTo(want[i][j], 6)));
    // token ids past int32 would wrap around to another token: refused
    const wrapped = await post('/v1/embeddings', { input: [[2 ** 32 + 5]] });
    expect(wrapped.status).toBe(400);
  });

  it('max_tokens_per_doc cuts documents before scoring', async () => {
    const long = 'impermeable '.repeat(400);
    const r = await (await post('/v2/rerank', { query, documents: [long], max_tokens_per_doc: 5 })).json();
    const cut = await rr.rerank(query, [rr.detokenize(rr.tokenize(long).slice(0, 5))]);
    expect(r.results[0].relevance_score).toBeCloseTo(cut[0].score, 5);
  });
});

describe('limits and bad input', () => {
  it('one JSON error shape with a stable code', async () => {
    const cases: [string, unknown, number, string][] = [
      ['/v1/rerank', '{"query": "x", "documents": [', 400, 'INVALID_JSON'],
      ['/v1/rerank', { documents: ['a'] }, 400, 'INVALID_INPUT'],
      ['/v1/rerank', { query: '', documents: ['a'] }, 400, 'INVALID_INPUT'],
      ['/v1/rerank', { query: 'q', documents: [1] }, 400, 'INVALID_INPUT'],
      ['/v1/rerank', { query: 'q', documents: 'a' }, 400, 'INVALID_INPUT'],
      ['/v1/rerank', { query: 'q', documents: ['a'], top_n: 0 }, 400, 'INVALID_INPUT'],
      ['/v1/rerank', { query: '\ud800', documents: ['a'] }, 400, 'INVALID_INPUT'],
      ['/v1/rerank', { query: 'q', documents: Array(51).fill('a') }, 413, 'TOO_MANY_DOCUMENTS'],
      ['/v1/rerank', { query: 'q', documents: ['x'.repeat(70_000)] }, 413, 'PAYLOAD_TOO_LARGE'],
      ['/v1/rerank', { query: 'q', documents: Array(100_000).fill('') }, 413, 'PAYLOAD_TOO_LARGE'],
      ['/v1/rerank', { query: 'q', documents: ['x'.repeat(10 << 20)] }, 413, 'PAYLOAD_TOO_LARGE'],
      ['/v1/embeddings', { input: Array(100_000).fill('a') }, 413, 'PAYLOAD_TOO_LARGE'],
      ['/v1/embeddings', { input: 5 }, 400, 'INVALID_INPUT'],
      ['/v1/nope', {}, 404, 'NOT_FOUND'],
    ];
    for (const [path, body, status, code] of cases) {
      const res = await post(path, body);
      expect({ path, status: res.status }).toEqual({ path, status });
      expect((await res.json()).error.code).toBe(code);
    }
    const huge = await (await post('/v1/rerank', { query: 'q', documents: ['a', 'b'], top_n: 1e9 })).json();
    expect(huge.results).toHaveLength(2);
  });

  it('invalid UTF-8 in the body is refused, not scored as mangled text', async () => {
    const bytes = Buffer.concat([Buffer.from('{"query":"q","documents":["'), Buffer.from([0xff, 0xfe]), Buffer.from('"]}')]);
    const res = await fetch(`${base}/v1/rerank`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}` }, body: bytes });
    expect(res.status).toBe(400);
    expect((await res.json()).error.code).toBe('INVALID_UTF8');
    // an overlong encoding of '/' and a lone surrogate encoded as bytes are invalid UTF-8 too
    for (const bad of [[0xc0, 0xaf], [0xed, 0xa0, 0x80]]) {
      const body = Buffer.concat([Buffer.from('{"query":"q","documents":["'), Buffer.from(bad), Buffer.from('"]}')]);
      const r = await fetch(`${base}/v1/rerank`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}` }, body });
      expect(r.status).toBe(400);
    }
  });

  it('requires the API key on API routes, not on health or metrics', async () => {
    expect((await post('/v1/rerank', { query: 'q', documents: ['a'] }, { authorization: '' })).status).toBe(401);
    expect((await post('/v1/rerank', { query: 'q', documents: ['a'] }, { authorization: 'Bearer wrong' })).status).toBe(401);
    for (const near of ['Bearer test', 'Bearer test-key-', 'Bearer  ', KEY]) expect((await post('/v1/rerank', { query: 'q', documents: ['a'] }, { authorization: near })).status).toBe(401);
    expect((await post('/v1/rerank', { query: 'q', documents: ['a'] }, { authorization: `bearer  ${KEY} ` })).status).toBe(200);
    // keys that would turn authentication off, let an empty token in, or never match
    for (const apiKeys of [[], [''], [' '], [KEY, ''], [' padded']]) throwsWithCode(() => createApp({ apiKeys, logger: pino({ level: 'silent' }) }), 'INVALID_INPUT');
    expect((await fetch(`${base}/health`)).status).toBe(200);
    expect((await fetch(`${base}/ready`)).status).toBe(200);
  });

  it('answers 429 beyond maxConcurrent instead of queueing without bound', async () => {
    const many = Array.from({ length: 12 }, () => post('/v1/rerank', { query, documents: makeDocs(40, 30, 1) }));
    const statuses = (await Promise.all(many)).map((r) => r.status);
    expect(statuses).toContain(429);
    expect(statuses.filter((s) => s === 200).length).toBeGreaterThanOrEqual(4);
  });

  it('cancels the queued work of a client that disconnects', async () => {
    const before = rr.stats().sequences;
    const ac = new AbortController();
    const req = post('/v1/rerank', { query, documents: makeDocs(50, 60, 2) }, {}).catch(() => undefined);
    // abort via a second request with its own controller
    const big = fetch(`${base}/v1/rerank`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}` },
      body: JSON.stringify({ query, documents: makeDocs(50, 60, 9) }),
      signal: ac.signal,
    }).catch(() => 'aborted');
    setTimeout(() => ac.abort(), 30);
    expect(await big).toBe('aborted');
    await req;
    await new Promise((r) => setTimeout(r, 200));
    // the aborted call's 50 sequences were not all scored
    expect(rr.stats().sequences - before).toBeLessThan(100);
  });

  it('exposes Prometheus metrics', async () => {
    const text = await (await fetch(`${base}/metrics`)).text();
    expect(text).toContain('qrank_http_request_duration_seconds_bucket');
    expect(text).toMatch(/qrank_queue_depth\{model="reranker"\} \d/);
    expect(text).toContain('qrank_tokens_total');
    expect(text).toContain('qrank_process_resident_memory_bytes');
  });

  it('documents exactly the routes it serves in OpenAPI 3.1', async () => {
    const doc = await (await fetch(`${base}/openapi.json`)).json();
    expect(doc.openapi).toBe('3.1.0');
    const served = new Set<string>();
    for (const layer of (server.app as unknown as { router: { stack: { route?: { path: string | string[]; methods: Record<string, boolean> } }[] } }).router.stack) {
      if (!layer.route) continue;
      for (const path of [layer.route.path].flat()) for (const m of Object.keys(layer.route.methods)) served.add(`${m.toUpperCase()} ${path.replace(/:(\w+)/g, '{$1}')}`);
    }
    const documented = new Set<string>();
    for (const [path, item] of Object.entries(doc.paths as Record<string, Record<string, unknown>>)) for (const m of Object.keys(item)) documented.add(`${m.toUpperCase()} ${path}`);
    expect([...documented].sort()).toEqual([...served].sort());
    // request schemas come from the validators: the rerank body requires query and documents
    expect(doc.paths['/v2/rerank'].post.requestBody.content['application/json'].schema.required).toEqual(['query', 'documents']);
  });

  it('lists models by name, never by path', async () => {
    const r = await (await fetch(`${base}/v1/models`, { headers: { authorization: `Bearer ${KEY}` } })).json();
    expect(r.data.map((m: { task: string }) => m.task).sort()).toEqual(['embed', 'rerank']);
    expect(r.data.map((m: { id: string }) => m.id).sort()).toEqual(['tiny-embedder.gguf', 'tiny-reranker.gguf']);
    expect(r.data.find((m: { task: string }) => m.task === 'rerank').info).toMatchObject({ file: 'tiny-reranker.gguf', architecture: 'qwen3', synthetic: true });
    expect(JSON.stringify(r)).not.toContain(MODEL_DIR);
  });

  it('logs every 500 at error level with its request id and cause', async () => {
    const lines: { level: number; id?: string; msg: string; err?: { message: string; stack: string } }[] = [];
    const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line)) });
    // a model whose call fails with an error qrank does not know: a defect, answered 500
    const broken = { info: rr.info, closed: false, rerankWithUsage: () => Promise.reject(new TypeError('boom: a defect')) } as unknown as Reranker;
    const app = createApp({ reranker: broken, logger });
    const s = app.app.listen(0, '127.0.0.1');
    await new Promise((r) => s.once('listening', r));
    try {
      const at = `http://127.0.0.1:${(s.address() as AddressInfo).port}/v1/rerank`;
      const send = (body: unknown) => fetch(at, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
      const failed = await send({ query: 'q', documents: ['a'] });
      expect(failed.status).toBe(500);
      expect(await failed.json()).toEqual({ error: { code: 'INTERNAL', message: 'internal error' } });
      expect((await send({ query: '' })).status).toBe(400);
      const errors = lines.filter((l) => l.level >= 50);
      expect(errors).toHaveLength(1);
      expect(errors[0]).toMatchObject({ id: failed.headers.get('x-request-id'), err: { message: 'boom: a defect', stack: expect.stringContaining('TypeError') } });
    } finally {
      await new Promise((r) => s.close(r));
    }
  });
});

describe('OpenAPI', () => {
  // last in the file: every JSON response sent above, by the official clients and plain fetch alike
  it('every JSON response of this file matched the schema of its route in /openapi.json', async () => {
    const checker = openApiChecker(await (await fetch(`${base}/openapi.json`)).json());
    const known = recorded.seen.filter((r) => !(r.status === 404 && (r.body as { error?: { code?: string } }).error?.code === 'NOT_FOUND'));
    for (const r of known) checker.check(r.method, r.url, r.status, r.body);
    expect(checker.checked).toBeGreaterThan(40);
    // the checker is not vacuous: wrong shapes and undocumented routes fail
    expect(() => checker.check('POST', '/v1/rerank', 200, { id: 'x', results: [{ index: 'x', relevance_score: 1 }] })).toThrow(/does not match/);
    expect(() => checker.check('POST', '/v1/embeddings', 200, { object: 'list', model: 'm', data: [], usage: {} })).toThrow(/does not match/);
    expect(() => checker.check('POST', '/v1/rerank', 400, { message: 'no code' })).toThrow(/does not match/);
    expect(() => checker.check('GET', '/v1/rerank', 200, {})).toThrow(/method not in the OpenAPI document/);
    const routes = new Set(known.map((r) => `${r.method} ${new URL(r.url, 'http://x').pathname}`));
    for (const route of ['POST /v1/rerank', 'POST /v2/rerank', 'POST /rerank', 'POST /score', 'POST /v1/embeddings', 'GET /v1/models']) expect(routes).toContain(route);
  });
});
