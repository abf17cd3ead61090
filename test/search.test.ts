import { spawn } from 'node:child_process';
import { createWriteStream, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Embedder, Reranker } from '../lib/index';
import { Collection } from '../lib/search/collection';
import { SearchEngine } from '../lib/search/engine';
import { renderTemplate } from '../lib/search/templates';
import { CATEGORIES, MAPPING, MODELS, ROOT, products, rejectsWithCode } from './helpers';

const dir = mkdtempSync(join(tmpdir(), 'qrank-search-'));
let em: Embedder;
let rr: Reranker;
beforeAll(async () => {
  [em, rr] = await Promise.all([Embedder.load({ model: MODELS.embedder, threads: 1 }), Reranker.load({ model: MODELS.reranker, threads: 1 })]);
});
afterAll(async () => {
  await Promise.all([em?.close(), rr?.close()]);
  rmSync(dir, { recursive: true, force: true });
});

const toJsonl = (rows: object[]) => rows.map((r) => JSON.stringify(r)).join('\n') + '\n';
function toCsv(rows: Record<string, unknown>[]) {
  const cols = Object.keys(rows[0]);
  return [cols.join(','), ...rows.map((r) => cols.map((c) => `"${String(r[c]).replace(/"/g, '""')}"`).join(','))].join('\n') + '\n';
}

describe('ingestion', () => {
  it('reads arrays, JSONL, JSON and CSV with progress, and is idempotent', async () => {
    const se = await SearchEngine.open({ dir: join(dir, 'formats'), embedder: em, reranker: rr });
    const col = await se.collection('p');
    const progress: number[] = [];
    const a = await col.ingest(products(40), { mapping: MAPPING, batchSize: 16, onProgress: (p) => progress.push(p.read) });
    expect(a).toMatchObject({ read: 40, upserted: 40, embedded: 40, rejected: 0 });
    expect(progress).toEqual([16, 32, 40]);
    writeFileSync(join(dir, 'p.jsonl'), toJsonl(products(20, 40)));
    writeFileSync(join(dir, 'p.json'), JSON.stringify(products(20, 60)));
    writeFileSync(join(dir, 'p.csv'), toCsv(products(20, 80)));
    for (const f of ['p.jsonl', 'p.json', 'p.csv']) expect((await col.ingest(join(dir, f))).upserted).toBe(20);
    expect(await col.count()).toBe(100);
    expect(await col.vectorCount()).toBe(100);
    // CSV numbers are stored as numbers (filters compare numerically)
    const csvHit = await se.search('p', 'auriculares', { filter: { category: 'Audio', price: { lte: 1000 } }, topN: 100, recallK: 100, rerank: false });
    expect(csvHit.results.some((h) => h.id === 'sku-80' && typeof h.fields.price === 'number')).toBe(true);
    // the same records again: nothing is embedded again
    const again = await col.ingest(products(40));
    expect(again).toMatchObject({ unchanged: 40, upserted: 0, embedded: 0 });
    se.close();
  });

  it('re-embeds only a product whose text changed; other field changes are stored without embedding', async () => {
    const se = await SearchEngine.open({ dir: join(dir, 'change'), embedder: em, reranker: rr });
    const col = await se.collection('p');
    await col.ingest(products(10), { mapping: MAPPING });
    const changed = products(10);
    changed[3].title_en = 'Stainless steel kitchen knife set';
    changed[5].price = 999;
    const r = await col.ingest(changed);
    expect(r).toMatchObject({ upserted: 2, unchanged: 8, embedded: 1 });
    const hit = await se.search('p', 'anything', { filter: { price: 999 }, rerank: false });
    expect(hit.results.map((h) => h.id)).toEqual(['sku-5']);
    se.close();
  });

  it('reports bad lines and missing fields, and keeps the good records', async () => {
    const se = await SearchEngine.open({ dir: join(dir, 'bad'), embedder: em });
    const col = await se.collection('p');
    const lines = [JSON.stringify(products(1)[0]), '{"sku": "x", broken', '[1,2]', JSON.stringify({ title_en: 'no id' }), JSON.stringify({ sku: 'no-text' }), JSON.stringify({ ...products(1, 5)[0], price: 'cheap' })];
    writeFileSync(join(dir, 'bad.jsonl'), lines.join('\n'));
    const r = await col.ingest(join(dir, 'bad.jsonl'), { mapping: MAPPING });
    expect(r.upserted).toBe(1);
    expect(r.rejected).toBe(5);
    expect(r.errors.map((e) => e.at)).toEqual([2, 3, 4, 5, 6]);
    expect(r.errors[0].reason).toMatch(/invalid JSON/);
    expect(r.errors[2].reason).toMatch(/missing id field 'sku'/);
    expect(r.errors[3].reason).toMatch(/no text to embed/);
    expect(r.errors[4].reason).toMatch(/'price' is not a number/);
    await rejectsWithCode(col.ingest(join(dir, 'catalog.xml')), 'INVALID_INPUT');
    // invalid UTF-8 is an error, not text with replacement characters; the store stays consistent
    writeFileSync(join(dir, 'bad-utf8.jsonl'), Buffer.concat([Buffer.from(JSON.stringify(products(1, 9)[0]) + '\n{"sku": "u", "title_en": "'), Buffer.from([0xc3, 0x28]), Buffer.from('"}\n')]));
    const e = await rejectsWithCode(col.ingest(join(dir, 'bad-utf8.jsonl'), { mapping: MAPPING }), 'INVALID_INPUT');
    expect(e.message).toMatch(/not valid UTF-8/);
    expect(await col.pendingCount()).toBe(0);
    expect(await col.vectorCount()).toBe(await col.count());
    se.close();
  });

  it('streams a large file without loading it whole', async () => {
    const path = join(dir, 'large.jsonl');
    const out = createWriteStream(path);
    const filler = 'x'.repeat(2000);
    for (let i = 0; i < 1500; i++) out.write(JSON.stringify({ sku: `L${i}`, title_en: `item ${i % 5}`, note: filler + filler }) + '\n');
    await new Promise((r) => out.end(r));
    const se = await SearchEngine.open({ dir: join(dir, 'large'), embedder: em });
    const col = await se.collection('p');
    const heapBefore = process.memoryUsage().heapUsed;
    let peak = 0;
    const r = await col.ingest(path, { mapping: { id: 'sku', embed: '{title_en}', rerank: '{title_en}' }, batchSize: 256, onProgress: () => (peak = Math.max(peak, process.memoryUsage().heapUsed - heapBefore)) });
    expect(r.upserted).toBe(1500);
    expect(peak).toBeLessThan(64 << 20); // the 6 MB file (and its parsed objects) never sits in memory at once
    se.close();
  });
});

