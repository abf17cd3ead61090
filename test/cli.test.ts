/**
 * The qrank CLI as scripts use it (compiled dist/, child processes): index, search and eval, their
 * output and exit codes. With the tiny synthetic models the eval figures test the mechanics only.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { MODELS, ROOT } from './helpers';

const work = mkdtempSync(join(tmpdir(), 'qrank-cli-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function qrank(...args: string[]) {
  const r = spawnSync(process.execPath, [join(ROOT, 'dist', 'cli', 'main.js'), ...args], {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: 120_000,
    env: { ...process.env, QRANK_EMBEDDER: MODELS.embedder, QRANK_RERANKER: MODELS.reranker },
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

describe('qrank CLI', () => {
  it('indexes a catalog, reports rejected lines with exit code 3, and searches it', () => {
    const catalog = join(work, 'catalog.jsonl');
    writeFileSync(
      catalog,
      [
        { id: 'a', title_en: 'Wireless noise cancelling headphones', title_zh: '无线降噪耳机', category: 'Audio', price: 99 },
        { id: 'b', title_en: 'Stainless steel knife set', title_es: 'Juego de cuchillos', category: 'Kitchen', price: 45 },
        { id: 'c', title_en: 'Running shoes', title_zh: '跑步鞋', category: 'Shoes', price: '60' },
      ]
        .map((r) => JSON.stringify(r))
        .join('\n') + '\n{not json\n',
    );
    const dir = join(work, 'data');
    const idx = qrank('index', catalog, '--dir', dir, '--threads', '1');
    expect(idx.code).toBe(3);
    expect(idx.out).toContain('upserted 3');
    expect(idx.err).toContain('line 4: invalid JSON');
    const again = qrank('index', catalog, '--dir', dir, '--threads', '1');
    expect(again.out).toContain('unchanged 3');

    const s = qrank('search', '耳机', '--dir', dir, '--json', '--top-n', '2', '--filter', '{"price":{"lte":70}}', '--threads', '1');
    expect(s.code, s.err).toBe(0);
    const r = JSON.parse(s.out);
    expect(r.results.map((h: { id: string }) => h.id).sort()).toEqual(['b', 'c']);
    expect(r.timings.totalMs).toBeGreaterThan(0);
    expect(qrank('search', 'x', '--dir', dir, '--filter', '{oops').code).toBe(2);
  });

  it('evaluates the shipped cross-border set: metrics in [0,1], reranking keeps Recall@K', () => {
    const json = join(work, 'eval.json');
    const r = qrank('eval', '--dataset', join(ROOT, 'eval', 'crossborder-shop'), '--recall-k', '20', '--json', json, '--threads', '1');
    expect(r.code, r.err).toBe(0);
    expect(r.out).toContain('synthetic models');
    const report = JSON.parse(readFileSync(json, 'utf8'));
    expect(report.queries).toBe(103);
    for (const stage of [report.recall, report.reranked]) {
      expect(Object.keys(stage).sort()).toEqual(['MRR@10', 'Recall@20', 'nDCG@10']);
      for (const v of Object.values(stage) as number[]) {
        expect(v).toBeGreaterThanOrEqual(0);
        expect(v).toBeLessThanOrEqual(1);
      }
    }
    // the reranker reorders the same 20 candidates: recall at 20 cannot change
    expect(report.reranked['Recall@20']).toBeCloseTo(report.recall['Recall@20'], 12);
  }, 180_000);

  it('answers --help for every command and exits 2 on unknown ones', () => {
    for (const cmd of ['serve', 'index', 'search', 'eval', 'demo', 'make-test-model']) {
      const h = qrank(cmd, '--help');
      expect(h.code, cmd).toBe(0);
      expect(h.out).toContain('Usage: qrank');
    }
    expect(qrank('frobnicate').code).toBe(2);
  });
});
