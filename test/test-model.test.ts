import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GGMLType, GGUFValueType } from '../lib/gguf/format';
import { GGUFFile, withGGUF } from '../lib/gguf/reader';
import { runCli } from '../lib/cli/main';
import { TEST_MODEL_SHAPES, testModelTensors } from '../lib/synthetic/layout';
import { makeTestModel } from '../lib/synthetic/model';
import { Rng } from '../lib/synthetic/rng';
import { QWEN3_ADDED_TOKENS, QWEN3_NO_ID, QWEN3_RERANK_TEMPLATE, QWEN3_YES_ID, SHIPPED_VOCAB, defaultVocabPath, loadQwen3Vocab } from '../lib/synthetic/vocab';

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qrank-test-model-'));
});
afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});
const tmp = (name: string) => path.join(dir, name);

const fileSha256 = (p: string) => createHash('sha256').update(fs.readFileSync(p)).digest('hex');

describe('Qwen3 vocabulary', () => {
  it('loads the Qwen2 vocab file quickly and fills in the Qwen3 added tokens', () => {
    const t0 = performance.now();
    const vocab = loadQwen3Vocab();
    const ms = performance.now() - t0;
    expect(ms).toBeLessThan(2000); // ~150 ms on a quiet machine
    expect(vocab.tokens.length).toBe(151936);
    expect(vocab.tokenTypes.length).toBe(151936);
    expect(vocab.merges.length).toBe(151387);
    expect(vocab.model).toBe('gpt2');
    expect(vocab.pre).toBe('qwen2');
    expect([vocab.eosId, vocab.bosId, vocab.paddingId]).toEqual([151643, 151643, 151643]);
    expect(vocab.tokens[QWEN3_YES_ID]).toBe('yes');
    expect(vocab.tokens[QWEN3_NO_ID]).toBe('no');
    expect(vocab.tokens.slice(151643, 151646)).toEqual(['<|endoftext|>', '<|im_start|>', '<|im_end|>']);
    expect([...vocab.tokenTypes.subarray(151643, 151646)]).toEqual([3, 3, 3]);
    expect(vocab.tokens[151669]).toBe('[PAD151669]');
    expect(vocab.tokenTypes[151669]).toBe(4);
    expect(vocab.tokens[151935]).toBe('[PAD151935]');
  });

  it('has the 23 Qwen3 added tokens with the right ids and types', () => {
    const vocab = loadQwen3Vocab();
    expect(QWEN3_ADDED_TOKENS.length).toBe(23);
    const got = QWEN3_ADDED_TOKENS.map((t) => `${t.id} ${vocab.tokens[t.id]} ${vocab.tokenTypes[t.id]}`);
    expect(got).toEqual([
      '151646 <|object_ref_start|> 3',
      '151647 <|object_ref_end|> 3',
      '151648 <|box_start|> 3',
      '151649 <|box_end|> 3',
      '151650 <|quad_start|> 3',
      '151651 <|quad_end|> 3',
      '151652 <|vision_start|> 3',
      '151653 <|vision_end|> 3',
      '151654 <|vision_pad|> 3',
      '151655 <|image_pad|> 3',
      '151656 <|video_pad|> 3',
      '151657 <tool_call> 4',
      '151658 </tool_call> 4',
      '151659 <|fim_prefix|> 4',
      '151660 <|fim_middle|> 4',
      '151661 <|fim_suffix|> 4',
      '151662 <|fim_pad|> 4',
      '151663 <|repo_name|> 4',
      '151664 <|file_sep|> 4',
      '151665 <tool_response> 4',
      '151666 </tool_response> 4',
      '151667 <think> 4',
      '151668 </think> 4',
    ]);
  });

  it('explains how to get the vocabulary when it is missing', async () => {
    await expect(
      makeTestModel({ kind: 'reranker', shape: 'tiny', out: tmp('x.gguf'), vocabPath: tmp('missing.gguf') }),
    ).rejects.toThrow(/missing\.gguf not found \(QRANK_VOCAB_GGUF names a GGUF with the Qwen2\/Qwen3 vocabulary\)/);
  });

  it('ships the vocabulary compressed: exactly llama.cpp\'s, usable without the source tree', () => {
    const unpacked = defaultVocabPath();
    expect(unpacked.startsWith(os.tmpdir())).toBe(true);
    expect(fs.statSync(SHIPPED_VOCAB).size).toBeLessThan(1.2e6);
    const fromSource = path.join(__dirname, '..', 'deps', 'llama.cpp', 'models', 'ggml-vocab-qwen2.gguf');
    if (fs.existsSync(fromSource)) expect(fileSha256(unpacked)).toBe(fileSha256(fromSource));
    expect(loadQwen3Vocab(unpacked).tokens.length).toBe(151936);
  });
});