describe('search', () => {
  let se: SearchEngine;
  beforeAll(async () => {
    se = await SearchEngine.open({ dir: join(dir, 'search'), embedder: em, reranker: rr });
    await (await se.collection('p', { index: { kind: 'hnsw' } })).ingest(products(200), { mapping: MAPPING });
  });
  afterAll(() => se.close());

  it('recalls, reranks and reports timings per stage', async () => {
    const r = await se.search('p', '无线蓝牙降噪耳机', { recallK: 30, topN: 5 });
    expect(r.results).toHaveLength(5);
    expect(r.candidates).toBe(30);
    for (const h of r.results) {
      expect(h.rerankScore).toBeGreaterThan(0);
      expect(h.score).toBe(h.rerankScore);
    }
    for (let i = 1; i < 5; i++) expect(r.results[i - 1].score).toBeGreaterThanOrEqual(r.results[i].score);
    expect(Object.keys(r.timings).sort()).toEqual(['embedMs', 'fetchMs', 'keywordMs', 'recallMs', 'rerankMs', 'totalMs']);
    // the rerank stage gives the reranker's own scores for the rendered rerank text
    const direct = await rr.score(r.results.map((h) => ({ query: '无线蓝牙降噪耳机', document: renderTemplate(MAPPING.rerank, h.fields) })));
    r.results.forEach((h, i) => expect(h.rerankScore).toBeCloseTo(direct[i], 5));
  });

  it('applies filters inside recall: a narrow filter still fills topN', async () => {
    // 200 products, filter keeps 13 of them (Audio, price <= 60); recallK 5 would post-filter to almost nothing
    const r = await se.search('p', 'kitchen knife', { filter: { category: 'Audio', price: { lte: 60 } }, recallK: 10, topN: 10, rerank: false });
    const all = await se.search('p', 'kitchen knife', { recallK: 200, topN: 200, rerank: false });
    const eligible = all.results.filter((h) => h.fields.category === 'Audio' && (h.fields.price as number) <= 60);
    expect(r.results).toHaveLength(Math.min(10, eligible.length));
    expect(eligible.length).toBeGreaterThanOrEqual(10);
    for (const h of r.results) expect(h.fields).toMatchObject({ category: 'Audio' });
    expect(r.results.every((h) => (h.fields.price as number) <= 60)).toBe(true);
    expect((await se.search('p', 'x', { filter: { category: 'Nope' } })).results).toEqual([]);
    await rejectsWithCode(se.search('p', 'x', { filter: { 'bad field)': 1 } }), 'INVALID_INPUT');
    await rejectsWithCode(se.search('p', 'x', { filter: { price: { near: 3 } as never } }), 'INVALID_INPUT');
  });

  it('fuses business signals and explains each part', async () => {
    const plain = await se.search('p', 'auriculares bluetooth', { recallK: 20, topN: 20 });
    const fused = await se.search('p', 'auriculares bluetooth', { recallK: 20, topN: 20, fusion: { signals: { popularity: 0.5 } }, explain: true });
    for (const h of fused.results) {
      const e = h.explain!;
      expect(e.relevanceWeight).toBeCloseTo(0.5, 9);
      expect(h.score).toBeCloseTo(0.5 * e.relevance + e.signals.popularity.contribution, 9);
      expect(e.signals.popularity.normalised).toBeCloseTo((h.fields.popularity as number) / 0.9, 6); // popularity spans 0..0.9
    }
    expect(fused.results.map((h) => h.id)).not.toEqual(plain.results.map((h) => h.id));
    await rejectsWithCode(se.search('p', 'x', { fusion: { signals: { popularity: 1.5 } } }), 'INVALID_INPUT');
  });

  it('caches query embeddings and rerank scores, never for changed text', async () => {
    const s0 = se.cacheStats();
    const a = await se.search('p', 'zapatillas', { recallK: 10, topN: 3 });
    const s1 = se.cacheStats();
    const b = await se.search('p', 'zapatillas', { recallK: 10, topN: 3 });
    const s2 = se.cacheStats();
    expect(b.results).toEqual(a.results);
    expect(s2.queryEmbeddings.hits - s1.queryEmbeddings.hits).toBe(1);
    expect(s2.rerankScores.hits - s1.rerankScores.hits).toBe(10);
    expect(s1.rerankScores.misses - s0.rerankScores.misses).toBeGreaterThan(0);
    // change the text of the best product: its score must be computed again, not served from cache
    const col = await se.collection('p');
    const best = a.results[0];
    const changed = { ...products(200).find((p) => p.sku === best.id)!, title_en: 'Completely different: garden hose 20 m' };
    await col.ingest([changed]);
    const s3 = se.cacheStats();
    const c = await se.search('p', 'zapatillas', { recallK: 200, topN: 200, filter: { price: changed.price } });
    const s4 = se.cacheStats();
    expect(s4.rerankScores.misses - s3.rerankScores.misses).toBeGreaterThanOrEqual(1);
    const again = c.results.find((h) => h.id === best.id)!;
    expect(again.rerankScore).not.toBeCloseTo(best.rerankScore!, 6);
  });

  it('can rank by recall alone', async () => {
    const r = await se.search('p', 'auriculares', { rerank: false, topN: 5 });
    for (const h of r.results) {
      expect(h.rerankScore).toBeUndefined();
      expect(h.score).toBe(h.recallScore);
    }
  });

  it('rejects bad queries and options', async () => {
    await rejectsWithCode(se.search('p', '', {}), 'INVALID_INPUT');
    await rejectsWithCode(se.search('p', 'x', { topN: 0 }), 'INVALID_INPUT');
    await rejectsWithCode(se.collection('../escape'), 'INVALID_INPUT');
  });
});

