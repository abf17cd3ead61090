/**
 * qrank's CPU scores and embeddings against an independent run of the official recipes in PyTorch +
 * transformers (scripts/torch_qwen3.py: the gguf package reads the file, transformers' own Qwen3 modules
 * run it), on the very token ids qrank builds (Reranker.formatPair, Embedder.formatText), for each
 * variant the recipes must handle: a reranker with a 2-row cls.output, a causal model with output.weight,
 * a causal model with tied embeddings (make-test-model's `tied` variant), an embedder; F32 and Q8_0 weights. The models are generated fresh, with seeds of their
 * own. The script's own values are also held to scripts/golden_reference.py (numpy, float64) on the same
 * ids, and batched to one-at-a-time. Also dry-runs the script's `bench` on tiny sizes. Skipped, with the reason in the title, where
 * python3 lacks torch, transformers or gguf.
 */
import { execFile, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Embedder, Reranker } from '../lib/index';
import { type TestModelKind, type TestModelType } from '../lib/synthetic/layout';
import { makeTestModel } from '../lib/synthetic/model';
import { ROOT, makeDocs } from './helpers';

const SCRIPT = join(ROOT, 'scripts', 'torch_qwen3.py');

// Tolerances (QRANK_REPORT=1 prints the measured differences).
// The reference itself: transformers in float32 against scripts/golden_reference.py in float64, and
// batched (left padding, sdpa) against one at a time (eager). float32 rounds each operation by ~6e-8
// relative; the test models' sharp attention (logits of std ~6) amplifies that through two layers to a
// measured worst case of 8e-6 on a score or a yes/no logit and 9e-7 on an embedding element: bound 2e-5.
// qrank against the reference: the differences are llama.cpp's arithmetic, which float64 emulations of
// it reproduce in size (on 9 pairs of a tiny reranker, scores moved from their float64 values):
//  - F32 weights: llama.cpp rounds Q, K and V to float16 for attention (float16 KV cache, flash
//    attention; its one-query kernel also accumulates the output in float16). Those roundings alone move
//    scores by 0.8e-3 to 1.9e-3; qrank differs from the reference by 3.4e-3 at worst on the pairs below
//    (1.1e-3 on an embedding element). Bounds at ~2x: 7e-3 and 2e-3 (golden.test.ts's 1.5e-3 is for its
//    shorter prompts).
//  - Q8_0 weights: on top of that, ggml's CPU matmul rounds each activation row to Q8_0 (int8 per block
//    of 32, scale max|x|/127: ~0.4% of a block's largest value) before the dot products. That alone moves
//    scores by 3.0e-2 to 3.3e-2; qrank differs by 2.9e-2 (3.8e-2 on an element of a 32-dimension
//    embedding, cosine 0.9976). Bounds at ~2x: 6e-2 and 8e-2, cosine 0.99.
// The Q8_0 comparisons catch only gross errors (a wrong head row, prompt or pooling); the dequantisation
// itself is held to the float64 bound above. Each test also checks that its values spread far wider than
// its bound, so that a constant or mispaired output could not pass.
const F32_SCORE_TOLERANCE = 7e-3;
const F32_EMBEDDING_TOLERANCE = 2e-3;
const Q8_SCORE_TOLERANCE = 6e-2;
const Q8_EMBEDDING_TOLERANCE = 8e-2;
const MIN_COSINE = 0.9999;
const Q8_MIN_COSINE = 0.99;
const REFERENCE_TOLERANCE = 2e-5;

interface Python {
  ok: boolean;
  reason: string;
}

/** python3 with torch, transformers and gguf (the pip package, else deps/llama.cpp/gguf-py, as the script does). */
function detectPython(): Python {
  const probe = `import sys; sys.path.append(${JSON.stringify(join(ROOT, 'deps', 'llama.cpp', 'gguf-py'))}); import torch, transformers, gguf`;
  const r = spawnSync('python3', ['-c', probe], { encoding: 'utf8', timeout: 120_000 });
  if (r.error) return { ok: false, reason: `python3 cannot run (${r.error.message})` };
  if (r.status === 0) return { ok: true, reason: '' };
  const last = r.stderr.trim().split('\n').pop() ?? '';
  return { ok: false, reason: `python3 lacks torch, transformers or gguf (${last})` };
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function runPython(args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile('python3', args, { maxBuffer: 64 << 20, timeout: 300_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, stdout, stderr });
    });
  });
}

