/**
 * `qrank serve` as operators run it (compiled dist/, child process): it logs where it listens,
 * says when the models are synthetic, and on SIGTERM finishes the requests in flight, then exits 0.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MODELS, ROOT, makeDocs } from './helpers';


describe('qrank serve', () => {
  it('drains in-flight requests on SIGTERM and exits 0', async () => {
    const child = spawn(process.execPath, [join(ROOT, 'dist', 'cli', 'main.js'), 'serve', '--port', '0', '--threads', '1',
      '--reranker', MODELS.reranker, '--embedder', MODELS.embedder], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let log = '';
    const listening = new Promise<string>((resolve, reject) => {
      child.stdout.on('data', (chunk: Buffer) => {
        log += chunk.toString();
        const m = log.match(/"address":"(http:\/\/[^"]+)"/);
        if (m) resolve(m[1]);
      });
      child.once('exit', (code) => reject(new Error(`exited early (${code}): ${log}`)));
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const base = await listening;
    expect(log).toContain('SYNTHETIC');

    const inflight = fetch(`${base}/v1/rerank`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ query: 'auriculares', documents: makeDocs(300, 30, 4) }),
    });
    await new Promise((r) => setTimeout(r, 100));
    child.kill('SIGTERM');
    const res = await inflight;
    expect(res.status).toBe(200);
    expect((await res.json()).results).toHaveLength(300);
    expect(await exited).toBe(0);
    expect(log).toContain('draining');
  }, 60_000);
});

describe('qrank serve --demo (what npm start runs)', () => {
  const start = (data: string) => {
    const child = spawn(process.execPath, [join(ROOT, 'dist', 'cli', 'main.js'), 'serve', '--demo', '--data', data, '--port', '0', '--threads', '1',
      '--reranker', MODELS.reranker, '--embedder', MODELS.embedder], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let log = '';
    const listening = new Promise<{ base: string; log: () => string }>((resolve, reject) => {
      child.stdout.on('data', (chunk: Buffer) => {
        log += chunk.toString();
        const m = log.match(/"address":"(http:\/\/[^"]+)"/);
        if (m) resolve({ base: m[1], log: () => log });
      });
      child.once('exit', (code) => reject(new Error(`exited early (${code}): ${log}`)));
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    return { child, listening, exited };
  };

  it('ingests the demo catalog on first start only, and serves the page, search and collections', async () => {
    const data = mkdtempSync(join(tmpdir(), 'qrank-serve-demo-'));
    try {
      const first = start(data);
      const { base, log } = await first.listening;
      expect(log()).toContain('demo catalog ingested');
      expect(log()).toContain('SYNTHETIC');
      const page = await fetch(`${base}/`);
      expect(page.headers.get('content-type')).toMatch(/^text\/html/);
      expect(await page.text()).toContain('Rerank playground');
      const cols = await (await fetch(`${base}/v1/collections`)).json();
      expect(cols.data).toMatchObject([{ name: 'demo', size: 305, pending: 0, vectors: 305 }]);
      const r = await fetch(`${base}/v1/search`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ collection: 'demo', query: 'auriculares bluetooth', top_n: 5 }) });
      expect((await r.json()).results).toHaveLength(5);
      first.child.kill('SIGTERM');
      expect(await first.exited).toBe(0);

      const second = start(data);
      const again = await second.listening;
      expect(again.log()).toContain('demo catalog ready');
      expect(again.log()).not.toContain('demo catalog ingested');
      second.child.kill('SIGTERM');
      expect(await second.exited).toBe(0);
    } finally {
      rmSync(data, { recursive: true, force: true });
    }
  }, 120_000);
});
