/**
 * Lifetimes that end without close(): process exit with calls in flight, a worker thread terminated
 * while its model works, and a model left to the garbage collector. Each runs in a child process
 * (on the compiled dist/, which the global setup rebuilds) so a crash shows as a bad exit status.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MODELS, ROOT } from './helpers';

const qrank = JSON.stringify(join(ROOT, 'dist', 'index.js'));
const model = JSON.stringify(MODELS.reranker);


function child(code: string, args: string[] = []): { status: number | null; signal: NodeJS.Signals | null; output: string } {
  const r = spawnSync(process.execPath, [...args, '-e', code], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, signal: r.signal, output: `${r.stdout}${r.stderr}` };
}

describe('lifecycle without close()', () => {
  it('exits cleanly with calls still running (tokenising or decoding), every time', () => {
    // exit() destroys C++ statics while the scheduler thread may be inside llama.cpp: this crashed
    // about one run in five until schedulers were closed by an atexit handler, so it runs 6 times
    for (const delay of [0, 10, 30, 50, 80, 120]) {
      const r = child(`
        const { Reranker } = require(${qrank});
        Reranker.load({ model: ${model}, threads: 1 }).then((rr) => {
          rr.rerank('q', Array.from({ length: 3000 }, (_, i) => 'doc ' + i)).catch(() => {});
          setTimeout(() => { console.log('exiting'); process.exit(0); }, ${delay});
        });`);
      expect(r.signal, `delay ${delay}`).toBeNull();
      expect(r.status, r.output).toBe(0);
      expect(r.output).toContain('exiting');
    }
  });

  it('lets the process end on its own once no call is pending (the event loop is not held)', () => {
    const r = child(`
      const { Reranker } = require(${qrank});
      Reranker.load({ model: ${model}, threads: 1 }).then(async (rr) => {
        const res = await rr.rerank('q', ['a', 'b']);
        console.log('done', res.length);
      });`);
    expect(r.status, r.output).toBe(0);
    expect(r.output).toContain('done 2');
  });

  it('survives a worker thread terminated while its model works', () => {
    const r = child(`
      const { Worker } = require('node:worker_threads');
      const w = new Worker(\`
        const { parentPort } = require('node:worker_threads');
        const { Reranker } = require(${JSON.stringify(qrank).slice(1, -1)});
        Reranker.load({ model: ${JSON.stringify(model).slice(1, -1)}, threads: 1 }).then((rr) => {
          rr.rerank('q', Array.from({ length: 3000 }, (_, i) => 'doc ' + i)).catch(() => {});
          parentPort.postMessage('busy');
        });\`, { eval: true });
      w.on('message', () => setTimeout(() => w.terminate().then(() => console.log('terminated')), 50));`);
    expect(r.signal).toBeNull();
    expect(r.status, r.output).toBe(0);
    expect(r.output).toContain('terminated');
  });

  it('keeps a model alive while its calls are pending, even when no JS object refers to it', () => {
    // the callbacks do not capture the wrapper: only the pending calls keep it alive. Before the
    // completions held a reference, the collector finalised it mid-call: the calls failed with
    // CLOSED and their completions read a freed wrapper.
    const r = child(
      `
      const { binding } = require(${JSON.stringify(join(ROOT, 'dist', 'native.js'))});
      const docs = Array.from({ length: 300 }, (_, i) => 'document number ' + i);
      binding().loadModel({ model: ${model}, role: 'reranker', device: 'cpu', threads: 1 }).promise.then((native) => {
        let pending = 0, ok = 0, failed = 0;
        for (let i = 0; i < 4; i++) {
          pending++;
          native.score(['q'], docs, '', 0, true, (err, res) => {
            if (err) { failed++; console.log('error', err.code); } else if (res.values.length === docs.length) ok++;
            if (--pending === 0) console.log('done', ok, failed);
          });
        }
        native = null;
        for (let i = 0; i < 40; i++) setTimeout(() => global.gc(), i * 10);
      });`,
      ['--expose-gc'],
    );
    expect(r.signal, r.output).toBeNull();
    expect(r.status, r.output).toBe(0);
    expect(r.output).toContain('done 4 0');
  });

  it('frees a model that is garbage-collected without close()', () => {
    const r = child(
      `
      const { Reranker } = require(${qrank});
      (async () => {
        for (let i = 0; i < 3; i++) {
          let rr = await Reranker.load({ model: ${model}, threads: 1 });
          await rr.rerank('q', ['a']);
          rr = null;
          global.gc();
          await new Promise((r) => setTimeout(r, 20));
        }
        console.log('ok');
      })();`,
      ['--expose-gc'],
    );
    expect(r.status, r.output).toBe(0);
    expect(r.output).toContain('ok');
  });
});