describe('Rng', () => {
  it('gives the same normal stream whatever the chunking', () => {
    const whole = new Float32Array(1001);
    new Rng(7, 'x').fillNormal(whole, 0, 1);
    const chunked = new Float32Array(1001);
    const rng = new Rng(7, 'x');
    for (const [a, b] of [[0, 1], [1, 4], [4, 333], [333, 1001]]) rng.fillNormal(chunked.subarray(a, b), 0, 1);
    expect([...chunked]).toEqual([...whole]);
  });

  it('is roughly standard normal and differs by seed and stream', () => {
    const xs = new Float32Array(100000);
    new Rng(1, 'a').fillNormal(xs, 0, 1);
    const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
    const variance = xs.reduce((s, x) => s + (x - mean) ** 2, 0) / xs.length;
    expect(Math.abs(mean)).toBeLessThan(0.02);
    expect(Math.abs(variance - 1)).toBeLessThan(0.03);
    expect(xs.filter((x) => Math.abs(x) > 1.96).length / xs.length).toBeCloseTo(0.05, 2);
    const first = (seed: number, name: string) => new Rng(seed, name).nextU32();
    expect(new Set([first(1, 'a'), first(2, 'a'), first(1, 'b'), first(1, 'a ')]).size).toBe(4);
  });
});

const SHAPE = TEST_MODEL_SHAPES.tiny;
const E = SHAPE.embeddingLength;

function expectedDims(name: string): number[] {
  const q = SHAPE.headCount * SHAPE.headDim;
  const kv = SHAPE.headCountKv * SHAPE.headDim;
  const F = SHAPE.feedForwardLength;
  const table: Record<string, number[]> = {
    'token_embd.weight': [E, 151936],
    'output.weight': [E, 151936],
    'output_norm.weight': [E],
    'cls.output.weight': [E, 2],
    attn_norm: [E],
    attn_q: [E, q],
    attn_k: [E, kv],
    attn_v: [E, kv],
    attn_output: [q, E],
    attn_q_norm: [SHAPE.headDim],
    attn_k_norm: [SHAPE.headDim],
    ffn_norm: [E],
    ffn_gate: [E, F],
    ffn_up: [E, F],
    ffn_down: [F, E],
  };
  return table[name] ?? table[name.split('.')[2]];
}

