/**
 * Keyword recall (issue 13): how text becomes terms in each of the shop's languages, codes, hostile
 * query syntax, filters inside keyword recall, reciprocal rank fusion on a hand-computed example,
 * the keyword index through kill -9, the upgrade of a collection made before keyword indexes, a
 * changed mapping, and the bounds on hostile queries. Keyword recall needs no model, so the
 * rankings checked here are real even with the tiny synthetic embedder.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Embedder } from '../lib/index';
import type { Mapping } from '../lib/search/collection';
import { SearchEngine } from '../lib/search/engine';
import { DEFAULT_RRF_K, reciprocalRankFusion } from '../lib/search/fusion';
import { KeywordIndex, MAX_KEYWORD_POSTINGS } from '../lib/search/keyword-index';
import { MAX_QUERY_CHARS, MAX_QUERY_TERMS, TERM, keywordTerms, matchExpression, queryTerms } from '../lib/search/keyword-text';
import { keywordBuildLog } from '../lib/cli/shared';
import { MODELS, ROOT, products, rejectsWithCode } from './helpers';

const dir = mkdtempSync(join(tmpdir(), 'qrank-keyword-'));
let em: Embedder;
beforeAll(async () => {
  em = await Embedder.load({ model: MODELS.embedder, threads: 1 });
});
afterAll(async () => {
  await em?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** The query's terms are all among the product's: what keyword recall needs to match. */
const finds = (query: string, product: string) => queryTerms(query).every((t) => keywordTerms(product).includes(t));

describe('terms in each language (keyword-text.ts)', () => {
  it('Chinese: bigrams of a run, so a word inside a longer run is found; one character alone too', () => {
    expect(queryTerms('降噪耳机')).toEqual(['降噪', '噪耳', '耳机']);
    expect(finds('降噪耳机', '无线降噪耳机')).toBe(true);
    expect(finds('耳机', 'Sonquil Q5 头戴式无线蓝牙主动降噪耳机 40小时')).toBe(true);
    expect(finds('刀', '不锈钢刀具套装')).toBe(true); // one character: products hold each character alone
    expect(finds('降噪耳机', '无线蓝牙耳机')).toBe(false);
  });

  it('Japanese: kana and kanji runs give bigrams; dakuten are not folded away', () => {
    expect(finds('イヤホン', 'ノイズキャンセリング ワイヤレスイヤホン')).toBe(true);
    expect(finds('無線イヤホン', '高音質 無線イヤホン 防水')).toBe(true);
    expect(queryTerms('ノイズー')).toContain('ズー'); // the prolonged sound mark stays in the run
    expect(queryTerms('ガラス')).toEqual(['ガラ', 'ラス']);
    expect(queryTerms('カラス')).toEqual(['カラ', 'ラス']);
  });

  it('Korean: Hangul bigrams, so a word with a particle attached still shares its bigrams', () => {
    expect(queryTerms('무선 이어폰')).toEqual(['무선', '이어', '어폰']);
    expect(finds('이어폰', '노이즈 캔슬링 무선 이어폰을')).toBe(true);
    expect(keywordTerms('이어폰').join(' ')).not.toMatch(/[\u1100-\u11ff]/); // syllables, never decomposed jamo
  });

  it('Spanish with and without accents: the accents are folded, upper and lower case alike', () => {
    for (const q of ['cancelación', 'cancelacion', 'CANCELACIÓN', 'Cancelación']) expect(queryTerms(q)).toEqual(['cancelacion']);
    expect(finds('auriculares inalambricos', 'Auriculares inalámbricos con cancelación de ruido')).toBe(true);
    expect(queryTerms('niño año')).toEqual(['nino', 'ano']);
  });

  it('English: words, lower case, apostrophes and hyphens joined and split', () => {
    expect(queryTerms('Wireless HEADPHONES')).toEqual(['wireless', 'headphones']);
    expect(finds("mens shoes", "Men's running shoes")).toBe(true);
    expect(finds('wifi plug', 'Smart Wi-Fi plug')).toBe(true);
    expect(finds('wi fi', 'Smart Wi-Fi plug')).toBe(true);
  });

  it('codes with dashes and dots are found whole, without their joiners and by their parts', () => {
    const product = 'Sonora WH-1000XM5 wireless headphones, SKU-48213, case CASE-X12.PRO';
    for (const q of ['WH-1000XM5', 'wh1000xm5', 'WH1000XM5', '1000XM5', 'wh-1000xm5', 'ＷＨ－１０００ＸＭ５', 'SKU-48213', 'sku48213', '48213', 'X12.PRO', 'x12pro', 'case-x12']) {
      expect({ q, found: finds(q, product) }).toEqual({ q, found: true });
    }
    expect(keywordTerms('WH-1000XM5')).toEqual(['wh1000xm5', 'wh', '1000', 'xm', '5', 'wh1000', '1000xm', 'xm5', 'wh1000xm', '1000xm5']);
    // decimal commas and points meet: 3,5 mm and 3.5mm both give 35
    expect(queryTerms('3,5 mm')).toContain('35');
    expect(keywordTerms('3.5mm jack')).toContain('35');
    expect(queryTerms('talla 42, 43')).toEqual(['talla', '42', '43']);
  });

  it('every term is letters, digits and marks only, so query syntax never survives', () => {
    const hostile = ['"', '"a" AND "b"', 'NEAR(a b, 3)', 'head*', '^start', 'title:x', '{c0 c1}:x', '((a', 'a OR', '-x +y', "'; DROP TABLE products; --", '\u0000\u202e', '🎧 🎧'];
    for (const q of hostile) {
      for (const t of queryTerms(q)) expect(t).toMatch(TERM);
      const m = matchExpression(queryTerms(q));
      if (m) expect(m).toMatch(/^"[\p{L}\p{N}\p{M}]+"( OR "[\p{L}\p{N}\p{M}]+")*$/u);
    }
    expect(queryTerms('!!! *** ((( """')).toEqual([]);
    expect(matchExpression([])).toBeUndefined();
  });

  it('bounds a query: its first MAX_QUERY_TERMS distinct terms from its first MAX_QUERY_CHARS characters, in linear time', () => {
    const many = Array.from({ length: 5000 }, (_, i) => `w${i}x`).join(' ');
    const terms = queryTerms(many);
    expect(terms.length).toBe(MAX_QUERY_TERMS);
    expect(terms[0]).toBe('w0x');
    expect(queryTerms('a'.repeat(MAX_QUERY_CHARS) + ' tail')).toEqual(['a'.repeat(MAX_QUERY_CHARS)]);
    const t = performance.now();
    expect(keywordTerms('a1'.repeat(250_000)).length).toBeGreaterThan(250_000); // a 500 000-piece word: its pieces, no spans
    expect(keywordTerms('无线降噪耳机'.repeat(50_000)).length).toBeGreaterThan(500_000);
    expect(performance.now() - t).toBeLessThan(5000);
  });
});