const runScript = (args: string[]) => runPython([SCRIPT, ...args, '--threads', '1']);

/** Runs the jobs two at a time (the script spends most of its time reading the GGUF's vocabulary). */
async function runAll<T>(jobs: (() => Promise<T>)[], width = 2): Promise<T[]> {
  const out: T[] = new Array(jobs.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < jobs.length) {
        const i = next++;
        out[i] = await jobs[i]();
      }
    }),
  );
  return out;
}

const python = detectPython();

interface RerankCase {
  query: string;
  document: string;
  instruction?: string;
}

const QUERIES = ['auriculares bluetooth inalámbricos', '无线蓝牙降噪耳机', 'kitchen knife set', 'running shoes'];
// Different lengths, so that the batches are padded.
const DOCUMENTS = [...makeDocs(2, 3, 41), ...makeDocs(2, 25, 42), 'Stainless steel knife set, 5 pieces'];
const RERANK_CASES: RerankCase[] = [
  ...QUERIES.flatMap((query) => DOCUMENTS.map((document) => ({ query, document }))),
  ...DOCUMENTS.slice(0, 2).map((document) => ({ query: QUERIES[0], document, instruction: 'Given a product search query, judge whether the product matches' })),
];
interface EmbedCase {
  text: string;
  kind: 'query' | 'document';
  instruction?: string;
}
const EMBED_CASES: EmbedCase[] = [
  ...QUERIES.map((text) => ({ text, kind: 'query' as const })),
  { text: QUERIES[1], kind: 'query', instruction: 'Find the product in any language' },
  ...DOCUMENTS.map((text) => ({ text, kind: 'document' as const })),
];
const DIMENSIONS = 32;

interface RerankVariant {
  name: string;
  kind: TestModelKind;
  type: TestModelType;
  tied?: boolean;
  tolerance: number;
}
const RERANK_VARIANTS: RerankVariant[] = [
  { name: 'reranker (cls.output), F32', kind: 'reranker', type: 'f32', tolerance: F32_SCORE_TOLERANCE },
  { name: 'reranker (cls.output), Q8_0', kind: 'reranker', type: 'q8_0', tolerance: Q8_SCORE_TOLERANCE },
  { name: 'causal (output.weight), F32', kind: 'causal', type: 'f32', tolerance: F32_SCORE_TOLERANCE },
  { name: 'causal (tied to token_embd), F32', kind: 'causal', type: 'f32', tied: true, tolerance: F32_SCORE_TOLERANCE },
];
interface EmbedVariant {
  name: string;
  type: TestModelType;
  dimensions?: number;
  tolerance: number;
  minCosine: number;
}
const EMBED_VARIANTS: EmbedVariant[] = [
  { name: 'embedder, F32', type: 'f32', tolerance: F32_EMBEDDING_TOLERANCE, minCosine: MIN_COSINE },
  { name: `embedder, Q8_0, dimensions ${DIMENSIONS}`, type: 'q8_0', dimensions: DIMENSIONS, tolerance: Q8_EMBEDDING_TOLERANCE, minCosine: Q8_MIN_COSINE },
];
const SEEDS: Record<TestModelKind, number> = { reranker: 31, embedder: 32, causal: 33 };

let dir: string;
const tmp = (name: string) => join(dir, name);
const inputFile = (name: string) => tmp(`${name.replace(/\W+/g, '-')}.json`);

interface ScoreOutput {
  scores: number[];
  logits: number[];
  model: { head: string; weight_types: string[] };
}
interface Compared<Q, R> {
  ids: number[][];
  qrank: Q[];
  torch: R;
  /** scripts/golden_reference.py, float64 numpy, on the same ids. */
  float64: Q[];
}
const reranked = new Map<string, Compared<number, ScoreOutput>>();
const embedded = new Map<string, Compared<ArrayLike<number>, { embeddings: number[][] }>>();
let oneAtATime: ScoreOutput;
let bench: Record<string, unknown>;
let frame: { prefixes: number[][]; suffix: number[] };

function succeeded(run: Run, what: string): Run {
  if (run.code !== 0) throw new Error(`${what}: exit ${run.code}\n${run.stderr.slice(-2000)}`);
  return run;
}
const parse = (run: Run, what: string) => JSON.parse(succeeded(run, what).stdout);