describe('tiny reranker', () => {
  let file: GGUFFile;
  let result: Awaited<ReturnType<typeof makeTestModel>>;
  beforeAll(async () => {
    result = await makeTestModel({ kind: 'reranker', shape: 'tiny', out: tmp('rr/tiny-reranker.gguf') });
    file = GGUFFile.open(result.path);
  });
  afterAll(() => file?.close());

  it('returns the path, size and sha256 of the file it wrote', () => {
    expect(result.path).toBe(tmp('rr/tiny-reranker.gguf'));
    expect(result.bytes).toBe(fs.statSync(result.path).size);
    expect(result.sha256).toBe(fileSha256(result.path));
  });

  it('has the qwen3 metadata llama.cpp needs', () => {
    const num = (k: string) => file.getNumber(k);
    expect(file.getString('general.architecture')).toBe('qwen3');
    expect(file.getString('general.type')).toBe('model');
    expect(file.getString('general.name')).toBe('qrank synthetic Qwen3-Reranker tiny');
    expect(num('general.file_type')).toBe(0);
    expect(file.get('qwen3.block_count')).toEqual({ type: GGUFValueType.UINT32, value: 2 });
    expect(num('qwen3.context_length')).toBe(512);
    expect(num('qwen3.embedding_length')).toBe(64);
    expect(num('qwen3.feed_forward_length')).toBe(128);
    expect(num('qwen3.attention.head_count')).toBe(4);
    expect(num('qwen3.attention.head_count_kv')).toBe(2);
    expect(num('qwen3.attention.key_length')).toBe(16);
    expect(num('qwen3.attention.value_length')).toBe(16);
    expect(file.get('qwen3.rope.freq_base')).toEqual({ type: GGUFValueType.FLOAT32, value: 1000000 });
    expect(file.get('qwen3.attention.layer_norm_rms_epsilon')?.type).toBe(GGUFValueType.FLOAT32);
    expect(num('qwen3.attention.layer_norm_rms_epsilon')).toBeCloseTo(1e-6, 12);
    expect(file.get('qwen3.pooling_type')).toEqual({ type: GGUFValueType.UINT32, value: 4 });
    expect(file.getArray('qwen3.classifier.output_labels')).toEqual({
      type: GGUFValueType.ARRAY,
      itemType: GGUFValueType.STRING,
      value: ['yes', 'no'],
    });
    expect(file.getString('tokenizer.chat_template.rerank')).toBe(QWEN3_RERANK_TEMPLATE);
    expect(QWEN3_RERANK_TEMPLATE).toContain('<Query>: {query}\n<Document>: {document}<|im_end|>\n');
    expect(QWEN3_RERANK_TEMPLATE.endsWith('<|im_start|>assistant\n<think>\n\n</think>\n\n')).toBe(true);
    expect(file.getBool('qrank.synthetic')).toBe(true);
    expect(file.get('qrank.seed')).toEqual({ type: GGUFValueType.UINT32, value: 1 });
    expect(file.getString('qrank.kind')).toBe('reranker');
  });

  it('carries the tokenizer', () => {
    expect(file.getString('tokenizer.ggml.model')).toBe('gpt2');
    expect(file.getString('tokenizer.ggml.pre')).toBe('qwen2');
    const tokens = file.getArray('tokenizer.ggml.tokens')!.value as string[];
    const types = file.getArray('tokenizer.ggml.token_type')!.value as Int32Array;
    expect(file.getArray('tokenizer.ggml.token_type')!.itemType).toBe(GGUFValueType.INT32);
    expect(tokens.length).toBe(151936);
    for (const t of QWEN3_ADDED_TOKENS) expect([tokens[t.id], types[t.id]]).toEqual([t.text, t.type]);
    expect((file.getArray('tokenizer.ggml.merges')!.value as string[]).length).toBe(151387);
    for (const k of ['eos_token_id', 'padding_token_id', 'bos_token_id']) {
      expect(file.get(`tokenizer.ggml.${k}`)).toEqual({ type: GGUFValueType.UINT32, value: 151643 });
    }
    expect(file.get('tokenizer.ggml.add_bos_token')).toEqual({ type: GGUFValueType.BOOL, value: false });
    expect(file.get('tokenizer.ggml.add_eos_token')).toEqual({ type: GGUFValueType.BOOL, value: false });
  });

  it('has every qwen3 tensor with llama.cpp shapes; norms F32', () => {
    const names = file.tensors.map((t) => t.name);
    expect(names.length).toBe(1 + 11 * 2 + 1 + 1);
    expect(names).toContain('blk.1.ffn_down.weight');
    expect(names).not.toContain('output.weight');
    for (const t of file.tensors) {
      expect(t.dims, t.name).toEqual(expectedDims(t.name));
      expect(t.type, t.name).toBe(GGMLType.F32);
      expect(t.fileOffset % 32).toBe(0);
    }
  });

  it("classifier rows are exactly the embeddings of 'yes' and 'no'", () => {
    const cls = file.readTensorBytes('cls.output.weight');
    const yes = file.readTensorRows('token_embd.weight', QWEN3_YES_ID, 1);
    const no = file.readTensorRows('token_embd.weight', QWEN3_NO_ID, 1);
    expect(Buffer.compare(cls, Buffer.concat([yes, no]))).toBe(0);
    expect(Buffer.compare(yes, no)).not.toBe(0);
  });

  it('has weights at the documented scales', () => {
    const stats = (xs: Float32Array) => {
      const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
      return { mean, std: Math.sqrt(xs.reduce((s, x) => s + (x - mean) ** 2, 0) / xs.length) };
    };
    const embd = stats(file.readTensorRowsF32('token_embd.weight', 0, 2000));
    expect(embd.std).toBeCloseTo(0.1, 2);
    expect(stats(file.readTensorF32('blk.0.attn_q.weight')).std).toBeCloseTo(1 / Math.sqrt(E), 2);
    expect(stats(file.readTensorF32('blk.1.ffn_down.weight')).std).toBeCloseTo(1 / Math.sqrt(128), 2);
    expect(stats(file.readTensorF32('blk.0.attn_norm.weight')).mean).toBeCloseTo(1, 1);
    expect(stats(file.readTensorF32('blk.0.attn_q_norm.weight')).mean).toBeGreaterThan(2);
  });
});

