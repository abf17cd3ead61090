/**
 * Real Qwen3 GGUFs differ in what their conversion wrote: the EOS id they declare, whether they set
 * add_eos_token, whether the reranker has a 2-row cls.output or only the vocabulary head (untied or
 * tied to the embeddings), and how confident the head is. Each variant the recipes claim is made here
 * as a synthetic file and checked against what the official recipe does with it. Also: the engine's
 * limits, the CUDA engine's availability, token ids out of range.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Embedder, Reranker, cudaStatus, inspectModel } from '../lib/index';
import type { AddressInfo } from 'node:net';
import pino from 'pino';
import { createApp } from '../lib/server/app';
import { makeTestModel } from '../lib/synthetic/model';
import { QWEN3_EOS_ID, QWEN3_IM_END_ID } from '../lib/synthetic/vocab';
import { MODELS, makeDocs, rejectsWithCode, throwsWithCode } from './helpers';

const dir = mkdtempSync(join(tmpdir(), 'qrank-variants-'));
const path = (name: string) => join(dir, `${name}.gguf`);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('Qwen3-Embedding ends every input with <|endoftext|>, whatever EOS the file declares', () => {
  let plain: Embedder;
  let imEnd: Embedder;
  beforeAll(async () => {
    // same weights (same seed); the second declares EOS = <|im_end|> and add_eos_token = true
    await makeTestModel({ kind: 'embedder', shape: 'tiny', out: path('emb-endoftext') });
    await makeTestModel({ kind: 'embedder', shape: 'tiny', out: path('emb-imend'), variant: { eos: 'im_end', addEosToken: true } });
    [plain, imEnd] = await Promise.all([
      Embedder.load({ model: path('emb-endoftext'), threads: 1 }),
      Embedder.load({ model: path('emb-imend'), threads: 1 }),
    ]);
  });
  afterAll(async () => Promise.all([plain?.close(), imEnd?.close()]));

  it('appends <|endoftext|> once, never <|im_end|>, never a second end token', () => {
    for (const kind of ['query', 'document'] as const) {
      for (const m of [plain, imEnd]) {
        const f = m.formatText('auriculares bluetooth', { kind });
        expect(f.tokens.at(-1)).toBe(QWEN3_EOS_ID);
        expect(f.tokens.at(-2)).not.toBe(QWEN3_EOS_ID);
        expect(f.tokens).not.toContain(QWEN3_IM_END_ID);
        expect(f.tokens.slice(0, -1)).toEqual(m.tokenize(f.text));
      }
    }
  });

  it('gives the same embeddings for both files (the declared EOS does not leak into the recipe)', async () => {
    const texts = makeDocs(4, 10, 7);
    for (const kind of ['query', 'document'] as const) {
      const [a, b] = await Promise.all([plain.embed(texts, { kind }), imEnd.embed(texts, { kind })]);
      a.forEach((v, i) => expect(Array.from(b[i])).toEqual(Array.from(v)));
    }
  });

  it('shares the query instruction as a prefix without changing the numbers', async () => {
    const queries = makeDocs(6, 5, 3);
    const together = await plain.embed(queries, { kind: 'query' });
    const before = plain.stats().tokensReused;
    await plain.embed(queries, { kind: 'query' });
    expect(plain.stats().tokensReused).toBeGreaterThan(before);
    for (let i = 0; i < queries.length; i++) {
      const [alone] = await plain.embed([queries[i]], { kind: 'query' });
      alone.forEach((x, j) => expect(Math.abs(x - together[i][j])).toBeLessThan(1e-3));
    }
  });
});

describe('rerankers: every head a conversion writes', () => {
  const docs = ['Sony WH-1000XM5 无线降噪耳机', 'Juego de cuchillos de cocina', 'cotton T-shirt, pack of 3', ''];

  it('scores with cls.output, with an untied output head and with a head tied to the embeddings', async () => {
    await makeTestModel({ kind: 'causal', shape: 'tiny', out: path('causal-tied'), variant: { tied: true } });
    for (const model of [MODELS.reranker, MODELS.causal, path('causal-tied')]) {
      const rr = await Reranker.load({ model, threads: 1 });
      try {
        const r = await rr.rerank('auriculares bluetooth', docs);
        expect(r).toHaveLength(docs.length);
        for (const x of r) {
          expect(Number.isFinite(x.logit)).toBe(true);
          expect(x.score).toBeCloseTo(1 / (1 + Math.exp(-x.logit)), 6);
        }
      } finally {
        await rr.close();
      }
    }
  });

  it('keeps the logit from the engine where P(yes) saturates to exactly 0 or 1 in float32', async () => {
    await makeTestModel({ kind: 'reranker', shape: 'tiny', out: path('confident'), variant: { headScale: 60 } });
    const rr = await Reranker.load({ model: path('confident'), threads: 1 });
    try {
      const r = await rr.rerank('auriculares bluetooth', makeDocs(40, 12, 5));
      const saturated = r.filter((x) => x.score === 1 || x.score === 0);
      expect(saturated.length).toBeGreaterThan(0); // the variant does what it is for
      for (const x of r) {
        expect(Number.isFinite(x.logit)).toBe(true);
        expect(Math.sign(x.logit)).toBe(x.score > 0.5 ? 1 : -1);
      }
      // ranking by logit breaks the ties that saturated scores leave
      const logits = r.map((x) => x.logit);
      expect(new Set(logits).size).toBe(logits.length);
      // TEI's raw_scores are those logits over HTTP (a score of 1.0 once became Infinity, sent as null)
      const texts = makeDocs(40, 12, 5);
      const server = createApp({ reranker: rr, logger: pino({ level: 'silent' }) });
      const http = server.app.listen(0, '127.0.0.1');
      await new Promise((ok) => http.once('listening', ok));
      try {
        const res = await fetch(`http://127.0.0.1:${(http.address() as AddressInfo).port}/rerank`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ query: 'auriculares bluetooth', texts, raw_scores: true }),
        });
        const body = (await res.json()) as { index: number; score: number | null }[];
        const byIndex = new Map(r.map((x) => [x.index, x.logit]));
        for (const item of body) {
          expect(typeof item.score).toBe('number');
          expect(item.score).toBeCloseTo(byIndex.get(item.index)!, 4);
        }
      } finally {
        await new Promise((ok) => http.close(ok));
      }
    } finally {
      await rr.close();
    }
  });
});

describe('the rerank prompt is tokenised in two pieces that give the ids of the whole body', () => {
  let rr: Reranker;
  beforeAll(async () => {
    rr = await Reranker.load({ model: MODELS.reranker, threads: 1 });
  });
  afterAll(async () => rr?.close());

  const PREFIX =
    '<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the Instruct provided. ' +
    'Note that the answer can only be "yes" or "no".<|im_end|>\n<|im_start|>user\n';
  const SUFFIX = '<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n';
  const INSTRUCTION = 'Given a web search query, retrieve relevant passages that answer the query';

  it('on ordinary and hostile documents and queries', () => {
    const hostile = ['', ' ', '  leading spaces', ':colon first', '::', '\nnewline first', '\n\n\n', '\t tab',
      '<|im_end|> injected', '</think>', '!!!???', '123 456', "'s contraction", 'ünïcödé ñ', '无线降噪耳机', 'ｆｕｌｌ', '😀 emoji',
      'a'.repeat(300), ' :\n: ', 'x\r\ny', '<Document>: nested'];
    for (const query of ['auriculares bluetooth', 'q:', 'ends with space ', '无线', '<|im_start|>']) {
      for (const document of hostile) {
        const f = rr.formatPair(query, document);
        const body = `<Instruct>: ${INSTRUCTION}\n<Query>: ${query}\n<Document>: ${document}`;
        const reference = [...rr.tokenize(PREFIX), ...rr.tokenize(body), ...rr.tokenize(SUFFIX)];
        expect(f.tokens, JSON.stringify({ query, document })).toEqual(reference);
      }
    }
  });

  it('tokenises the query of a 100-document request once', async () => {
    const before = rr.stats().queryPrompts;
    await rr.rerank('auriculares bluetooth inalámbricos', makeDocs(100, 8, 9));
    expect(rr.stats().queryPrompts - before).toBe(1);
    // vLLM-style pairs with two distinct queries: twice
    const b2 = rr.stats().queryPrompts;
    await rr.score(makeDocs(10, 4, 1).map((document, i) => ({ query: i % 2 ? 'uno' : 'dos', document })));
    expect(rr.stats().queryPrompts - b2).toBe(2);
  });
});

describe('engine limits and devices', () => {
  it('each engine reports its limits, and options beyond them are refused by name', async () => {
    const rr = await Reranker.load({ model: MODELS.reranker, threads: 1, batchTokens: 512, maxSequences: 16 });
    try {
      expect(rr.info.limits).toEqual({ batchTokens: 512, maxSequences: 16, maxBatchTokens: 1 << 20, maxSequencesLimit: 256 });
    } finally {
      await rr.close();
    }
    const e = await rejectsWithCode(Reranker.load({ model: MODELS.reranker, threads: 1, maxSequences: 300 }), 'INVALID_INPUT');
    expect(e.message).toMatch(/maxSequences up to 256/);
    await rejectsWithCode(Reranker.load({ model: MODELS.reranker, threads: 1, batchTokens: (1 << 20) + 1 }), 'INVALID_INPUT');
  });

  it("says why the CUDA engine cannot run, and 'cuda' is UNSUPPORTED with that reason", async () => {
    const status = cudaStatus();
    expect(typeof status.built).toBe('boolean');
    if (status.reason === '') return; // a machine where the CUDA engine runs: nothing to refuse
    expect(status.reason.length).toBeGreaterThan(10);
    const e = await rejectsWithCode(Reranker.load({ model: MODELS.reranker, device: 'cuda', threads: 1 }), 'UNSUPPORTED');
    expect(e.message).toContain(status.reason);
    const auto = await Reranker.load({ model: MODELS.reranker, device: 'auto', threads: 1 });
    expect(auto.info.backend).toBe('llama.cpp-cpu');
    await auto.close();
  });
});

describe('inspectModel: what a GGUF is, without loading it', () => {
  it('names the recipe of each role exactly when a load in that role succeeds', async () => {
    for (const model of [MODELS.reranker, MODELS.embedder, MODELS.causal]) {
      const d = await inspectModel(model);
      expect(d).toMatchObject({ architecture: 'qwen3', layers: 2, embeddingLength: 64, synthetic: true });
      expect(d.tensors).toBeGreaterThan(20);
      for (const [role, load] of [['reranker', Reranker.load], ['embedder', Embedder.load]] as const) {
        const said = d.roles[role];
        const loaded = await load({ model, threads: 1 }).then((m) => m, (e: Error) => e);
        if ('recipe' in said) {
          expect(loaded, `${model} as ${role}`).not.toBeInstanceOf(Error);
          const m = loaded as Reranker | Embedder;
          expect(m.info.recipe).toBe(said.recipe);
          expect(m.info.description).toBe(d.description);
          expect(typeof said.cuda === 'string' ? said.cuda : '').toBe(cudaStatus().reason);
          await m.close();
        } else {
          expect(loaded, `${model} as ${role}`).toBeInstanceOf(Error);
          expect((loaded as Error).message).toBe(said.error);
        }
      }
    }
    await rejectsWithCode(inspectModel(join(dir, 'missing.gguf')), 'MODEL_NOT_FOUND');
  });
});

describe('token ids', () => {
  let em: Embedder;
  beforeAll(async () => {
    em = await Embedder.load({ model: MODELS.embedder, threads: 1 });
  });
  afterAll(async () => em?.close());

  it('refuses ids outside the vocabulary instead of wrapping them (2^32 + 5 is not 5)', () => {
    expect(em.detokenize([5])).toBe(em.detokenize(Int32Array.of(5)));
    for (const bad of [2 ** 32 + 5, 2 ** 31, -1, 151936, 1.5, Number.NaN]) {
      throwsWithCode(() => em.detokenize([bad]), 'INVALID_INPUT');
    }
  });
});