async function qrankScores(model: string): Promise<{ values: number[]; ids: number[][] }> {
  const rr = await Reranker.load({ model, threads: 1 });
  try {
    const ids = RERANK_CASES.map((c) => rr.formatPair(c.query, c.document, { instruction: c.instruction }).tokens);
    const values: number[] = [];
    for (const c of RERANK_CASES) values.push(...(await rr.score([c], { instruction: c.instruction })));
    return { values, ids };
  } finally {
    await rr.close();
  }
}

async function qrankEmbeddings(model: string, dimensions?: number): Promise<{ values: Float32Array[]; ids: number[][] }> {
  const em = await Embedder.load({ model, threads: 1 });
  try {
    const ids = EMBED_CASES.map((c) => em.formatText(c.text, c).tokens);
    const values: Float32Array[] = [];
    for (const c of EMBED_CASES) values.push(...(await em.embed([c.text], { kind: c.kind, instruction: c.instruction, dimensions })));
    return { values, ids };
  } finally {
    await em.close();
  }
}

/** The token ids every document of one query shares before and after the document. */
function promptFrame(ids: number[][]): { prefixes: number[][]; suffix: number[] } {
  const [a, b] = ids;
  let p = 0;
  while (a[p] === b[p]) p++;
  let s = 0;
  while (a[a.length - 1 - s] === b[b.length - 1 - s]) s++;
  return { prefixes: [a.slice(0, p)], suffix: a.slice(a.length - s) };
}

const maxAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => Math.max(...Array.from(a, (x, i) => Math.abs(x - b[i])));
const dot = (a: ArrayLike<number>, b: ArrayLike<number>) => Array.from(a).reduce((acc, x, i) => acc + x * b[i], 0);

