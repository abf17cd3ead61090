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
  return qrankWith({}, ...args);
}

function qrankWith(opts: { env?: Record<string, string | undefined>; input?: string; cwd?: string }, ...args: string[]) {
  const r = spawnSync(process.execPath, [join(ROOT, 'dist', 'cli', 'main.js'), ...args], {
    cwd: opts.cwd ?? ROOT,
    encoding: 'utf8',
    timeout: 120_000,
    input: opts.input,
    env: { ...process.env, QRANK_EMBEDDER: MODELS.embedder, QRANK_RERANKER: MODELS.reranker, QRANK_THREADS: '1', ...opts.env },
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

    // keyword recall: the Spanish title found by its words, the rank of each list printed
    const k = qrank('search', 'juego de cuchillos', '--dir', dir, '--recall', 'keyword', '--no-rerank', '--json', '--threads', '1');
    expect(k.code, k.err).toBe(0);
    const kr = JSON.parse(k.out);
    expect(kr.recall).toBe('keyword');
    expect(kr.results.map((h: { id: string }) => h.id)).toEqual(['b']);
    expect(kr.timings.keywordMs).toBeGreaterThan(0);
    const text = qrank('search', 'juego de cuchillos', '--dir', dir, '--no-rerank', '--threads', '1');
    expect(text.code, text.err).toBe(0);
    expect(text.out).toMatch(/recall [-\d.]+  keyword #1 vector #\d+  b  Stainless steel knife set/);
    expect(text.out).toMatch(/^hybrid recall: embed [\d.]+ ms, keyword [\d.]+ ms, vector [\d.]+ ms/m);
    const bad = qrank('search', 'x', '--dir', dir, '--recall', 'bm25');
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/--recall must be one of hybrid, vector, keyword/);
  });

  it('evaluates the shipped cross-border set: metrics in [0,1], reranking keeps Recall@K', () => {
    const json = join(work, 'eval.json');
    const r = qrank('eval', '--dataset', join(ROOT, 'eval', 'crossborder-shop'), '--recall-k', '20', '--json', json, '--threads', '1');
    expect(r.code, r.err).toBe(0);
    expect(r.out).toContain('synthetic models');
    const report = JSON.parse(readFileSync(json, 'utf8'));
    expect(report.queries).toBe(132);
    expect(Object.keys(report.groups.lang).sort()).toEqual(['de', 'en', 'es', 'fr', 'ja', 'pt', 'zh']);
    expect(report.groups.set.keyword.queries).toBe(29);
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
    for (const cmd of ['serve', 'index', 'search', 'eval', 'demo', 'make-test-model', 'rerank', 'embed', 'bench', 'models', 'models pull', 'models list', 'models info']) {
      const h = qrank(...cmd.split(' '), '--help');
      expect(h.code, cmd).toBe(0);
      expect(h.out).toContain('Usage: qrank');
    }
    expect(qrank('frobnicate').code).toBe(2);
  });

  it('index reads a catalog from standard input with --format', () => {
    const dir = join(work, 'stdin-data');
    const rows = [
      { id: 's1', title_en: 'Wireless earbuds', category: 'Audio', price: 30 },
      { id: 's2', title_zh: '不锈钢刀具套装', category: 'Kitchen', price: 45 },
    ];
    const r = qrankWith({ input: rows.map((x) => JSON.stringify(x)).join('\n') + '\n' }, 'index', '-', '--format', 'jsonl', '--dir', dir, '--threads', '1');
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/read 2, upserted 2, unchanged 0, embedded 2, rejected 0; collection products holds 2 products/);
    expect(qrank('index', '-', '--dir', dir).code).toBe(2); // no --format
  });

  it('rerank: documents from arguments or standard input, the same ranking either way', () => {
    const docs = ['wireless headphones', '无线蓝牙耳机', 'kitchen knife set'];
    const a = qrank('rerank', 'auriculares bluetooth', ...docs, '--json');
    expect(a.code, a.err).toBe(0);
    const ranked = JSON.parse(a.out) as { index: number; score: number; document: string }[];
    expect(ranked.map((r) => r.document).sort()).toEqual([...docs].sort());
    for (let i = 1; i < ranked.length; i++) expect(ranked[i - 1].score).toBeGreaterThanOrEqual(ranked[i].score);
    const b = qrankWith({ input: docs.join('\n') + '\n\n' }, 'rerank', 'auriculares bluetooth', '--file', '-', '--top-n', '2');
    expect(b.code, b.err).toBe(0);
    const lines = b.out.trim().split('\n').map((l) => l.split('\t'));
    expect(lines.map((l) => Number(l[1]))).toEqual(ranked.slice(0, 2).map((r) => r.index));
    expect(lines.map((l) => Number(l[0]))).toEqual(ranked.slice(0, 2).map((r) => Number(r.score.toFixed(4))));
    expect(qrank('rerank', 'q').code).toBe(2); // no documents
    expect(qrank('rerank', 'q', 'd', '--top-n', 'x').code).toBe(2);
  });

  it('embed: one JSON line per text, unit vectors of the requested dimensions', () => {
    const r = qrank('embed', 'hello', '你好', 'hola', '--dimensions', '16', '--kind', 'query');
    expect(r.code, r.err).toBe(0);
    const rows = r.out.trim().split('\n').map((l) => JSON.parse(l));
    expect(rows.map((x) => x.index)).toEqual([0, 1, 2]);
    for (const x of rows) {
      expect(x.embedding).toHaveLength(16);
      expect(Math.hypot(...x.embedding)).toBeCloseTo(1, 5);
    }
    expect(qrank('embed', 'x', '--kind', 'passage').code).toBe(2);
  });

  it('bench: measures both models and writes a JSON report', () => {
    const out = join(work, 'bench.json');
    const r = qrank('bench', '--docs', '8', '--doc-tokens', '32', '--requests', '2', '--warmup', '0', '--out', out);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/^rerank: .*\d+ tokens\/s, [\d.]+ pairs\/s, p50 [\d.]+ ms, p99 [\d.]+ ms per request of 8 x 32 tokens$/m);
    const report = JSON.parse(readFileSync(out, 'utf8'));
    for (const task of ['rerank', 'embed']) {
      expect(report[task].tokens_per_s).toBeGreaterThan(0);
      expect(report[task].synthetic).toBe(true);
    }
    // each embedded document is exactly 32 tokens (+ the end-of-text token the recipe appends)
    expect(report.embed.tokens_per_request).toBe(8 * 33);
    expect(qrankWith({ env: { QRANK_RERANKER: undefined, QRANK_EMBEDDER: undefined } }, 'bench').code).toBe(2);
  });

  it('takes settings from flags, then environment, then the config file, then defaults', () => {
    const cfg = join(work, 'qrank.config.json');
    writeFileSync(cfg, JSON.stringify({ threads: 3, serve: { port: 9001, host: '0.0.0.0', 'max-documents': 77, apiKey: ['k1', 'k2'] } }));
    const r = qrankWith({ env: { QRANK_PORT: '9002', QRANK_THREADS: undefined } }, '--config', cfg, 'serve', '--host', '127.0.0.2', '--print-config');
    expect(r.code, r.err).toBe(0);
    const c = JSON.parse(r.out);
    expect(c.host).toEqual({ value: '127.0.0.2', source: 'cli' });
    expect(c.port).toEqual({ value: '9002', source: 'env' });
    expect(c.maxDocuments).toEqual({ value: '77', source: 'config' });
    expect(c.apiKey).toEqual({ value: ['k1', 'k2'], source: 'config' });
    expect(c.threads).toEqual({ value: '3', source: 'config' }); // a top-level key applies to every command
    expect(c.maxConcurrent.source).toBe('default');
    // ./qrank.config.json is read without --config
    const cwd = mkdtempSync(join(work, 'cwd-'));
    writeFileSync(join(cwd, 'qrank.config.json'), JSON.stringify({ serve: { port: 9003 } }));
    expect(JSON.parse(qrankWith({ cwd, env: { QRANK_PORT: undefined } }, 'serve', '--print-config').out).port).toEqual({ value: '9003', source: 'config' });
    // a typo is an error, not a silently kept default
    writeFileSync(cfg, JSON.stringify({ serve: { prot: 9001 } }));
    const typo = qrank('--config', cfg, 'serve', '--print-config');
    expect(typo.code).toBe(2);
    expect(typo.err).toMatch(/"serve.prot" is not an option of qrank serve/);
    writeFileSync(cfg, '{ not json');
    expect(qrank('--config', cfg, 'serve', '--print-config').code).toBe(2);
  });
});
