/**
 * `qrank serve` as operators run it (compiled dist/, child process): it logs where it listens,
 * says when the models are synthetic, refuses configurations that would weaken it (exit 2), and
 * on SIGTERM finishes the requests in flight, then exits 0.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { MODELS, ROOT, makeDocs } from './helpers';

// the default data directory (XDG_DATA_HOME) and config files of these tests
const scratch = mkdtempSync(join(tmpdir(), 'qrank-serve-cli-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/**
 * Starts `qrank serve ARGS` on the test models and a free port. `listening` resolves with the base
 * URL once it logs its address (and rejects if it exits first); `exited` with its exit code.
 */
function serve(args: string[], env: Record<string, string> = {}) {
  const child = spawn(process.execPath, [join(ROOT, 'dist', 'cli', 'main.js'), 'serve', '--port', '0', '--threads', '1', '--reranker', MODELS.reranker, '--embedder', MODELS.embedder, ...args], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, XDG_DATA_HOME: scratch, ...env },
  });
  let log = '';
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const listening = new Promise<string>((resolve, reject) => {
    child.stdout.on('data', (chunk: Buffer) => {
      log += chunk.toString();
      const m = log.match(/"address":"(http:\/\/[^"]+)"/);
      if (m) resolve(m[1]);
    });
    child.once('exit', (code) => reject(new Error(`exited early (${code}): ${log}${stderr}`)));
  });
  listening.catch(() => undefined); // a test that expects an early exit awaits `exited` instead
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, listening, exited, log: () => log, stderr: () => stderr };
}

describe('qrank serve', () => {
  it('drains in-flight requests on SIGTERM and exits 0', async () => {
    const s = serve([]);
    const base = await s.listening;
    expect(s.log()).toContain('SYNTHETIC');

    const inflight = fetch(`${base}/v1/rerank`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ query: 'auriculares', documents: makeDocs(300, 30, 4) }),
    });
    await new Promise((r) => setTimeout(r, 100));
    s.child.kill('SIGTERM');
    const res = await inflight;
    expect(res.status).toBe(200);
    expect((await res.json()).results).toHaveLength(300);
    expect(await s.exited).toBe(0);
    expect(s.log()).toContain('draining');
  }, 60_000);
});

describe('qrank serve: configuration', () => {
  let configs = 0;
  const config = (serveSection: object) => {
    const path = join(scratch, `config-${++configs}.json`);
    writeFileSync(path, JSON.stringify({ serve: serveSection }));
    return { QRANK_CONFIG: path };
  };

  it('refuses empty API keys (exit 2) instead of serving without authentication, and timeouts Node cannot apply', async () => {
    const cases: [string, string[], Record<string, string>][] = [
      ['--headers-timeout-ms 5000 --request-timeout-ms 1000', ['--headers-timeout-ms', '5000', '--request-timeout-ms', '1000'], {}],
      ['--keep-alive-timeout-ms 0', ['--keep-alive-timeout-ms', '0'], {}],
      ['--api-key ,', ['--api-key', ','], {}],
      ['--api-key "k1,"', ['--api-key', 'k1,'], {}],
      ["QRANK_API_KEYS=' '", [], { QRANK_API_KEYS: ' ' }],
      ['QRANK_API_KEYS=""', [], { QRANK_API_KEYS: '' }],
      ['config "api-key": ""', [], config({ 'api-key': '' })],
      ['config "api-key": ["k1", " "]', [], config({ 'api-key': ['k1', ' '] })],
      ['config "api-key": []', [], config({ 'api-key': [] })],
      ['config "api-key": true', [], config({ 'api-key': true })],
    ];
    const outcomes = await Promise.all(
      cases.map(async ([label, args, env]) => {
        const s = serve(args, env);
        // one that starts serving fails the test rather than hanging it
        s.listening.then(() => s.child.kill('SIGKILL'), () => undefined);
        return { label, code: await s.exited, stderr: s.stderr() };
      }),
    );
    for (const o of outcomes) {
      expect({ label: o.label, code: o.code }).toEqual({ label: o.label, code: 2 });
      expect(o.stderr, o.label).toMatch(o.label.includes('timeout') ? /^qrank: --(headers|keep-alive)-timeout-ms/ : /^qrank: --api-key/);
    }
  }, 60_000);

  it('takes keys, CORS origins (one as a string) and timeouts from the config file, and accepts exactly those keys', async () => {
    const s = serve([], config({ 'api-key': 'secret-key', cors: 'https://shop.example', 'headers-timeout-ms': 300 }));
    try {
      const base = await s.listening;
      const status = async (authorization?: string) => (await fetch(`${base}/v1/models`, { headers: authorization === undefined ? {} : { authorization } })).status;
      expect(await status('Bearer secret-key')).toBe(200);
      expect(await status('bearer secret-key')).toBe(200);
      for (const wrong of [undefined, '', 'Bearer', 'Bearer ', 'Bearer s', 'Bearer secret', 'Bearer secret-key-2', 'Bearer ,', 'secret-key']) {
        expect({ wrong, status: await status(wrong) }).toEqual({ wrong, status: 401 });
      }
      const cors = await fetch(`${base}/health`, { headers: { origin: 'https://shop.example' } });
      expect(cors.headers.get('access-control-allow-origin')).toBe('https://shop.example');
      // a client that stalls in its headers is let go after 300 ms
      const url = new URL(base);
      const stalled = connect(Number(url.port), url.hostname).resume(); // read, or the close is never seen
      stalled.write('GET /health HTTP/1.1\r\nHost: x\r\n');
      const outcome = await Promise.race([new Promise((r) => stalled.on('close', () => r('closed'))), new Promise((r) => setTimeout(() => r('still open after 2 s'), 2000))]);
      stalled.destroy();
      expect(outcome).toBe('closed');
    } finally {
      s.child.kill('SIGTERM');
      await s.exited;
    }
  }, 60_000);
});

describe('qrank serve --demo (what npm start runs)', () => {
  it('ingests the demo catalog on first start only, and serves the page, search and collections', async () => {
    const data = mkdtempSync(join(tmpdir(), 'qrank-serve-demo-'));
    try {
      const first = serve(['--demo', '--data', data]);
      const base = await first.listening;
      expect(first.log()).toContain('demo catalog ingested');
      expect(first.log()).toContain('SYNTHETIC');
      const page = await fetch(`${base}/`);
      expect(page.headers.get('content-type')).toMatch(/^text\/html/);
      expect(await page.text()).toContain('Rerank playground');
      const cols = await (await fetch(`${base}/v1/collections`)).json();
      expect(cols.data).toMatchObject([{ name: 'demo', size: 305, pending: 0, vectors: 305 }]);
      const r = await fetch(`${base}/v1/search`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ collection: 'demo', query: 'auriculares bluetooth', top_n: 5 }) });
      expect((await r.json()).results).toHaveLength(5);
      first.child.kill('SIGTERM');
      expect(await first.exited).toBe(0);

      const second = serve(['--demo', '--data', data]);
      await second.listening;
      expect(second.log()).toContain('demo catalog ready');
      expect(second.log()).not.toContain('demo catalog ingested');
      second.child.kill('SIGTERM');
      expect(await second.exited).toBe(0);
    } finally {
      rmSync(data, { recursive: true, force: true });
    }
  }, 120_000);
});
