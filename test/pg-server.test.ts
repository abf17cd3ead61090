/**
 * The Postgres store end to end: the HTTP server's readiness follows the store (/ready fails while
 * Postgres is unreachable and recovers when it is back; a search meanwhile is a 503 with a code,
 * answered in bounded time, never a hang), and the CLI's `--store` (index, search) on the same
 * store. Postgres is PGlite served over the wire protocol, behind a relay the test cuts.
 */
import { spawn } from 'node:child_process';
import type { AddressInfo, Server } from 'node:net';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Embedder, Reranker } from '../lib/index';
import { SearchEngine } from '../lib/search/engine';
import { createApp } from '../lib/server/app';
import { MAPPING, MODELS, ROOT, products } from './helpers';
import { type PgliteServer, type Relay, startPglite, startRelay } from './pg-helpers';

let em: Embedder;
let rr: Reranker;
let pg: PgliteServer;
let relay: Relay;
let se: SearchEngine;
let http: Server;
let base: string;
beforeAll(async () => {
  [pg, em, rr] = await Promise.all([startPglite(), Embedder.load({ model: MODELS.embedder, threads: 1 }), Reranker.load({ model: MODELS.reranker, threads: 1 })]);
  relay = await startRelay(pg.port);
  se = await SearchEngine.open({ store: relay.url, embedder: em, reranker: rr });
  http = createApp({ reranker: rr, embedder: em, search: se, logger: pino({ level: 'silent' }) }).app.listen(0, '127.0.0.1');
  await new Promise((r) => http.once('listening', r));
  base = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
}, 120_000);
afterAll(async () => {
  await new Promise((r) => http?.close(r));
  await se?.close();
  await relay?.close();
  await Promise.all([em?.close(), rr?.close(), pg?.stop()]);
});

const call = async (method: string, path: string, body?: unknown) => {
  const t0 = performance.now();
  const r = await fetch(base + path, { method, headers: { 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
  return { status: r.status, body: (await r.json()) as Record<string, any>, ms: performance.now() - t0 };
};
const search = { collection: 'shop', query: 'wireless headphones', top_n: 5 };

describe('readiness follows the Postgres store', () => {
  it('/ready fails while Postgres is unreachable and recovers; a search meanwhile is a 503 with a code, never a hang', async () => {
    expect((await call('POST', '/v1/collections', { name: 'shop', mapping: MAPPING })).status).toBe(201);
    expect((await call('POST', '/v1/collections/shop/documents', { documents: products(40) })).body).toMatchObject({ upserted: 40, size: 40 });
    const before = await call('POST', '/v1/search', search);
    expect(before.status).toBe(200);
    expect((await call('GET', '/ready')).status).toBe(200);

    await relay.cut();
    const ready = await call('GET', '/ready');
    expect(ready).toMatchObject({ status: 503, body: { status: 'not ready', reason: expect.stringMatching(/store/) } });
    const down = await Promise.all([call('POST', '/v1/search', search), call('GET', '/v1/collections/shop'), call('POST', '/v1/collections/shop/documents', { documents: products(2, 100) })]);
    for (const r of down) {
      expect(r.status).toBe(503);
      expect(r.body.error.code).toBe('STORE_UNAVAILABLE');
      expect(r.ms).toBeLessThan(5000);
    }
    expect((await call('GET', '/health')).status).toBe(200); // the process itself is fine

    await relay.restore();
    let back = await call('GET', '/ready');
    for (let i = 0; i < 50 && back.status !== 200; i++) back = await call('GET', '/ready');
    expect(back.status).toBe(200);
    const after = await call('POST', '/v1/search', search);
    expect(after.status).toBe(200);
    expect(after.body.results).toEqual(before.body.results);
    expect((await call('GET', '/v1/collections/shop')).body).toMatchObject({ size: 40, pending: 0, vectors: 40 });
  });
});

describe('the CLI on --store', () => {
  const qrank = (env: Record<string, string>, ...args: string[]) =>
    new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      const child = spawn(process.execPath, [join(ROOT, 'dist', 'cli', 'main.js'), ...args], { env: { ...process.env, QRANK_EMBEDDER: MODELS.embedder, QRANK_RERANKER: MODELS.reranker, ...env } });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (c: Buffer) => (stdout += c));
      child.stderr.on('data', (c: Buffer) => (stderr += c));
      child.once('exit', (code) => resolve({ code, stdout, stderr }));
    });

  it('qrank index and qrank search --store postgres://... work on the shared store, QRANK_STORE too', async () => {
    const catalog = join(mkdtempSync(join(tmpdir(), 'qrank-pg-cli-')), 'catalog.jsonl');
    writeFileSync(catalog, products(30).map((p) => JSON.stringify(p)).join('\n') + '\n');
    const idx = await qrank({}, 'index', catalog, '--store', pg.url, '--collection', 'cli', '--mapping', JSON.stringify(MAPPING), '--threads', '1');
    expect(idx.stderr).toBe('');
    expect(idx.code).toBe(0);
    expect(idx.stdout).toMatch(/collection cli holds 30 products/);
    const s = await qrank({ QRANK_STORE: pg.url }, 'search', '耳机', '--collection', 'cli', '--json', '--top-n', '3', '--filter', '{"category":"Audio"}', '--threads', '1');
    expect(s.code).toBe(0);
    const hits = JSON.parse(s.stdout).results as { fields: { category: string } }[];
    expect(hits).toHaveLength(3);
    expect(hits.every((h) => h.fields.category === 'Audio')).toBe(true);
    expect((await qrank({}, 'search', 'x', '--collection', 'cli')).code).toBe(2); // neither --dir nor --store
    expect((await (await se.existing('cli')).info()).pending).toBe(0); // and this process sees what the CLI wrote
  });
});