describe.skipIf(!python.ok)(`qrank against PyTorch + transformers (scripts/torch_qwen3.py)${python.ok ? '' : `: skipped, ${python.reason}`}`, () => {
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'qrank-torch-'));
    const file = (kind: TestModelKind, type: TestModelType, tied = false) => tmp(`${kind}-${type}${tied ? '-tied' : ''}.gguf`);
    for (const v of [...RERANK_VARIANTS, ...EMBED_VARIANTS.map((e) => ({ kind: 'embedder' as const, type: e.type, tied: false }))]) {
      await makeTestModel({ kind: v.kind, shape: 'tiny', type: v.type, seed: SEEDS[v.kind], out: file(v.kind, v.type, v.tied), variant: { tied: v.tied } });
    }

    const jobs: (() => Promise<void>)[] = [];
    // One float64 run of scripts/golden_reference.py over every variant's ids.
    const golden: { models: Record<string, { file: string }>; cases: { id: string; kind: string; model: string; ids: number[]; dimensions?: number }[] } = { models: {}, cases: [] };
    const float64 = (name: string, kind: 'rerank' | 'embed', model: string, ids: number[][], dimensions?: number) => {
      golden.models[name] = { file: basename(model) };
      ids.forEach((seq, i) => golden.cases.push({ id: `${name}#${i}`, kind, model: name, ids: seq, dimensions }));
    };
    const goldenValues = new Map<string, (number | number[])[]>();

    for (const v of RERANK_VARIANTS) {
      const model = file(v.kind, v.type, v.tied);
      const q = await qrankScores(model);
      writeFileSync(inputFile(v.name), JSON.stringify({ sequences: q.ids }));
      float64(v.name, 'rerank', model, q.ids);
      jobs.push(async () => {
        const torch = parse(await runScript(['score', '--model', model, '--input', inputFile(v.name), '--batch-size', '8']), v.name);
        reranked.set(v.name, { ids: q.ids, qrank: q.values, torch, float64: [] });
      });
    }
    for (const v of EMBED_VARIANTS) {
      const model = file('embedder', v.type);
      const q = await qrankEmbeddings(model, v.dimensions);
      writeFileSync(inputFile(v.name), JSON.stringify({ sequences: q.ids, dimensions: v.dimensions }));
      float64(v.name, 'embed', model, q.ids, v.dimensions);
      jobs.push(async () => {
        const torch = parse(await runScript(['embed', '--model', model, '--input', inputFile(v.name)]), v.name);
        embedded.set(v.name, { ids: q.ids, qrank: q.values, torch, float64: [] });
      });
    }
    const first = RERANK_VARIANTS[0];
    jobs.push(async () => {
      const args = ['score', '--model', file(first.kind, first.type), '--input', inputFile(first.name), '--batch-size', '1', '--attn', 'eager'];
      oneAtATime = parse(await runScript(args), 'one at a time');
    });
    frame = promptFrame(golden.cases.filter((c) => c.model === first.name).map((c) => c.ids));
    writeFileSync(tmp('frame.json'), JSON.stringify(frame));
    jobs.push(async () => {
      const args = ['bench', '--model', file(first.kind, first.type), '--frame', tmp('frame.json'), '--shape', 'docs=1x6x8', '--shape', 'titles=2x5x3-9'];
      bench = parse(await runScript([...args, '--batch-sizes', '2,4,64', '--reps', '2', '--latency-reps', '3']), 'bench');
    });
    writeFileSync(tmp('golden-inputs.json'), JSON.stringify(golden));
    jobs.push(async () => {
      const args = [join(ROOT, 'scripts', 'golden_reference.py'), tmp('golden-inputs.json'), tmp('golden.json'), '--models-dir', dir];
      succeeded(await runPython(args), 'golden_reference.py');
      const out = JSON.parse(readFileSync(tmp('golden.json'), 'utf8')) as { cases: { id: string; score?: number; embedding?: number[] }[] };
      for (const c of out.cases) {
        const name = c.id.slice(0, c.id.lastIndexOf('#'));
        goldenValues.set(name, [...(goldenValues.get(name) ?? []), c.score ?? c.embedding!]);
      }
    });
    await runAll(jobs);
    for (const [name, values] of goldenValues) (reranked.get(name) ?? embedded.get(name))!.float64 = values as never;
  }, 900_000);
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it.each(RERANK_VARIANTS.map((v) => [v.name, v] as const))('%s: same scores as the official recipe', (name, v) => {
    const { qrank, torch, float64 } = reranked.get(name)!;
    expect(torch.model.head).toMatch(v.kind === 'reranker' ? /^cls\.output\.weight/ : v.tied ? /^token_embd\.weight \(tied\)/ : /^output\.weight/);
    expect(torch.model.weight_types).toContain(v.type === 'q8_0' ? 'Q8_0' : 'F32');
    expect(torch.scores).toHaveLength(RERANK_CASES.length);
    torch.scores.forEach((s, i) => expect(s).toBeCloseTo(1 / (1 + Math.exp(-torch.logits[i])), 6));
    const vsFloat64 = maxAbsDiff(torch.scores, float64);
    const vsQrank = maxAbsDiff(qrank, torch.scores);
    if (process.env.QRANK_REPORT) console.log(name, 'max abs score diff: torch-float64', vsFloat64, 'qrank-torch', vsQrank);
    // The comparisons can fail: the scores are far apart compared with the tolerances.
    expect(Math.max(...torch.scores) - Math.min(...torch.scores)).toBeGreaterThan(5 * v.tolerance);
    expect(vsFloat64).toBeLessThan(REFERENCE_TOLERANCE);
    expect(vsQrank).toBeLessThan(v.tolerance);
  });

  it('batched with left padding (sdpa) = one sequence at a time (eager)', () => {
    const { ids, torch } = reranked.get(RERANK_VARIANTS[0].name)!;
    const worst = maxAbsDiff(torch.logits, oneAtATime.logits);
    if (process.env.QRANK_REPORT) console.log('batched vs one at a time, max abs logit diff', worst);
    expect(new Set(ids.map((s) => s.length)).size).toBeGreaterThan(1);
    expect(worst).toBeLessThan(REFERENCE_TOLERANCE);
  });

  it.each(EMBED_VARIANTS.map((v) => [v.name, v] as const))('%s: same embeddings as the official recipe', (name, v) => {
    const { qrank, torch, float64 } = embedded.get(name)!;
    expect(torch.embeddings).toHaveLength(EMBED_CASES.length);
    let vsFloat64 = 0;
    let vsQrank = 0;
    let minCosine = 1;
    torch.embeddings.forEach((want, i) => {
      expect(want).toHaveLength(v.dimensions ?? 64);
      expect(Math.hypot(...want)).toBeCloseTo(1, 6);
      vsFloat64 = Math.max(vsFloat64, maxAbsDiff(want, float64[i]));
      vsQrank = Math.max(vsQrank, maxAbsDiff(want, qrank[i]));
      minCosine = Math.min(minCosine, dot(want, qrank[i]));
    });
    if (process.env.QRANK_REPORT) console.log(name, 'max abs element diff: torch-float64', vsFloat64, 'qrank-torch', vsQrank, 'min cosine', minCosine);
    expect(vsFloat64).toBeLessThan(REFERENCE_TOLERANCE);
    expect(vsQrank).toBeLessThan(v.tolerance);
    expect(minCosine).toBeGreaterThan(v.minCosine);
    // Distinct texts have distinct vectors: a constant output could not pass.
    expect(dot(torch.embeddings[0], torch.embeddings[1])).toBeLessThan(0.99);
  });

  it('bench: one JSON document with every field', () => {
    expect(bench).toMatchObject({
      tool: 'scripts/torch_qwen3.py bench',
      environment: { torch: expect.any(String), transformers: expect.any(String), gguf: expect.any(String), device: 'cpu', device_name: expect.any(String) },
      model: { head: expect.stringMatching(/^cls\.output/) },
      settings: { dtype: 'float32', attn: 'sdpa', compile: false, batch_sizes: [2, 4, 64], reps: 2, inputs: expect.stringContaining('frame') },
      latency: { shape: 'docs', docs: 6, reps: 3, p50_ms: expect.any(Number), p99_ms: expect.any(Number) },
    });
    const shapes = bench.shapes as Record<string, any>[];
    expect(shapes.map((s) => s.name)).toEqual(['docs', 'titles']);
    const frameLength = frame.prefixes[0].length + frame.suffix.length;
    expect(shapes[0]).toMatchObject({ requests: 1, docs_per_request: 6, sequences: 6, tokens: 6 * (frameLength + 8), seq_len: { min: frameLength + 8, max: frameLength + 8 } });
    expect(shapes[1]).toMatchObject({ requests: 2, docs_per_request: 5, sequences: 10, doc_tokens: [3, 9] });
    expect(shapes[1].seq_len.min).toBeGreaterThanOrEqual(frameLength + 3);
    expect(shapes[1].seq_len.max).toBeLessThanOrEqual(frameLength + 9);
    for (const s of shapes) {
      expect([2, 4]).toContain(s.best_batch_size); // 64 exceeds the shapes' sequence counts: not tried
      expect(s.batch_sweep.map((t: { batch_size: number }) => t.batch_size)).toEqual([2, 4]);
      expect(s.padded_tokens).toBeGreaterThanOrEqual(s.tokens);
      expect(s.seconds_all).toHaveLength(2);
      expect(s.peak_memory_bytes).toBeNull(); // CPU
      for (const key of ['seconds_median', 'tokens_per_s', 'pairs_per_s', 'gemm_flops', 'gemm_tflops_achieved', 'gemm_share_of_ceiling']) {
        expect(s[key], key).toBeGreaterThan(0);
        expect(Number.isFinite(s[key]), key).toBe(true);
      }
      expect(s.pairs_per_s).toBeCloseTo(s.sequences / s.seconds_median, 6);
      expect(s.gemm_ceiling.tokens).toBe(s.best_batch_size * s.seq_len.max);
      expect(s.gemm_ceiling.gemms.map((g: { name: string }) => g.name)).toEqual(['qkv', 'o', 'gate_up', 'down']);
      for (const g of s.gemm_ceiling.gemms) expect(g.tflops).toBeGreaterThan(0);
      expect(s.gemm_ceiling.combined_tflops).toBeGreaterThan(0);
    }
  });

  it('bad input: exit status 2 and one line that says what is wrong', async () => {
    const bad = tmp('bad.json');
    writeFileSync(bad, JSON.stringify({ sequences: [[1, 2], [3, -4]] }));
    const r = await runScript(['score', '--model', tmp('reranker-f32.gguf'), '--input', bad]);
    expect(r.code).toBe(2);
    expect(r.stderr.trim()).toBe(`torch_qwen3.py: error: ${bad}: sequences[1] is not a non-empty list of non-negative integer token ids`);
  });
});