describe('consistency', () => {
  it('one vector per language field is configurable', async () => {
    const se = await SearchEngine.open({ dir: join(dir, 'perlang'), embedder: em, reranker: rr });
    const col = await se.collection('p');
    await col.ingest(products(30), { mapping: { ...MAPPING, embed: ['{title_en}', '{title_zh}', '{title_es}'] } });
    expect(await col.count()).toBe(30);
    expect(await col.vectorCount()).toBe(90);
    const r = await se.search('p', '蓝牙耳机', { recallK: 10, topN: 10, rerank: false });
    expect(new Set(r.results.map((h) => h.id)).size).toBe(r.results.length); // one hit per product
    expect(r.results).toHaveLength(10);
    se.close();
  });

  it('deletes remove the product from store and index', async () => {
    const se = await SearchEngine.open({ dir: join(dir, 'delete'), embedder: em, reranker: rr });
    const col = await se.collection('p');
    await col.ingest(products(20), { mapping: MAPPING });
    expect(await col.delete(['sku-1', 'sku-2', 'nope'])).toBe(2);
    expect(await col.count()).toBe(18);
    expect(await col.vectorCount()).toBe(18);
    const r = await se.search('p', 'x', { recallK: 20, topN: 20, rerank: false });
    expect(r.results.map((h) => h.id)).not.toContain('sku-1');
    se.close();
    // and it stays deleted after reopening
    const se2 = await SearchEngine.open({ dir: join(dir, 'delete'), embedder: em });
    expect(await (await se2.collection('p')).vectorCount()).toBe(18);
    se2.close();
  });

  it('refuses to mix vectors of another embedding model, and re-indexes on request', async () => {
    // same shapes and name, other weights (another seed): only the weights tell them apart
    const path = join(dir, 'other-embedder.gguf');
    const { makeTestModel } = await import('../lib/synthetic/model');
    await makeTestModel({ kind: 'embedder', shape: 'tiny', out: path, seed: 77 });
    const em2 = await Embedder.load({ model: path, threads: 1 });
    try {
      const se = await SearchEngine.open({ dir: join(dir, 'model'), embedder: em });
      await (await se.collection('p')).ingest(products(10), { mapping: MAPPING });
      se.close();
      const se2 = await SearchEngine.open({ dir: join(dir, 'model'), embedder: em2 });
      const e = await rejectsWithCode(se2.collection('p'), 'MODEL_MISMATCH');
      expect(e.message).toMatch(/reindex: true/);
      const col = await se2.collection('p', { reindex: true });
      expect(await col.pendingCount()).toBe(0);
      expect(await col.vectorCount()).toBe(10);
      await se2.close();
      // the same file under a differently worded description (an older qrank's) is the same model
      const db = new (require('better-sqlite3'))(join(dir, 'model', 'p.sqlite'));
      const fp = JSON.parse(db.prepare("SELECT value FROM meta WHERE key = 'embedder'").get().value);
      db.prepare("UPDATE meta SET value = ? WHERE key = 'embedder'").run(JSON.stringify({ ...fp, description: 'qwen3 ?B all F32' }));
      db.close();
      const se3 = await SearchEngine.open({ dir: join(dir, 'model'), embedder: em2 });
      expect(await (await se3.collection('p')).vectorCount()).toBe(10);
      await se3.close();
    } finally {
      await em2.close();
    }
  });

  it('survives kill -9 during ingestion: reopened, no product lost, duplicated or pointing at a missing vector', async () => {
    const data = join(dir, 'crash');
    const feed = join(dir, 'crash.jsonl');
    writeFileSync(feed, toJsonl(products(3000)));
    const script = `
      const { Embedder } = require(${JSON.stringify(join(ROOT, 'dist', 'index.js'))});
      const { SearchEngine } = require(${JSON.stringify(join(ROOT, 'dist', 'search', 'engine.js'))});
      (async () => {
        const em = await Embedder.load({ model: ${JSON.stringify(MODELS.embedder)}, threads: 1 });
        const se = await SearchEngine.open({ dir: ${JSON.stringify(data)}, embedder: em });
        const col = await se.collection('p');
        await col.ingest(${JSON.stringify(feed)}, { mapping: ${JSON.stringify(MAPPING)}, batchSize: 32, onProgress: (p) => { if (p.read >= 320) console.log('progress'); } });
      })();`;
    const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve) => child.stdout.on('data', (c: Buffer) => c.toString().includes('progress') && resolve()));
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    expect(existsSync(join(data, 'p.sqlite'))).toBe(true);

    const se = await SearchEngine.open({ dir: data, embedder: em, reranker: rr });
    const col = await se.collection('p');
    expect(await col.pendingCount()).toBe(0); // reconciled: every stored product has its vector
    expect(await col.vectorCount()).toBe(await col.count());
    expect(await col.count()).toBeGreaterThanOrEqual(320);
    const r = await col.ingest(feed); // finishing the job
    expect(await col.count()).toBe(3000);
    expect(await col.vectorCount()).toBe(3000);
    expect(r.upserted + r.unchanged).toBe(3000);
    const hits = await se.search('p', 'auriculares', { recallK: 50, topN: 50, rerank: false });
    expect(new Set(hits.results.map((h) => h.id)).size).toBe(50);
    se.close();
  }, 120_000);
});
