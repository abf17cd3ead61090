/**
 * Integrity checks for the hand-written cross-border shop evaluation set in eval/crossborder-shop/
 * (BEIR layout). Pure file parsing: no models, no native addon, runs in well under a second.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const DIR = path.join(__dirname, '..', 'eval', 'crossborder-shop');

interface Product {
  _id: string;
  title: string;
  text: string;
  metadata: {
    title_en: string;
    title_zh: string;
    title_es: string;
    desc_en: string;
    desc_zh: string;
    desc_es: string;
    brand: string;
    category: string;
    price: number;
    currency: string;
    attributes: Record<string, unknown>;
    popularity: number;
    rating: number;
  };
}

interface Query {
  _id: string;
  text: string;
  metadata: { lang: string; intent: string; kind: string; set?: string };
}

function readJsonl<T>(file: string): T[] {
  const lines = readFileSync(path.join(DIR, file), 'utf8').split('\n');
  const out: T[] = [];
  lines.forEach((line, i) => {
    if (line.trim() === '') return;
    try {
      out.push(JSON.parse(line) as T);
    } catch (e) {
      throw new Error(`${file}:${i + 1}: invalid JSON (${(e as Error).message})`);
    }
  });
  return out;
}

const corpus = readJsonl<Product>('corpus.jsonl');
const queries = readJsonl<Query>('queries.jsonl');
const qrelLines = readFileSync(path.join(DIR, 'qrels', 'test.tsv'), 'utf8').split('\n').filter((l) => l.trim() !== '');
const qrelHeader = qrelLines[0];
const qrels = qrelLines.slice(1).map((line, i) => {
  const cols = line.split('\t');
  return { line: i + 2, cols, qid: cols[0], pid: cols[1], score: Number(cols[2]) };
});

const CJK = /[\u3400-\u4dbf\u4e00-\u9fff]/;

describe('eval/crossborder-shop', () => {
  it('has unique product and query ids', () => {
    const pids = corpus.map((p) => p._id);
    const qids = queries.map((q) => q._id);
    expect(new Set(pids).size).toBe(pids.length);
    expect(new Set(qids).size).toBe(qids.length);
    for (const id of pids) expect(id).toMatch(/^p\d{4}$/);
    for (const id of qids) expect(id).toMatch(/^q\d{3}$/);
  });

  it('has at least 300 products, each complete in English, Chinese and Spanish', () => {
    expect(corpus.length).toBeGreaterThanOrEqual(300);
    const problems: string[] = [];
    for (const p of corpus) {
      const m = p.metadata;
      const need = (ok: boolean, what: string) => {
        if (!ok) problems.push(`${p._id}: ${what}`);
      };
      need(typeof p.title === 'string' && p.title.trim() !== '', 'title');
      need(typeof p.text === 'string' && p.text.trim() !== '', 'text');
      need(m !== undefined && typeof m === 'object', 'metadata');
      if (!m) continue;
      for (const k of ['title_en', 'title_zh', 'title_es', 'desc_en', 'desc_zh', 'desc_es', 'brand', 'category'] as const) {
        need(typeof m[k] === 'string' && m[k].trim() !== '', `metadata.${k} empty`);
      }
      need(CJK.test(m.title_zh ?? '') && CJK.test(m.desc_zh ?? ''), 'Chinese fields contain no CJK characters');
      need(m.title_es !== m.title_en && m.desc_es !== m.desc_en, 'Spanish text identical to English');
      need(typeof m.price === 'number' && Number.isFinite(m.price) && m.price > 0, 'price must be positive');
      need(m.currency === 'USD', 'currency');
      need(m.attributes !== null && typeof m.attributes === 'object', 'attributes');
      need(typeof m.popularity === 'number' && m.popularity >= 0 && m.popularity <= 1, 'popularity in [0, 1]');
      need(typeof m.rating === 'number' && m.rating >= 1 && m.rating <= 5, 'rating in [1, 5]');
      need(p.title === m.title_en && p.text === m.desc_en, 'title/text mirror the English fields');
    }
    expect(problems).toEqual([]);
  });

  it('spans about fifteen categories', () => {
    const cats = new Set(corpus.map((p) => p.metadata.category));
    expect(cats.size).toBeGreaterThanOrEqual(12);
  });

  it('has at least 72 queries, in at least 6 languages with at least 8 each', () => {
    expect(queries.length).toBeGreaterThanOrEqual(72);
    const perLang = new Map<string, number>();
    for (const q of queries) {
      expect(q.text.trim()).not.toBe('');
      expect(q.metadata.intent.trim()).not.toBe('');
      perLang.set(q.metadata.lang, (perLang.get(q.metadata.lang) ?? 0) + 1);
    }
    const big = [...perLang.values()].filter((n) => n >= 8);
    expect(big.length).toBeGreaterThanOrEqual(6);
    for (const lang of ['en', 'zh', 'es', 'fr', 'de', 'pt']) expect(perLang.get(lang) ?? 0).toBeGreaterThanOrEqual(8);
  });

  it('has well-formed graded qrels that refer to existing queries and products', () => {
    expect(qrelHeader).toBe('query-id\tcorpus-id\tscore');
    const pids = new Set(corpus.map((p) => p._id));
    const qids = new Set(queries.map((q) => q._id));
    const seen = new Set<string>();
    const problems: string[] = [];
    for (const r of qrels) {
      if (r.cols.length !== 3) problems.push(`line ${r.line}: expected 3 columns`);
      if (!qids.has(r.qid)) problems.push(`line ${r.line}: unknown query ${r.qid}`);
      if (!pids.has(r.pid)) problems.push(`line ${r.line}: unknown product ${r.pid}`);
      if (!Number.isInteger(r.score) || r.score < 0 || r.score > 3) problems.push(`line ${r.line}: score ${r.cols[2]}`);
      const key = `${r.qid}\t${r.pid}`;
      if (seen.has(key)) problems.push(`line ${r.line}: duplicate pair ${r.qid}/${r.pid}`);
      seen.add(key);
    }
    expect(problems).toEqual([]);
  });

  it('gives every product a unique SKU code, and marks 20 or more queries of codes, model numbers, brands and sizes', () => {
    const skus = corpus.map((p) => (p.metadata as { sku?: unknown }).sku);
    for (const s of skus) expect(s).toMatch(/^[A-Z]{3}-\d{5}(-[A-Z]{3})?$/);
    expect(new Set(skus).size).toBe(corpus.length);
    const keyword = queries.filter((q) => q.metadata.set === 'keyword');
    expect(keyword.length).toBeGreaterThanOrEqual(20);
    expect(new Set(keyword.map((q) => q.metadata.kind))).toEqual(new Set(['code', 'model', 'brand', 'size']));
    for (const q of queries) expect(['code', 'model', 'brand', 'size'].includes(q.metadata.kind)).toBe(q.metadata.set === 'keyword');
  });

  it('gives every query at least one relevant (>= 2) product and about four judgements on average', () => {
    const best = new Map<string, number>();
    for (const r of qrels) best.set(r.qid, Math.max(best.get(r.qid) ?? -1, r.score));
    const missing = queries.filter((q) => (best.get(q._id) ?? -1) < 2).map((q) => q._id);
    expect(missing).toEqual([]);
    expect(qrels.length / queries.length).toBeGreaterThanOrEqual(4);
  });
});