describe('reciprocal rank fusion', () => {
  it('orders a hand-computed example: score = sum of weight / (k + rank)', () => {
    // keyword list a, b, c; vector list c, a, d (k = 60, weights 1):
    // a: 1/61 + 1/62 = 0.032653   c: 1/63 + 1/61 = 0.032266   b: 1/62 = 0.016129   d: 1/63 = 0.015873
    const fused = reciprocalRankFusion([{ ids: ['a', 'b', 'c'], weight: 1 }, { ids: ['c', 'a', 'd'], weight: 1 }]);
    expect(fused.map((f) => f.id)).toEqual(['a', 'c', 'b', 'd']);
    expect(fused[0].score).toBeCloseTo(1 / 61 + 1 / 62, 12);
    expect(fused[1].score).toBeCloseTo(1 / 63 + 1 / 61, 12);
    expect(fused.map((f) => f.ranks)).toEqual([[1, 2], [3, 1], [2, undefined], [undefined, 3]]);
    expect(DEFAULT_RRF_K).toBe(60);
    // the keyword list weighted 3, k = 1: a 3/2 + 1/3 = 1.8333, c 3/4 + 1/2 = 1.25, b 3/3 = 1, d 1/4 = 0.25
    const weighted = reciprocalRankFusion([{ ids: ['a', 'b', 'c'], weight: 3 }, { ids: ['c', 'a', 'd'], weight: 1 }], 1);
    expect(weighted.map((f) => [f.id, Number(f.score.toFixed(4))])).toEqual([['a', 1.8333], ['c', 1.25], ['b', 1], ['d', 0.25]]);
  });

  it('breaks ties by the best rank, then by list order; a repeated id counts at its first rank', () => {
    // y: rank 1 in the first list, x: rank 1 in the second; the same score and best rank: the first list's first
    expect(reciprocalRankFusion([{ ids: ['y'], weight: 1 }, { ids: ['x'], weight: 1 }]).map((f) => f.id)).toEqual(['y', 'x']);
    // k = 0: q 1/1 + 1/2 = 1.5 and p 1/2 + 1/1 = 1.5 tie (q repeated in the second list counts once); q came first
    const tie = reciprocalRankFusion([{ ids: ['q', 'p'], weight: 1 }, { ids: ['p', 'q', 'q'], weight: 1 }], 0);
    expect(tie.map((f) => [f.id, f.score])).toEqual([['q', 1.5], ['p', 1.5]]);
  });
});

