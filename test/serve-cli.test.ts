/**
 * `qrank serve` as operators run it (compiled dist/, child process): it logs where it listens,
 * says when the models are synthetic, and on SIGTERM finishes the requests in flight, then exits 0.
 */
import { spawn } from 'node:child_process';
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
