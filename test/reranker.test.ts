import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QrankError, Reranker } from '../lib/index';
import { MODELS, ROOT, makeDocs, rejectsWithCode, throwsWithCode } from './helpers';

const QWEN3_PREFIX =
  '<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the Instruct provided. ' +
  'Note that the answer can only be "yes" or "no".<|im_end|>\n<|im_start|>user\n';
const QWEN3_SUFFIX = '<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n';
const DEFAULT_INSTRUCTION = 'Given a web search query, retrieve relevant passages that answer the query';
// Batch composition changes which matmul kernel and summation order llama.cpp uses, and K/V are
// stored as F16, so a value can round to the neighbouring F16 (2^-11 relative) in one batch and not
// in another; test/golden.test.ts derives what that does to these models' outputs (~1e-3 at most).
// Different batches must agree to that bound, not bit for bit; a wrong prefix is off by 1e-2+.
const BATCH_TOLERANCE = 1e-3;

let rr: Reranker;

beforeAll(async () => {
  rr = await Reranker.load({ model: MODELS.reranker, threads: 1 });
});
afterAll(async () => {
  await rr?.close();
});

describe('Reranker.load', () => {
  it('reports what the file declares', () => {
    expect(rr.info).toMatchObject({
      architecture: 'qwen3',
      pooling: 'rank',
      recipe: 'qwen3-reranker',
      backend: 'llama.cpp-cpu',
      contextLength: 512,
      maxLength: 512,
      embeddingLength: 64,
      layers: 2,
      vocabSize: 151936,
      classLabels: ['yes', 'no'],
      synthetic: true,
      defaultInstruction: DEFAULT_INSTRUCTION,
    });
  });

  it('reports progress and can be aborted', async () => {
    const seen: number[] = [];
    const m = await Reranker.load({ model: MODELS.reranker, onProgress: (p) => seen.push(p), threads: 1 });
    await m.close();
    expect(seen.length).toBeGreaterThan(0);
    expect(seen.at(-1)).toBe(1);
    const ac = new AbortController();
    ac.abort();
    await rejectsWithCode(Reranker.load({ model: MODELS.reranker, signal: ac.signal, threads: 1 }), 'ABORTED');
    // aborted while loading: the vocabulary alone takes longer to read than this tick
    const ac2 = new AbortController();
    const loading = Reranker.load({ model: MODELS.reranker, signal: ac2.signal, threads: 1 });
    ac2.abort();
    await rejectsWithCode(loading, 'ABORTED');
  });

  it('rejects missing files, non-models, wrong roles and unavailable devices with stable codes', async () => {
    await rejectsWithCode(Reranker.load({ model: join(ROOT, 'no-such-model.gguf') }), 'MODEL_NOT_FOUND');
    const junk = join(ROOT, 'test', '.models', 'junk.gguf');
    writeFileSync(junk, 'this is not a gguf file');
    await rejectsWithCode(Reranker.load({ model: junk }), 'BAD_MODEL');
    const wrongRole = await rejectsWithCode(Reranker.load({ model: MODELS.embedder, threads: 1 }), 'BAD_MODEL');
    expect(wrongRole.message).toMatch(/Embedder/);
    await rejectsWithCode(Reranker.load({ model: MODELS.reranker, device: 'cuda', threads: 1 }), 'UNSUPPORTED');
    await rejectsWithCode(Reranker.load({ model: MODELS.reranker, threads: 0 }), 'INVALID_INPUT');
    await rejectsWithCode(Reranker.load({ model: MODELS.reranker, bogus: 1 } as never), 'INVALID_INPUT');
    await rejectsWithCode(Reranker.load(undefined as never), 'INVALID_INPUT');
  });

  it("keeps the caller's stack on async errors", async () => {
    const err = await rejectsWithCode(Reranker.load({ model: join(ROOT, 'missing.gguf') }), 'MODEL_NOT_FOUND');
    expect(err.stack).toContain('reranker.test.ts');
  });
});