const SHOP: Mapping = {
  id: 'sku',
  embed: '{title}',
  rerank: '{title}',
  numeric: ['price', 'popularity'],
  keyword: [{ template: '{sku} | {brand}', weight: 4 }, { template: '{title}', weight: 1 }],
};
const HANDWRITTEN = [
  { sku: 'SKU-48213', brand: 'Trailo', title: 'Trailblazer running shoes for men', category: 'Shoes', price: 80 },
  { sku: 'WH-1000XM5', brand: 'Sonora', title: 'Sonora WH-1000XM5 wireless noise cancelling headphones', category: 'Audio', price: 300 },
  { sku: 'ZH-1', brand: '索诺拉', title: '索诺拉 无线降噪耳机 蓝牙5.3', category: 'Audio', price: 90 },
  { sku: 'ZH-2', brand: '锋刃', title: '不锈钢刀具套装 6件', category: 'Kitchen', price: 45 },
  { sku: 'JA-1', brand: 'Oto', title: 'ノイズキャンセリング ワイヤレスイヤホン 無線', category: 'Audio', price: 70 },
  { sku: 'JA-2', brand: 'Yuka', title: 'ガラス製 電気ケトル 1.7L', category: 'Kitchen', price: 40 },
  { sku: 'KO-1', brand: 'Sori', title: '노이즈 캔슬링 무선 이어폰', category: 'Audio', price: 65 },
  { sku: 'ES-1', brand: 'Ruidón', title: 'Auriculares con cancelación de ruido', category: 'Audio', price: 55 },
  { sku: 'ES-2', brand: 'Veloz', title: 'Zapatillas de running talla 42', category: 'Shoes', price: 60 },
  { sku: 'CASE-X12.PRO', brand: 'Cazelo', title: 'Funda para Orvane X12 Pro', category: 'Phones', price: 15 },
];
// the generated catalog of the other tests, as this mapping reads it
const filler = (n: number, start = 0) => products(n, start).map((p) => ({ ...p, title: p.title_en }));