describe('tiny embedder and causal', () => {
  it('embedder: LAST pooling, tied embeddings, no classifier', async () => {
    const r = await makeTestModel({ kind: 'embedder', shape: 'tiny', out: tmp('tiny-embedder.gguf'), type: 'f16' });
    withGGUF(r.path, (f) => {
      expect(f.get('qwen3.pooling_type')).toEqual({ type: GGUFValueType.UINT32, value: 3 });
      expect(f.getString('general.name')).toBe('qrank synthetic Qwen3-Embedding tiny');
      expect(f.getNumber('qrank.seed')).toBe(2);
      expect(f.get('qwen3.classifier.output_labels')).toBeUndefined();
      expect(f.get('tokenizer.chat_template.rerank')).toBeUndefined();
      expect(f.tensors.length).toBe(24);
      expect(f.tensor('cls.output.weight')).toBeUndefined();
      expect(f.tensor('output.weight')).toBeUndefined();
    });
  });

  it('causal: no pooling key, its own output.weight', async () => {
    const r = await makeTestModel({ kind: 'causal', shape: 'tiny', out: tmp('tiny-causal.gguf'), type: 'f16' });
    withGGUF(r.path, (f) => {
      expect(f.get('qwen3.pooling_type')).toBeUndefined();
      expect(f.getNumber('qrank.seed')).toBe(3);
      expect(f.tensors.length).toBe(25);
      expect(f.tensor('output.weight')?.dims).toEqual([E, 151936]);
      expect(f.tensor('cls.output.weight')).toBeUndefined();
      const out = f.readTensorRows('output.weight', 0, 4);
      expect(Buffer.compare(out, f.readTensorRows('token_embd.weight', 0, 4))).not.toBe(0);
    });
  });
});

describe('weight types', () => {
  it.each([
    { type: 'f16', ggmlType: GGMLType.F16, fileType: 1 },
    { type: 'bf16', ggmlType: GGMLType.BF16, fileType: 32 },
    { type: 'q8_0', ggmlType: GGMLType.Q8_0, fileType: 7 },
  ] as const)('$type: 2-D weights in that type, norms F32, file_type $fileType', async ({ type, ggmlType, fileType }) => {
    const r = await makeTestModel({ kind: 'reranker', shape: 'tiny', type, out: tmp(`rr-${type}.gguf`) });
    withGGUF(r.path, (f) => {
      expect(f.getNumber('general.file_type')).toBe(fileType);
      for (const t of f.tensors) expect(t.type, t.name).toBe(t.dims.length === 1 ? GGMLType.F32 : ggmlType);
      const cls = f.readTensorBytes('cls.output.weight');
      const rows = [QWEN3_YES_ID, QWEN3_NO_ID].map((id) => f.readTensorRows('token_embd.weight', id, 1));
      expect(Buffer.compare(cls, Buffer.concat(rows))).toBe(0);
      // Same random values as the f32 model, up to the conversion.
      const q = f.readTensorF32('blk.0.attn_q.weight');
      const q32 = withGGUF(tmp('rr/tiny-reranker.gguf'), (g) => g.readTensorF32('blk.0.attn_q.weight'));
      let maxErr = 0;
      for (let i = 0; i < q.length; i++) maxErr = Math.max(maxErr, Math.abs(q[i] - q32[i]));
      expect(maxErr).toBeGreaterThan(0);
      expect(maxErr).toBeLessThan(0.01);
    });
  });
});

describe('determinism', () => {
  it('same seed -> identical file; different seed -> different file', async () => {
    const make = (seed: number | undefined, name: string) =>
      makeTestModel({ kind: 'reranker', shape: 'tiny', type: 'q8_0', seed, out: tmp(name) });
    const a = await make(undefined, 'det-a.gguf');
    const b = await make(1, 'det-b.gguf');
    const c = await make(2, 'det-c.gguf');
    expect(b.sha256).toBe(a.sha256);
    expect(c.sha256).not.toBe(a.sha256);
    expect(fileSha256(tmp('det-b.gguf'))).toBe(a.sha256);
  });

  it("a tensor's values depend on (seed, name) only, not on the model kind or tensor order", async () => {
    const a = await makeTestModel({ kind: 'embedder', shape: 'tiny', type: 'q8_0', seed: 1, out: tmp('emb-s1.gguf') });
    const q = (p: string) => withGGUF(p, (f) => f.readTensorBytes('blk.1.ffn_up.weight'));
    expect(Buffer.compare(q(a.path), q(tmp('det-a.gguf')))).toBe(0);
  });
});