describe('the Qwen3-Reranker recipe', () => {
  it('builds the official prompt text', () => {
    const f = rr.formatPair('auriculares bluetooth', 'Wireless earbuds, 30 h battery');
    expect(f.text).toBe(
      QWEN3_PREFIX +
        `<Instruct>: ${DEFAULT_INSTRUCTION}\n<Query>: auriculares bluetooth\n<Document>: Wireless earbuds, 30 h battery` +
        QWEN3_SUFFIX,
    );
    const custom = rr.formatPair('q', 'd', { instruction: 'Find products' });
    expect(custom.text).toContain('<Instruct>: Find products\n<Query>: q\n<Document>: d');
  });

  it('ends every prompt with the exact suffix token ids, </think> then a double newline', () => {
    const f = rr.formatPair('无线蓝牙降噪耳机', 'Sony WH-1000XM5');
    // <|im_end|> \n <|im_start|> assistant \n <think> \n\n </think> \n\n
    expect(f.tokens.slice(-9)).toEqual([151645, 198, 151644, 77091, 198, 151667, 271, 151668, 271]);
    expect(f.tokens.slice(0, 3)).toEqual([151644, 8948, 198]);
  });

  it('truncates long documents by tokens and never the template', () => {
    const long = 'bluetooth '.repeat(5000);
    const f = rr.formatPair('headphones', long);
    expect(f.tokens.length).toBe(rr.info.maxLength);
    const suffix = rr.formatPair('headphones', 'x').tokens.slice(-9);
    expect(f.tokens.slice(-9)).toEqual(suffix);
  });

  it('rejects a query that leaves no room for the document', async () => {
    const small = await Reranker.load({ model: MODELS.reranker, maxLength: 80, threads: 1 });
    try {
      const err = throwsWithCode(() => small.formatPair('word '.repeat(200), 'doc'), 'INVALID_INPUT');
      expect(err.message).toMatch(/maxLength 80/);
      await rejectsWithCode(small.rerank('word '.repeat(200), ['doc']), 'INVALID_INPUT');
    } finally {
      await small.close();
    }
  });
});

describe('rerank and score', () => {
  const query = 'wireless noise cancelling headphones';
  const docs = makeDocs(12, 10, 7);

  it('returns every document once, sorted by score, with P(yes) in [0, 1]', async () => {
    const results = await rr.rerank(query, docs, { returnDocuments: true });
    expect(results.map((r) => r.index).sort((a, b) => a - b)).toEqual(docs.map((_, i) => i));
    for (let i = 1; i < results.length; i++) expect(results[i - 1].score).toBeGreaterThanOrEqual(results[i].score);
    for (const r of results) {
      expect(r.score).toBeGreaterThan(0);
      expect(r.score).toBeLessThan(1);
      expect(r.document).toBe(docs[r.index]);
    }
    // random weights still spread the scores: a degenerate engine would return one value
    expect(new Set(results.map((r) => r.score.toFixed(4))).size).toBeGreaterThan(6);
  });

  it('honours topN and omits documents unless asked', async () => {
    const all = await rr.rerank(query, docs);
    const top = await rr.rerank(query, docs, { topN: 3 });
    expect(top).toEqual(all.slice(0, 3));
    expect(top[0]).not.toHaveProperty('document');
    expect(await rr.rerank(query, docs, { topN: 1000 })).toHaveLength(docs.length);
  });

  it('score() gives the same numbers in input order', async () => {
    const ranked = await rr.rerank(query, docs);
    const scores = await rr.score(docs.map((document) => ({ query, document })));
    for (const r of ranked) expect(scores[r.index]).toBeCloseTo(r.score, 6);
  });

  it('the instruction changes the scores', async () => {
    const a = await rr.score([{ query, document: docs[0] }]);
    const b = await rr.score([{ query, document: docs[0] }], { instruction: 'Judge the price only' });
    expect(a[0]).not.toBeCloseTo(b[0], 6);
  });

  it('scores the same alone, in a batch, and with or without prefix reuse', async () => {
    const alone: number[] = [];
    for (const d of docs) alone.push((await rr.score([{ query, document: d }]))[0]);
    const batched = await rr.score(docs.map((document) => ({ query, document })));
    const noReuse = await Reranker.load({ model: MODELS.reranker, maxSequences: 1, threads: 1 });
    try {
      const unshared = await noReuse.score(docs.map((document) => ({ query, document })));
      for (let i = 0; i < docs.length; i++) {
        expect(Math.abs(batched[i] - alone[i])).toBeLessThan(BATCH_TOLERANCE);
        expect(Math.abs(unshared[i] - alone[i])).toBeLessThan(BATCH_TOLERANCE);
      }
      expect(noReuse.stats().tokensReused).toBe(0);
    } finally {
      await noReuse.close();
    }
    expect(rr.stats().tokensReused).toBeGreaterThan(0);
  });

  it('packs concurrent calls into shared batches with the same results as one at a time', async () => {
    const queries = ['auriculares bluetooth', '无线蓝牙降噪耳机', 'kitchen knife set', 'running shoes'];
    const sequential = [];
    for (const q of queries) sequential.push(await rr.rerank(q, docs));
    const before = rr.stats();
    const concurrent = await Promise.all(queries.map((q) => rr.rerank(q, docs)));
    const after = rr.stats();
    expect(after.batches - before.batches).toBeLessThan(queries.length);
    for (let i = 0; i < queries.length; i++) {
      expect(concurrent[i].map((r) => r.index)).toEqual(sequential[i].map((r) => r.index));
      concurrent[i].forEach((r, k) => expect(Math.abs(r.score - sequential[i][k].score)).toBeLessThan(BATCH_TOLERANCE));
    }
  });

  it('never blocks the event loop', async () => {
    let ticks = 0;
    const timer = setInterval(() => ticks++, 5);
    await rr.rerank(query, makeDocs(200, 40, 3));
    clearInterval(timer);
    expect(ticks).toBeGreaterThan(3);
  });
});