describe('keyword recall in a collection', () => {
  let se: SearchEngine;
  beforeAll(async () => {
    se = await SearchEngine.open({ dir: join(dir, 'shop'), embedder: em });
    await (await se.collection('p')).ingest([...HANDWRITTEN, ...filler(200)], { mapping: SHOP });
  });
  afterAll(() => se.close());
  const first = async (q: string, options = {}) => (await se.search('p', q, { recall: 'keyword', rerank: false, topN: 5, ...options })).results[0]?.id;

  it('finds each language\'s product first: Chinese, Japanese, Korean, Spanish with and without accents, English', async () => {
    const cases: [string, string][] = [
      ['降噪耳机', 'ZH-1'], ['刀', 'ZH-2'], ['イヤホン', 'JA-1'], ['電気ケトル', 'JA-2'], ['이어폰', 'KO-1'],
      ['cancelación', 'ES-1'], ['cancelacion', 'ES-1'], ['CANCELACION DE RUIDO', 'ES-1'], ['talla 42', 'ES-2'],
      ['noise cancelling headphones', 'WH-1000XM5'], ['running shoes men', 'SKU-48213'], ['ruidon', 'ES-1'],
    ];
    for (const [q, id] of cases) expect({ q, id: await first(q) }).toEqual({ q, id });
  });

  it('finds codes whole, without dashes, and by their parts, even among 200 products with sku-N codes', async () => {
    for (const q of ['WH-1000XM5', 'wh1000xm5', '1000XM5', 'ＷＨ－１０００ＸＭ５']) expect({ q, id: await first(q) }).toEqual({ q, id: 'WH-1000XM5' });
    for (const q of ['SKU-48213', 'sku48213', '48213']) expect({ q, id: await first(q) }).toEqual({ q, id: 'SKU-48213' });
    for (const q of ['CASE-X12.PRO', 'x12 pro', 'funda X12']) expect({ q, id: await first(q) }).toEqual({ q, id: 'CASE-X12.PRO' });
    expect(await first('sku-137')).toBe('sku-137');
  });

  it('keyword scores are BM25 (higher is better, in order) and explain says the keyword rank', async () => {
    const r = await se.search('p', 'wireless headphones model 3', { recall: 'keyword', rerank: false, topN: 20, explain: true });
    expect(r.recall).toBe('keyword');
    expect(r.timings.keywordMs).toBeGreaterThan(0);
    expect(r.timings.embedMs).toBe(0); // keyword recall alone embeds nothing
    r.results.forEach((h, i) => {
      expect(h.explain!.recall).toEqual({ keywordRank: i + 1, keywordScore: h.recallScore });
      if (i) expect(h.score).toBeLessThanOrEqual(r.results[i - 1].score);
    });
    expect(r.results[0].fields.title).toMatch(/model 3$/);
  });

  it('never passes query syntax to FTS5: quotes, AND/OR/NOT/NEAR, *, ^, columns, parentheses are plain terms', async () => {
    const db = new Database(join(dir, 'shop', 'p.sqlite'));
    try {
      // what these strings do to FTS5 when they reach it as syntax
      for (const syntax of ['"', 'NEAR(', 'headphones AND', '((headphones', 'c9:x']) expect(() => db.prepare('SELECT rowid FROM keywords WHERE keywords MATCH ?').all(syntax)).toThrow();
    } finally {
      db.close();
    }
    const hostile = ['"', '""', '"unbalanced', 'AND', 'headphones AND', 'OR OR', 'NOT headphones', 'NEAR(wireless headphones)', 'NEAR(', '*', 'head*', '^headphones',
      'title:headphones', 'c0:WH-1000XM5', '(', ')', '((headphones', '-headphones', '{c0 c1}:sonora', 'a"b', "'", '\\', '\u0000', "'; DROP TABLE products; --", 'sonora*'];
    for (const q of hostile) {
      const r = await se.search('p', q, { recall: 'keyword', rerank: false, topN: 5 });
      expect(r.recall).toBe(queryTerms(q).length ? 'keyword' : 'vector');
    }
    // the words of an operator are searched as words: NOT keeps headphones in, a column name is a term
    expect(await first('NOT headphones')).toBeDefined();
    expect(await first('c0:WH-1000XM5')).toBe('WH-1000XM5');
    expect(await first('sonora*')).toBe('WH-1000XM5');
    expect(await (await se.collection('p')).count()).toBe(210);
  });

  it('falls back to vector recall for a query without terms, in hybrid and keyword recall alike', async () => {
    for (const recall of ['hybrid', 'keyword'] as const) {
      const r = await se.search('p', '!!! ***', { recall, rerank: false, topN: 10, explain: true });
      expect(r.recall).toBe('vector');
      expect(r.results).toHaveLength(10);
      for (const h of r.results) expect(h.explain!.recall.keywordRank).toBeUndefined();
    }
  });

  it('bounds hostile values: lone surrogates are INVALID_INPUT; huge queries and thousands of terms are answered quickly', async () => {
    for (const recall of ['hybrid', 'keyword', 'vector'] as const) {
      const e = await rejectsWithCode(se.search('p', 'wh-1000xm5 \ud800', { recall }), 'INVALID_INPUT');
      expect(e.message).toMatch(/lone surrogate/);
    }
    const t = performance.now();
    const huge = await se.search('p', 'WH-1000XM5 ' + 'x'.repeat(1 << 20), { recall: 'keyword', rerank: false });
    expect(huge.results[0].id).toBe('WH-1000XM5');
    const words = Array.from({ length: 5000 }, (_, i) => `zz${i.toString(36).replace(/\d/g, (d) => 'abcdefghij'[Number(d)])}`);
    const thousands = await se.search('p', `${words.join(' ')} WH-1000XM5`, { recall: 'keyword', rerank: false });
    expect(thousands.recall).toBe('keyword'); // its first 64 terms, none held, so nothing found
    expect(thousands.results).toEqual([]);
    expect(performance.now() - t).toBeLessThan(5000);
    await rejectsWithCode(se.search('p', 'x', { recall: 'bm25' as never }), 'INVALID_INPUT');
    await rejectsWithCode(se.search('p', 'x', { keywordK: 0 }), 'INVALID_INPUT');
    await rejectsWithCode(se.search('p', 'x', { keywordK: 10_001 }), 'INVALID_INPUT');
    for (const fusion of [{ rrfK: -1 }, { rrfK: Number.NaN }, { keywordWeight: 101 }, { vectorWeight: -0.5 }, { rrfK: '60' as never }]) {
      const e = await rejectsWithCode(se.search('p', 'x', { fusion }), 'INVALID_INPUT');
      expect(e.message).toMatch(/^fusion\.(rrfK|keywordWeight|vectorWeight): /);
    }
  });

  it('applies filters inside keyword recall: a narrow filter still fills topN', async () => {
    // 'wireless headphones' is in every generated product; 13 of them are Audio at 60 or less
    const filter = { category: 'Audio', price: { lte: 60 } };
    const all = await se.search('p', 'wireless headphones', { recall: 'keyword', rerank: false, recallK: 300, topN: 300 });
    const eligible = all.results.filter((h) => h.fields.category === 'Audio' && (h.fields.price as number) <= 60);
    expect(eligible.length).toBeGreaterThanOrEqual(10);
    const firstTen = all.results.slice(0, 10).filter((h) => eligible.includes(h));
    expect(firstTen.length).toBeLessThan(10); // filtering after recall would come short
    const r = await se.search('p', 'wireless headphones', { recall: 'keyword', rerank: false, recallK: 10, topN: 10, filter });
    expect(r.results).toHaveLength(10);
    for (const h of r.results) expect(h.fields.category === 'Audio' && (h.fields.price as number) <= 60).toBe(true);
    for (const x of r.results) expect(x.score).toBe(all.results.find((a) => a.id === x.id)!.score); // the same BM25 as unfiltered
    // hybrid: both lists filtered inside, so topN is filled too
    const h = await se.search('p', 'wireless headphones', { rerank: false, recallK: 10, topN: 10, filter, explain: true });
    expect(h.recall).toBe('hybrid');
    expect(h.results).toHaveLength(10);
    for (const x of h.results) expect(x.fields.category === 'Audio' && (x.fields.price as number) <= 60).toBe(true);
    expect((await se.search('p', 'WH-1000XM5', { recall: 'keyword', filter: { category: 'Shoes' } })).results.map((x) => x.id)).not.toContain('WH-1000XM5');
  });

  it('fuses the two lists by RRF: each hit\'s fused score is sum of weight / (rrfK + rank), in order', async () => {
    for (const fusion of [{}, { rrfK: 10, keywordWeight: 2 }, { rrfK: 0, vectorWeight: 0.5 }]) {
      const r = await se.search('p', 'wireless headphones WH-1000XM5', { rerank: false, recallK: 30, keywordK: 20, topN: 30, explain: true, fusion });
      expect(r.recall).toBe('hybrid');
      expect(r.candidates).toBe(30);
      const k = fusion.rrfK ?? 60;
      r.results.forEach((h, i) => {
        const e = h.explain!.recall;
        const expected = (e.keywordRank ? (fusion.keywordWeight ?? 1) / (k + e.keywordRank) : 0) + (e.vectorRank ? (fusion.vectorWeight ?? 1) / (k + e.vectorRank) : 0);
        expect(e.fusedScore).toBeCloseTo(expected, 12);
        expect(h.score).toBe(e.fusedScore);
        expect(e.keywordRank === undefined || e.keywordRank <= 20).toBe(true);
        if (i) expect(h.score).toBeLessThanOrEqual(r.results[i - 1].score);
      });
      expect(r.results.some((h) => h.explain!.recall.keywordRank && h.explain!.recall.vectorRank)).toBe(true);
    }
    const code = await se.search('p', 'WH-1000XM5', { rerank: false, explain: true, topN: 100 });
    expect(code.results.find((h) => h.id === 'WH-1000XM5')!.explain!.recall.keywordRank).toBe(1);
  });

  it('is the default recall of a collection with a keyword index, and says which ran', async () => {
    const r = await se.search('p', 'WH-1000XM5', { rerank: false });
    expect(r.recall).toBe('hybrid');
    expect(Object.keys(r.timings).sort()).toEqual(['embedMs', 'fetchMs', 'keywordMs', 'recallMs', 'rerankMs', 'totalMs']);
    expect((await se.search('p', 'WH-1000XM5', { recall: 'vector', rerank: false })).recall).toBe('vector');
  });
});

