import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Embedder } from '../lib/index';
import { MODELS, makeDocs, rejectsWithCode } from './helpers';

const TASK = 'Given a web search query, retrieve relevant passages that answer the query';
let em: Embedder;

beforeAll(async () => {
  em = await Embedder.load({ model: MODELS.embedder, threads: 1 });
});
afterAll(async () => {
  await em?.close();
});

const norm = (v: Float32Array) => Math.sqrt(v.reduce((a, x) => a + x * x, 0));
const dot = (a: Float32Array, b: Float32Array) => a.reduce((s, x, i) => s + x * b[i], 0);

describe('Embedder', () => {
  it('reports the Qwen3-Embedding recipe', () => {
    expect(em.info).toMatchObject({ architecture: 'qwen3', pooling: 'last', recipe: 'qwen3-embedding', embeddingLength: 64 });
  });

  it('formats queries with the task and documents plain, both ending in EOS', () => {
    const q = em.formatText('auriculares bluetooth', { kind: 'query' });
    expect(q.text).toBe(`Instruct: ${TASK}\nQuery:auriculares bluetooth`);
    expect(q.tokens.at(-1)).toBe(151643);
    const d = em.formatText('Wireless earbuds', { kind: 'document' });
    expect(d.text).toBe('Wireless earbuds');
    expect(d.tokens).toEqual([...em.tokenize('Wireless earbuds'), 151643]);
    const custom = em.formatText('x', { kind: 'query', instruction: 'Find products' });
    expect(custom.text).toBe('Instruct: Find products\nQuery:x');
  });

  it('returns one unit vector per text, in order', async () => {
    const texts = makeDocs(6, 8, 2);
    const vs = await em.embed(texts, { kind: 'document' });
    expect(vs).toHaveLength(6);
    for (const v of vs) {
      expect(v).toBeInstanceOf(Float32Array);
      expect(v.length).toBe(64);
      expect(norm(v)).toBeCloseTo(1, 5);
    }
    const again = await em.embed([texts[3]], { kind: 'document' });
    expect(dot(again[0], vs[3])).toBeCloseTo(1, 5);
    expect(dot(vs[0], vs[1])).toBeLessThan(0.9999);
  });

  it('queries and documents differ (the instruction is part of the query)', async () => {
    const [q] = await em.embed(['headphones'], { kind: 'query' });
    const [d] = await em.embed(['headphones'], { kind: 'document' });
    expect(dot(q, d)).toBeLessThan(0.9999);
  });

  it('truncates to `dimensions` and renormalises (Matryoshka)', async () => {
    const [full] = await em.embed(['bluetooth'], { kind: 'document' });
    const [short] = await em.embed(['bluetooth'], { kind: 'document', dimensions: 16 });
    expect(short.length).toBe(16);
    expect(norm(short)).toBeCloseTo(1, 5);
    const head = full.slice(0, 16);
    const scale = 1 / norm(head);
    short.forEach((x, i) => expect(x).toBeCloseTo(head[i] * scale, 5));
    await rejectsWithCode(em.embed(['x'], { kind: 'document', dimensions: 65 }), 'INVALID_INPUT');
    await rejectsWithCode(em.embed(['x'], { kind: 'document', dimensions: 0 }), 'INVALID_INPUT');
  });

  it('gives the same vectors alone and in concurrent batches', async () => {
    const texts = makeDocs(8, 12, 4);
    const alone = [];
    for (const t of texts) alone.push((await em.embed([t], { kind: 'document' }))[0]);
    const together = await Promise.all(texts.map((t) => em.embed([t], { kind: 'document' })));
    // the bound of golden.test.ts: F16 K/V rounding under different batch shapes
    together.forEach(([v], i) => v.forEach((x, j) => expect(Math.abs(x - alone[i][j])).toBeLessThan(2e-3)));
  });

  it('rejects bad input with INVALID_INPUT', async () => {
    await rejectsWithCode(em.embed('text' as never, { kind: 'document' }), 'INVALID_INPUT');
    await rejectsWithCode(em.embed([1 as never], { kind: 'document' }), 'INVALID_INPUT');
    await rejectsWithCode(em.embed(['\uD800'], { kind: 'document' }), 'INVALID_INPUT');
    await rejectsWithCode(em.embed(['x'], {} as never), 'INVALID_INPUT');
    await rejectsWithCode(em.embed(['x'], { kind: 'passage' } as never), 'INVALID_INPUT');
    expect(await em.embed([], { kind: 'query' })).toEqual([]);
  });

  it('truncates long texts and keeps EOS last', async () => {
    const long = 'impermeable '.repeat(3000);
    const f = em.formatText(long, { kind: 'document' });
    expect(f.tokens.length).toBe(em.info.maxLength);
    expect(f.tokens.at(-1)).toBe(151643);
    const { usage } = await em.embedWithUsage([long], { kind: 'document' });
    expect(usage.truncated).toBe(1);
  });

  it('maxInputTokens cuts each text to its own first N tokens (a query\'s instruction not counted); truncate: false refuses', async () => {
    const long = makeDocs(1, 120, 3)[0];
    // a cut that ends on a whole character, so that the text of the first n tokens is those tokens
    const ids = em.tokenize(long);
    let n = 10;
    while (em.detokenize(ids.slice(0, n)).includes('\uFFFD')) n++;
    const cut = em.detokenize(ids.slice(0, n));
    for (const kind of ['document', 'query'] as const) {
      const { embeddings: [got], usage } = await em.embedWithUsage([long], { kind, maxInputTokens: n });
      const [want] = await em.embed([cut], { kind });
      got.forEach((x, i) => expect(x).toBeCloseTo(want[i], 6));
      expect(usage.truncated).toBe(1);
    }
    const err = await rejectsWithCode(em.embed(['short', long], { kind: 'document', maxInputTokens: 10, truncate: false }), 'INPUT_TOO_LONG');
    expect(err.message).toMatch(/^texts\[1\] is \d+ tokens, more than the limit of 10/);
    await rejectsWithCode(em.embed(['impermeable '.repeat(3000)], { kind: 'document', truncate: false }), 'INPUT_TOO_LONG');
    await rejectsWithCode(em.embed(['x'], { kind: 'document', maxInputTokens: 0 }), 'INVALID_INPUT');
  });

  it('refuses a reranker file', async () => {
    await rejectsWithCode(Embedder.load({ model: MODELS.reranker, threads: 1 }), 'BAD_MODEL');
  });
});