describe('shapes', () => {
  it('small has Qwen3\'s head size with few parameters, and loads in llama.cpp', async () => {
    expect(TEST_MODEL_SHAPES.small).toMatchObject({ headDim: 128, headCount: 4, headCountKv: 2, embeddingLength: 128, blockCount: 2 });
    const out = tmp('small-reranker.gguf');
    await makeTestModel({ kind: 'reranker', shape: 'small', type: 'q8_0', out });
    expect(fs.statSync(out).size).toBeLessThan(32 << 20); // the 151936-row embedding table is most of it
    const { Reranker } = await import('../lib/reranker');
    const rr = await Reranker.load({ model: out, threads: 1 });
    try {
      expect(rr.info).toMatchObject({ headDim: 128, heads: 4, kvHeads: 2, embeddingLength: 128, weightType: 'q8_0' });
      const [r] = await rr.rerank('auriculares bluetooth', ['wireless headphones']);
      expect(r.score).toBeGreaterThan(0);
      expect(r.score).toBeLessThan(1);
    } finally {
      await rr.close();
    }
  });

  it('0.6b and 4b match Qwen3-0.6B and Qwen3-4B', () => {
    expect(TEST_MODEL_SHAPES['0.6b']).toEqual({
      blockCount: 28,
      contextLength: { reranker: 40960, embedder: 32768, causal: 40960 },
      embeddingLength: 1024,
      feedForwardLength: 3072,
      headCount: 16,
      headCountKv: 8,
      headDim: 128,
    });
    expect(TEST_MODEL_SHAPES['4b']).toMatchObject({ blockCount: 36, embeddingLength: 2560, feedForwardLength: 9728 });
    const tensors = testModelTensors('reranker', '0.6b', 'f16');
    expect(tensors.length).toBe(1 + 11 * 28 + 1 + 1);
    const params = tensors.reduce((n, t) => n + t.dims.reduce((a, d) => a * d, 1), 0);
    expect(params).toBe(596049920 + 2 * 1024); // Qwen3-0.6B's 596M (tied) plus the 2-row classifier
    expect(tensors.find((t) => t.name === 'blk.27.attn_q.weight')).toMatchObject({ dims: [1024, 2048], type: GGMLType.F16 });
    expect(tensors.find((t) => t.name === 'blk.27.attn_k_norm.weight')).toMatchObject({ dims: [128], type: GGMLType.F32 });
  });
});

describe('qrank make-test-model', () => {
  const cli = async (...args: string[]) => {
    let stdout = '';
    let stderr = '';
    const code = await runCli(args, {
      stdout: { write: (s: string) => (stdout += s) },
      stderr: { write: (s: string) => (stderr += s) },
    });
    return { code, stdout, stderr };
  };

  it('writes a model and prints path, size and sha256', async () => {
    const out = tmp('cli/tiny-causal.gguf');
    const r = await cli('make-test-model', '--kind', 'causal', '--out', out, '--type', 'q8_0', '--seed', '9');
    expect(r.code).toBe(0);
    const size = fs.statSync(out).size;
    expect(r.stdout).toBe(
      `path    ${out}\nsize    ${size} bytes (${(size / 2 ** 20).toFixed(1)} MiB)\nsha256  ${fileSha256(out)}\n`,
    );
    expect(r.stderr).toBe(''); // no progress line when stderr is not a TTY
    expect(withGGUF(out, (f) => f.getNumber('qrank.seed'))).toBe(9);
  });

  it('exits 2 with a one-line message on bad arguments', async () => {
    for (const args of [
      ['make-test-model', '--kind', 'bogus', '--out', tmp('y.gguf')],
      ['make-test-model', '--kind', 'reranker'],
      ['make-test-model', '--kind', 'reranker', '--out', tmp('y.gguf'), '--seed', '-1'],
      ['make-test-model', '--kind', 'reranker', '--out', tmp('y.gguf'), '--shape', '7b'],
      ['no-such-command'],
    ]) {
      const r = await cli(...args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).toMatch(/^qrank: [^\n]+\n$/);
    }
    expect(fs.existsSync(tmp('y.gguf'))).toBe(false);
  });

  it('exits 1 with a one-line message when generation fails', async () => {
    fs.writeFileSync(tmp('a-file'), '');
    const r = await cli('make-test-model', '--kind', 'reranker', '--out', tmp('a-file/model.gguf'));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^qrank: [^\n]+\n$/);
  });

  it('prints help with exit code 0', async () => {
    const r = await cli('make-test-model', '--help');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('--kind <kind>');
    expect(r.stdout).toContain('"reranker", "embedder", "causal"');
  });
});