describe('the keyword index and the store', () => {
  const keywordRows = (db: Database.Database) => (db.prepare('SELECT rowid FROM keywords ORDER BY rowid').all() as { rowid: number }[]).map((r) => r.rowid);
  const productRows = (db: Database.Database) => (db.prepare('SELECT vid FROM products ORDER BY vid').all() as { vid: number }[]).map((r) => r.vid);
  const inSync = (path: string) => {
    const db = new Database(path, { readonly: true });
    try {
      return { keywords: keywordRows(db), products: productRows(db) };
    } finally {
      db.close();
    }
  };

  it('follows upserts and deletes: a changed text loses its old terms, a deleted product its row', async () => {
    const se = await SearchEngine.open({ dir: join(dir, 'writes'), embedder: em });
    const col = await se.collection('p');
    await col.ingest(HANDWRITTEN, { mapping: SHOP });
    await col.ingest([{ ...HANDWRITTEN[1], title: 'Sonora studio monitor speakers' }]);
    expect((await se.search('p', 'cancelling', { recall: 'keyword' })).results.map((h) => h.id)).not.toContain('WH-1000XM5');
    expect((await se.search('p', 'studio monitor', { recall: 'keyword' })).results[0].id).toBe('WH-1000XM5');
    expect(await col.delete(['WH-1000XM5', 'ZH-1'])).toBe(2);
    expect((await se.search('p', 'WH-1000XM5', { recall: 'keyword' })).results.map((h) => h.id)).not.toContain('WH-1000XM5');
    const rows = inSync(join(dir, 'writes', 'p.sqlite'));
    expect(rows.keywords).toEqual(rows.products);
    await se.close();
  });

  it('survives kill -9 during ingestion: the keyword index holds exactly the stored products, none lost or twice', async () => {
    const data = join(dir, 'crash');
    const feed = join(dir, 'crash.jsonl');
    writeFileSync(feed, filler(3000).map((p) => JSON.stringify(p)).join('\n') + '\n');
    const script = `
      const { Embedder } = require(${JSON.stringify(join(ROOT, 'dist', 'index.js'))});
      const { SearchEngine } = require(${JSON.stringify(join(ROOT, 'dist', 'search', 'engine.js'))});
      (async () => {
        const em = await Embedder.load({ model: ${JSON.stringify(MODELS.embedder)}, threads: 1 });
        const se = await SearchEngine.open({ dir: ${JSON.stringify(data)}, embedder: em });
        const col = await se.collection('p');
        await col.ingest(${JSON.stringify(feed)}, { mapping: ${JSON.stringify(SHOP)}, batchSize: 32, onProgress: (p) => { if (p.read >= 320) console.log('progress'); } });
      })();`;
    const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve) => child.stdout.on('data', (c: Buffer) => c.toString().includes('progress') && resolve()));
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));

    const crashed = inSync(join(data, 'p.sqlite'));
    expect(crashed.products.length).toBeGreaterThanOrEqual(320);
    expect(crashed.keywords).toEqual(crashed.products); // the same transactions: nothing lost, nothing twice
    const se = await SearchEngine.open({ dir: data, embedder: em });
    const col = await se.collection('p');
    await col.ingest(feed);
    expect(await col.count()).toBe(3000);
    const done = inSync(join(data, 'p.sqlite'));
    expect(done.keywords).toEqual(done.products);
    expect(done.keywords).toHaveLength(3000);
    const r = await se.search('p', 'sku-2999', { recall: 'keyword', rerank: false, topN: 3000 });
    expect(r.results[0].id).toBe('sku-2999');
    expect(new Set(r.results.map((h) => h.id)).size).toBe(r.results.length);
    await se.close();
  }, 120_000);

  it('builds the keyword index of a collection made before keyword indexes on open, once, with progress', async () => {
    const data = join(dir, 'upgrade');
    let se = await SearchEngine.open({ dir: data, embedder: em });
    await (await se.collection('p')).ingest([...HANDWRITTEN, ...filler(4500)], { mapping: SHOP });
    await se.close();
    // what an older qrank left: no keyword table, no keyword meta
    const db = new Database(join(data, 'p.sqlite'));
    db.exec("DROP TABLE keywords; DELETE FROM meta WHERE key = 'keywords'");
    db.close();
    const progress: { collection: string; done: number; total: number }[] = [];
    se = await SearchEngine.open({ dir: data, embedder: em, onKeywordIndexProgress: (collection, p) => progress.push({ collection, ...p }) });
    const col = await se.collection('p');
    expect(progress[0]).toEqual({ collection: 'p', done: 0, total: 4510 });
    expect(progress.at(-1)).toEqual({ collection: 'p', done: 4510, total: 4510 });
    expect(progress.length).toBeGreaterThanOrEqual(4); // batches of 2000: 0, 2000, 4000, 4510
    expect(await col.hasKeywordIndex()).toBe(true);
    expect((await col.info()).keywords).toEqual([{ template: '{sku} | {brand}', weight: 4 }, { template: '{title}', weight: 1 }]);
    expect((await se.search('p', 'WH-1000XM5', { recall: 'keyword' })).results[0].id).toBe('WH-1000XM5');
    await se.close();
    const again: unknown[] = [];
    se = await SearchEngine.open({ dir: data, embedder: em, onKeywordIndexProgress: (_c, p) => again.push(p) });
    await se.collection('p');
    expect(again).toEqual([]); // once
    await se.close();
    // rows lost behind its back (not by qrank: its writes share the products' transactions): rebuilt on open
    const tamper = new Database(join(data, 'p.sqlite'));
    tamper.exec('DELETE FROM keywords WHERE rowid IN (SELECT vid FROM products LIMIT 3)');
    tamper.close();
    se = await SearchEngine.open({ dir: data, embedder: em });
    await se.collection('p');
    await se.close();
    const rows = inSync(join(data, 'p.sqlite'));
    expect(rows.keywords).toEqual(rows.products);
  }, 60_000);

  it('the server logs a build on open: its start, every 5 s, its end', () => {
    const lines: { o: object; msg: string }[] = [];
    const report = keywordBuildLog({ info: (o, msg) => lines.push({ o, msg }) });
    for (const done of [0, 2000, 4000, 4510]) report('demo', { done, total: 4510 });
    expect(lines.map((l) => l.o)).toEqual([{ collection: 'demo', done: 0, total: 4510 }, { collection: 'demo', done: 4510, total: 4510 }]);
    expect(lines[0].msg).toMatch(/building the keyword index/);
    expect(lines[1].msg).toBe('keyword index built');
  });

  it('a build cut short leaves the old index and its record; the next open builds again', async () => {
    const data = join(dir, 'cut');
    let se = await SearchEngine.open({ dir: data, embedder: em });
    await (await se.collection('p')).ingest(HANDWRITTEN, { mapping: SHOP });
    await se.close();
    const db = new Database(join(data, 'p.sqlite'));
    // a crash in the middle of a build for a new analyzer: a half-filled build table, the old record
    db.exec("CREATE VIRTUAL TABLE keywords_build USING fts5(c0, c1, content='', contentless_delete=1)");
    db.exec("INSERT INTO keywords_build (rowid, c0, c1) VALUES (1, 'half', 'built')");
    db.prepare("UPDATE meta SET value = json_set(value, '$.analyzer', 0) WHERE key = 'keywords'").run();
    db.close();
    se = await SearchEngine.open({ dir: data, embedder: em });
    expect((await se.search('p', 'half built', { recall: 'keyword' })).results).toEqual([]);
    expect((await se.search('p', 'SKU-48213', { recall: 'keyword' })).results[0].id).toBe('SKU-48213');
    await se.close();
    const check = new Database(join(data, 'p.sqlite'), { readonly: true });
    expect(check.prepare("SELECT count(*) AS n FROM sqlite_master WHERE name = 'keywords_build'").get()).toEqual({ n: 0 });
    expect(JSON.parse((check.prepare("SELECT value FROM meta WHERE key = 'keywords'").get() as { value: string }).value).analyzer).toBe(1);
    check.close();
  });

  it('builds again when the mapping\'s keyword columns change; keyword: false turns it off', async () => {
    const se = await SearchEngine.open({ dir: join(dir, 'remap'), embedder: em });
    const col = await se.collection('p');
    await col.ingest(HANDWRITTEN, { mapping: SHOP });
    expect((await se.search('p', 'Kitchen', { recall: 'keyword' })).results).toEqual([]); // category is no keyword column
    const progress: number[] = [];
    await col.ingest([], { mapping: { ...SHOP, keyword: '{title} {category}' }, onKeywordIndexProgress: (p) => progress.push(p.done) });
    expect(progress).toEqual([0, 10]);
    expect((await se.search('p', 'Kitchen', { recall: 'keyword', topN: 5 })).results.map((h) => h.id).sort()).toEqual(['JA-2', 'ZH-2']);
    await col.ingest([], { mapping: { ...SHOP, keyword: false } });
    expect(await col.hasKeywordIndex()).toBe(false);
    expect((await col.info()).keywords).toEqual([]);
    expect((await se.search('p', 'WH-1000XM5')).recall).toBe('vector');
    const e = await rejectsWithCode(se.search('p', 'WH-1000XM5', { recall: 'keyword' }), 'INVALID_INPUT');
    expect(e.message).toMatch(/needs a keyword index.*keyword: false/);
    await col.ingest([{ sku: 'NEW-1', title: 'new product' }]); // writes go on without an index
    await col.ingest([], { mapping: SHOP });
    expect((await se.search('p', 'NEW-1', { recall: 'keyword' })).results[0].id).toBe('NEW-1');
    await se.close();
  });

  it('reads at most MAX_KEYWORD_POSTINGS postings: the most common terms are left out first, the rarest kept', async () => {
    const db = new Database(':memory:');
    db.exec('CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL); CREATE TABLE products (vid INTEGER PRIMARY KEY, fields TEXT NOT NULL)');
    const meta = { get: (k: string) => (db.prepare('SELECT value FROM meta WHERE key = ?').get(k) as { value: string } | undefined)?.value, set: (k: string, v: string) => void db.prepare('INSERT OR REPLACE INTO meta VALUES (?, ?)').run(k, v) };
    const insert = db.prepare('INSERT INTO products (vid, fields) VALUES (?, ?)');
    const n = MAX_KEYWORD_POSTINGS * 0.6;
    db.transaction(() => {
      for (let i = 1; i <= n; i++) insert.run(i, JSON.stringify({ t: `common ${i <= n * 0.8 ? 'middle' : ''} ${i % 1000 === 0 ? 'rare' : ''}` }));
    })();
    const index = new KeywordIndex(db, meta);
    await index.sync([{ template: '{t}', weight: 1 }]);
    // common 60 000 + middle 48 000 postings: over the budget, so common goes; rare (60) and middle fit
    expect(index.plan(['common', 'middle', 'rare', 'absent'])).toEqual({ terms: ['rare', 'middle'], postings: 48_060 });
    expect(index.plan(['common', 'rare'])).toEqual({ terms: ['rare', 'common'], postings: 60_060 });
    const top = index.search(['common', 'middle', 'rare'], 5);
    expect(top.map((h) => h.vid)).toEqual(index.search(['middle', 'rare'], 5).map((h) => h.vid));
    expect(top.map((h) => h.vid).every((vid) => vid % 1000 === 0)).toBe(true); // rare first
    // the rarest term stays, whatever it costs; held by more products than the budget, the most recent of them are scored
    db.transaction(() => {
      for (let i = n + 1; i <= MAX_KEYWORD_POSTINGS * 1.2; i++) index.put(i, [`common ${i === n + 1 ? 'common common' : ''}`]);
    })();
    expect(index.plan(['common'])).toEqual({ terms: ['common'], postings: MAX_KEYWORD_POSTINGS * 1.2 });
    const bounded = index.search(['common'], 3);
    expect(bounded).toHaveLength(3);
    expect(bounded.every((h) => h.vid > MAX_KEYWORD_POSTINGS * 0.2)).toBe(true);
    db.close();
  }, 60_000);
});