describe('bad input', () => {
  it('rejects empty and non-string queries', async () => {
    await rejectsWithCode(rr.rerank('', ['a']), 'INVALID_INPUT');
    await rejectsWithCode(rr.rerank('   ', ['a']), 'INVALID_INPUT');
    await rejectsWithCode(rr.rerank(42 as never, ['a']), 'INVALID_INPUT');
    await rejectsWithCode(rr.rerank(null as never, ['a']), 'INVALID_INPUT');
  });

  it('rejects non-array documents and non-string items, naming the index', async () => {
    await rejectsWithCode(rr.rerank('q', 'doc' as never), 'INVALID_INPUT');
    const e = await rejectsWithCode(rr.rerank('q', ['a', 5 as never]), 'INVALID_INPUT');
    expect(e.message).toContain('documents[1]');
    await rejectsWithCode(rr.score([{ query: 'q' } as never]), 'INVALID_INPUT');
    await rejectsWithCode(rr.score('x' as never), 'INVALID_INPUT');
  });

  it('rejects lone surrogates (invalid UTF-16) instead of scoring mangled text', async () => {
    const e = await rejectsWithCode(rr.rerank('q', ['ok', 'bad \uD800 text']), 'INVALID_INPUT');
    expect(e.message).toContain('documents[1]');
    await rejectsWithCode(rr.rerank('bad \uDC00', ['ok']), 'INVALID_INPUT');
    // a well-formed pair (emoji) is fine
    expect(await rr.rerank('headphones 🎧', ['🎧 bluetooth'])).toHaveLength(1);
  });

  it('rejects wrong options', async () => {
    await rejectsWithCode(rr.rerank('q', ['a'], { topN: 0 }), 'INVALID_INPUT');
    await rejectsWithCode(rr.rerank('q', ['a'], { topN: 1.5 }), 'INVALID_INPUT');
    await rejectsWithCode(rr.rerank('q', ['a'], { topN: '3' as never }), 'INVALID_INPUT');
    await rejectsWithCode(rr.rerank('q', ['a'], { nope: true } as never), 'INVALID_INPUT');
    await rejectsWithCode(rr.rerank('q', ['a'], { signal: {} as never }), 'INVALID_INPUT');
  });

  it('returns [] for an empty list and scores empty documents', async () => {
    expect(await rr.rerank('q', [])).toEqual([]);
    expect(await rr.score([])).toEqual([]);
    const [r] = await rr.rerank('q', ['']);
    expect(r.score).toBeGreaterThan(0);
  });

  it('maxInputTokens cuts each document to its own first N tokens, in the core; truncate: false refuses instead', async () => {
    const long = makeDocs(1, 120, 7)[0];
    // a cut that ends on a whole character, so that the text of the first n tokens is those tokens
    const ids = rr.tokenize(long);
    let n = 12;
    while (rr.detokenize(ids.slice(0, n)).includes('\uFFFD')) n++;
    const cut = rr.detokenize(ids.slice(0, n));
    const { results, usage } = await rr.rerankWithUsage('auriculares', ['corto', long], { maxInputTokens: n });
    const want = await rr.rerank('auriculares', ['corto', cut]);
    for (const i of [0, 1]) expect(results.find((r) => r.index === i)!.score).toBe(want.find((r) => r.index === i)!.score);
    expect(usage.truncated).toBe(1);
    const [s] = await rr.score([{ query: 'auriculares', document: long }], { maxInputTokens: n });
    expect(s).toBe((await rr.score([{ query: 'auriculares', document: cut }]))[0]);
    const err = await rejectsWithCode(rr.rerank('auriculares', ['corto', long], { maxInputTokens: n, truncate: false }), 'INPUT_TOO_LONG');
    expect(err.message).toMatch(new RegExp(`^documents\\[1\\] is ${ids.length} tokens, more than the limit of ${n}`));
    // within the limit, truncate: false changes nothing
    const same = await rr.rerank('auriculares', ['corto', cut], { maxInputTokens: n, truncate: false });
    expect(same).toEqual(want);
    // what the context would cut is refused too
    const ctx = await rejectsWithCode(rr.rerank('auriculares', ['bluetooth '.repeat(5000)], { truncate: false }), 'INPUT_TOO_LONG');
    expect(ctx.message).toMatch(/^documents\[0\] does not fit the model's context of 512 tokens/);
    for (const bad of [0, -1, 1.5, '8', 2e9]) await rejectsWithCode(rr.rerank('q', ['a'], { maxInputTokens: bad as never }), 'INVALID_INPUT');
    await rejectsWithCode(rr.rerank('q', ['a'], { truncate: 'no' as never }), 'INVALID_INPUT');
  });

  it('scores a 1 MB document (truncated to maxLength)', async () => {
    const big = 'auriculares inalámbricos con cancelación de ruido '.repeat(21000);
    expect(big.length).toBeGreaterThan(1_000_000);
    const { results, usage } = await rr.rerankWithUsage('auriculares', [big, 'corto']);
    expect(results).toHaveLength(2);
    expect(usage.truncated).toBe(1);
  });

  it('scores 10 000 documents in one call', async () => {
    const docs = Array.from({ length: 10_000 }, (_, i) => `product ${i}`);
    const results = await rr.rerank('product', docs, { topN: 5 });
    expect(results).toHaveLength(5);
    expect(rr.stats().tokensReused).toBeGreaterThan(10_000 * 30);
  });
});

describe('abort and close', () => {
  it('rejects at once when the signal is already aborted', async () => {
    const ac = new AbortController();
    ac.abort();
    await rejectsWithCode(rr.rerank('q', ['a'], { signal: ac.signal }), 'ABORTED');
  });

  it('aborts queued work without disturbing other calls', async () => {
    const ac = new AbortController();
    const big = rr.rerank('headphones', makeDocs(3000, 20, 5), { signal: ac.signal });
    const other = rr.rerank('headphones', ['a', 'b']);
    setTimeout(() => ac.abort(), 20);
    await rejectsWithCode(big, 'ABORTED');
    expect(await other).toHaveLength(2);
    expect(await rr.rerank('q', ['still works'])).toHaveLength(1);
  });

  it('close() rejects calls in flight with CLOSED and later calls too', async () => {
    const m = await Reranker.load({ model: MODELS.reranker, threads: 1 });
    const inflight = m.rerank('headphones', makeDocs(2000, 20, 9));
    const closing = m.close();
    await rejectsWithCode(inflight, 'CLOSED');
    await closing;
    expect(m.closed).toBe(true);
    await rejectsWithCode(m.rerank('q', ['a']), 'CLOSED');
    expect(() => m.tokenize('x')).toThrow(QrankError);
    await m.close(); // twice is fine
  });
});

describe('tokenizer', () => {
  it('tokenizes, counts and detokenizes with the Qwen vocabulary', () => {
    expect(rr.tokenize('yes')).toEqual([9693]);
    expect(rr.tokenize('no')).toEqual([2152]);
    expect(rr.tokenize('<think>')).toEqual([151667]);
    const ids = rr.tokenize('auriculares bluetooth 无线蓝牙');
    expect(rr.countTokens('auriculares bluetooth 无线蓝牙')).toBe(ids.length);
    expect(rr.detokenize(ids)).toBe('auriculares bluetooth 无线蓝牙');
    expect(() => rr.detokenize([999999])).toThrow(/outside the vocabulary/);
    expect(() => rr.tokenize(5 as never)).toThrow(QrankError);
  });
});
