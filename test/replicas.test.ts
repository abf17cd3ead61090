/**
 * Stateless replicas (issue 14): two `qrank serve --store postgres://...` on loopback against one
 * Postgres (PGlite served over the wire protocol) behind Debian's haproxy with deploy/haproxy.cfg.
 * Ingestion through one replica is visible to searches through the other, both give the same scores,
 * and under a bounded autocannon load through haproxy one replica is killed (SIGKILL) mid-run: no
 * request fails (those in flight on it are retried by haproxy on the other). Skipped, saying so,
 * where haproxy is not installed (scripts/setup.sh installs it).
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createServer } from 'node:net';
import { join } from 'node:path';
import autocannon from 'autocannon';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAPPING, MODELS, ROOT, products } from './helpers';
import { type PgliteServer, startPglite } from './pg-helpers';

const HAPROXY = spawnSync('haproxy', ['-v']).status === 0;
const reason = HAPROXY ? '' : ' (skipped: haproxy is not installed; apt-get install haproxy, as scripts/setup.sh does)';

let pg: PgliteServer;
const replicas: { child: ChildProcess; base: string }[] = [];
let lb: ChildProcess | undefined;
let lbBase = '';

const freePort = () =>
  new Promise<number>((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });

async function startReplica(url: string): Promise<{ child: ChildProcess; base: string }> {
  const port = await freePort();
  const child = spawn(process.execPath, [join(ROOT, 'dist', 'cli', 'main.js'), 'serve', '--store', url, '--port', String(port), '--reranker', MODELS.reranker, '--embedder', MODELS.embedder, '--threads', '1', '--no-ui'], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, QRANK_LOG_LEVEL: 'warn' },
  });
  const base = `http://127.0.0.1:${port}`;
  await until(async () => (await fetch(`${base}/ready`).catch(() => undefined))?.status === 200, 60_000);
  return { child, base };
}

async function until(ok: () => Promise<boolean>, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!(await ok())) {
    if (Date.now() > end) throw new Error(`not true within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const post = async (base: string, path: string, body: unknown) => {
  const r = await fetch(base + path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: r.status, body: (await r.json()) as Record<string, any> };
};

beforeAll(async () => {
  if (!HAPROXY) return;
  pg = await startPglite();
  // the first replica migrates the schema; then both start side by side
  replicas.push(await startReplica(pg.url));
  replicas.push(await startReplica(pg.url));
  const port = await freePort();
  lbBase = `http://127.0.0.1:${port}`;
  lb = spawn('haproxy', ['-f', join(ROOT, 'deploy', 'haproxy.cfg')], {
    stdio: ['ignore', 'inherit', 'inherit'],
    env: { ...process.env, QRANK_LB_BIND: `127.0.0.1:${port}`, QRANK_REPLICA_1: replicas[0].base.slice(7), QRANK_REPLICA_2: replicas[1].base.slice(7) },
  });
  await until(async () => (await fetch(`${lbBase}/ready`).catch(() => undefined))?.status === 200, 20_000);
}, 180_000);
afterAll(async () => {
  for (const p of [lb, ...replicas.map((r) => r.child)]) if (p && p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  await pg?.stop();
});

describe.skipIf(!HAPROXY)(`two replicas behind haproxy${reason}`, () => {
  const search = { collection: 'shop', query: 'wireless headphones 耳机', top_n: 10, recall_k: 30 };

  it('ingestion through one replica is visible through the other, with the same scores', async () => {
    const [a, b] = replicas;
    expect((await post(a.base, '/v1/collections', { name: 'shop', mapping: MAPPING })).status).toBe(201);
    expect((await post(a.base, '/v1/collections/shop/documents', { documents: products(60) })).body).toMatchObject({ upserted: 60, size: 60 });
    const [ra, rb] = await Promise.all([post(a.base, '/v1/search', search), post(b.base, '/v1/search', search)]);
    expect(ra.status).toBe(200);
    expect(rb.body.results).toEqual(ra.body.results);
    expect(ra.body.results).toHaveLength(10);
    // and the other way round, a product written through b found through a
    await post(b.base, '/v1/collections/shop/documents', { documents: [{ ...products(1, 500)[0], title_en: 'Zyxwv unique kettle' }] });
    const found = await post(a.base, '/v1/search', { collection: 'shop', query: 'zyxwv', recall: 'keyword', rerank: false });
    expect(found.body.results[0].id).toBe('sku-500');
  });

  it('a replica killed mid-load fails no request: haproxy retries those in flight on the other', async () => {
    const run = autocannon({
      url: `${lbBase}/v1/search`,
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(search),
      connections: 4,
      duration: 6,
    });
    await new Promise((r) => setTimeout(r, 2000));
    replicas[0].child.kill('SIGKILL');
    const result = await run;
    expect(result.requests.total).toBeGreaterThan(20);
    expect(result.errors).toBe(0);
    expect(result.timeouts).toBe(0);
    expect(result.non2xx, JSON.stringify(result.statusCodeStats)).toBe(0);
    expect((await post(lbBase, '/v1/search', search)).status).toBe(200);
  }, 60_000);
});
