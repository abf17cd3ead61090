/**
 * Deterministic synthetic Qwen3 models for tests and benchmarks: real Qwen3 tokenizer, real tensor layout and
 * metadata for llama.cpp's `qwen3` architecture, random weights.
 *
 * Three kinds share the architecture and differ like the real checkpoints do after llama.cpp's conversion:
 *  - reranker (Qwen3-Reranker): pooling RANK, a 2-row `cls.output.weight` made of the embedding rows of "yes" and
 *    "no", classifier labels and the rerank prompt template;
 *  - embedder (Qwen3-Embedding): pooling LAST, tied embeddings;
 *  - causal (Qwen3): no pooling key, an untied `output.weight`.
 *
 * Each tensor's values come from its own PRNG stream seeded by (seed, tensor name), so they do not depend on the
 * order of generation or on the chunking, and the same options always give a byte-identical file.
 *
 * This module writes the file (metadata, tokenizer, tensors in chunks); the vocabulary is in ./vocab, the random
 * numbers in ./rng, the tensor plan and shapes in ./layout. The demo uses it at run time, so it ships.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { GGUFValueType, tensorElementCount } from '../gguf/format';
import { GGUFWriter } from '../gguf/writer';
import {
  DEFAULT_SEEDS,
  FILE_TYPE_OF,
  TEST_MODEL_KINDS,
  TEST_MODEL_SHAPES,
  TEST_MODEL_SHAPE_NAMES,
  TEST_MODEL_TYPES,
  type TestModelKind,
  type TestModelShapeName,
  type TestModelTensor,
  type TestModelType,
  type TestModelVariant,
  defaultTestModelType,
  testModelTensors,
} from './layout';
import { Rng } from './rng';
import { QWEN3_IM_END_ID, QWEN3_RERANK_TEMPLATE, type QwenVocab, loadQwen3Vocab } from './vocab';
/** llama.cpp's enum llama_pooling_type. */
const POOLING_LAST = 3;
const POOLING_RANK = 4;

const DISPLAY_NAME: Readonly<Record<TestModelKind, string>> = {
  reranker: 'Qwen3-Reranker',
  embedder: 'Qwen3-Embedding',
  causal: 'Qwen3',
};

function addModelMetadata(
  w: GGUFWriter,
  kind: TestModelKind,
  shapeName: TestModelShapeName,
  type: TestModelType,
  seed: number,
): void {
  const s = TEST_MODEL_SHAPES[shapeName];
  w.addString('general.architecture', 'qwen3')
    .addString('general.type', 'model')
    .addString('general.name', `qrank synthetic ${DISPLAY_NAME[kind]} ${shapeName}`)
    .addUint32('general.file_type', FILE_TYPE_OF[type])
    .addUint32('general.quantization_version', 2)
    .addUint32('qwen3.block_count', s.blockCount)
    .addUint32('qwen3.context_length', s.contextLength[kind])
    .addUint32('qwen3.embedding_length', s.embeddingLength)
    .addUint32('qwen3.feed_forward_length', s.feedForwardLength)
    .addUint32('qwen3.attention.head_count', s.headCount)
    .addUint32('qwen3.attention.head_count_kv', s.headCountKv)
    .addUint32('qwen3.attention.key_length', s.headDim)
    .addUint32('qwen3.attention.value_length', s.headDim)
    .addFloat32('qwen3.rope.freq_base', 1000000)
    .addFloat32('qwen3.attention.layer_norm_rms_epsilon', 1e-6);
  if (kind === 'reranker') {
    w.addUint32('qwen3.pooling_type', POOLING_RANK);
    w.addArray('qwen3.classifier.output_labels', GGUFValueType.STRING, ['yes', 'no']);
  } else if (kind === 'embedder') {
    w.addUint32('qwen3.pooling_type', POOLING_LAST);
  }
  w.addBool('qrank.synthetic', true).addUint32('qrank.seed', seed).addString('qrank.kind', kind);
}

function addTokenizerMetadata(w: GGUFWriter, kind: TestModelKind, vocab: QwenVocab, variant: TestModelVariant): void {
  w.addString('tokenizer.ggml.model', vocab.model)
    .addString('tokenizer.ggml.pre', vocab.pre)
    .addArray('tokenizer.ggml.tokens', GGUFValueType.STRING, vocab.tokens)
    .addArray('tokenizer.ggml.token_type', GGUFValueType.INT32, vocab.tokenTypes)
    .addArray('tokenizer.ggml.merges', GGUFValueType.STRING, vocab.merges)
    .addUint32('tokenizer.ggml.eos_token_id', variant.eos === 'im_end' ? QWEN3_IM_END_ID : vocab.eosId)
    .addUint32('tokenizer.ggml.padding_token_id', vocab.paddingId)
    .addUint32('tokenizer.ggml.bos_token_id', vocab.bosId)
    .addBool('tokenizer.ggml.add_bos_token', false)
    .addBool('tokenizer.ggml.add_eos_token', variant.addEosToken ?? false);
  if (kind === 'reranker') w.addString('tokenizer.chat_template.rerank', QWEN3_RERANK_TEMPLATE);
}

// ---------------------------------------------------------------------------------------------------------------------
// Generation
// ---------------------------------------------------------------------------------------------------------------------

export interface MakeTestModelOptions {
  kind: TestModelKind;
  shape: TestModelShapeName;
  out: string;
  /** uint32; defaults to DEFAULT_SEEDS[kind]. */
  seed?: number;
  /** Type of the 2-D weights; defaults to f32 for tiny, f16 otherwise. */
  type?: TestModelType;
  vocabPath?: string;
  /** A variant of real conversions (see TestModelVariant). */
  variant?: TestModelVariant;
  /** Bytes written so far and total file size. */
  onProgress?: (done: number, total: number) => void;
}

export interface MakeTestModelResult {
  path: string;
  sha256: string;
  bytes: number;
}

/** Elements generated per chunk: bounds memory (~4 MB of float32) while keeping writes large. */
const CHUNK_ELEMENTS = 1 << 20;

function validateOptions(opts: MakeTestModelOptions): void {
  if (!TEST_MODEL_KINDS.includes(opts.kind)) throw new Error(`unknown model kind '${opts.kind}'`);
  if (!TEST_MODEL_SHAPE_NAMES.includes(opts.shape)) throw new Error(`unknown model shape '${opts.shape}'`);
  if (opts.type !== undefined && !TEST_MODEL_TYPES.includes(opts.type)) throw new Error(`unknown type '${opts.type}'`);
  if (opts.seed !== undefined && !(Number.isInteger(opts.seed) && opts.seed >= 0 && opts.seed <= 0xffffffff)) {
    throw new Error(`seed must be an integer in 0..4294967295, got ${opts.seed}`);
  }
  const v = opts.variant ?? {};
  if (v.tied && opts.kind !== 'causal') throw new Error('variant.tied applies to causal models (rerankers carry cls.output, embedders are tied)');
  if (v.headScale !== undefined && (opts.kind !== 'reranker' || !(v.headScale > 0))) throw new Error('variant.headScale is a positive number, for rerankers');
  if (v.eos !== undefined && v.eos !== 'endoftext' && v.eos !== 'im_end') throw new Error(`variant.eos is 'endoftext' or 'im_end'`);
}

/** Writes a synthetic model to `opts.out` (parent directories are created) and returns its size and SHA-256. */
export async function makeTestModel(opts: MakeTestModelOptions): Promise<MakeTestModelResult> {
  validateOptions(opts);
  const seed = opts.seed ?? DEFAULT_SEEDS[opts.kind];
  const type = opts.type ?? defaultTestModelType(opts.shape);
  const vocab = loadQwen3Vocab(opts.vocabPath);
  const out = path.resolve(opts.out);
  fs.mkdirSync(path.dirname(out), { recursive: true });

  const variant = opts.variant ?? {};
  const tensors = testModelTensors(opts.kind, opts.shape, type, variant);
  const writer = new GGUFWriter(out, { onProgress: opts.onProgress });
  try {
    addModelMetadata(writer, opts.kind, opts.shape, type, seed);
    addTokenizerMetadata(writer, opts.kind, vocab, variant);
    for (const t of tensors) writer.addTensor(t.name, t.dims, t.type);
    writer.writeHeader();
    await writeTensors(writer, tensors, seed);
    const { sha256, bytes } = writer.finish();
    return { path: out, sha256, bytes };
  } catch (err) {
    writer.abort();
    throw err;
  }
}

/** Generates and streams every tensor, keeping only the rows that later 'rows' tensors copy. */
async function writeTensors(writer: GGUFWriter, tensors: TestModelTensor[], seed: number): Promise<void> {
  const wanted = rowsToKeep(tensors);
  const kept = new Map<string, Map<number, Float32Array>>();
  for (const t of tensors) {
    if (t.init.kind === 'normal') {
      kept.set(t.name, writeNormalTensor(writer, t, t.init, seed, wanted.get(t.name)));
    } else {
      writer.writeTensorData(t.name, copyRows(t.init.source, t.init.rows, kept, t.init.scale ?? 1));
    }
    // Let signals, timers and progress output through between tensors.
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
}

function rowsToKeep(tensors: TestModelTensor[]): Map<string, Set<number>> {
  const wanted = new Map<string, Set<number>>();
  for (const t of tensors) {
    if (t.init.kind !== 'rows') continue;
    const set = wanted.get(t.init.source) ?? new Set<number>();
    t.init.rows.forEach((r) => set.add(r));
    wanted.set(t.init.source, set);
  }
  return wanted;
}

/** Writes a random tensor chunk by chunk (whole rows, so Q8_0 blocks never straddle chunks); returns kept rows. */
function writeNormalTensor(
  writer: GGUFWriter,
  t: TestModelTensor,
  init: { mean: number; std: number },
  seed: number,
  keepRows: Set<number> | undefined,
): Map<number, Float32Array> {
  const rowLen = t.dims[0];
  const nRows = tensorElementCount(t.dims) / rowLen;
  const rowsPerChunk = Math.max(1, Math.floor(CHUNK_ELEMENTS / rowLen));
  const rng = new Rng(seed, t.name);
  const kept = new Map<number, Float32Array>();
  const buf = new Float32Array(Math.min(nRows, rowsPerChunk) * rowLen);
  for (let row = 0; row < nRows; row += rowsPerChunk) {
    const n = Math.min(rowsPerChunk, nRows - row);
    const chunk = buf.subarray(0, n * rowLen);
    rng.fillNormal(chunk, init.mean, init.std);
    keepRows?.forEach((r) => {
      if (r >= row && r < row + n) kept.set(r, chunk.slice((r - row) * rowLen, (r - row + 1) * rowLen));
    });
    writer.writeTensorData(t.name, chunk);
  }
  return kept;
}

function copyRows(source: string, rows: number[], kept: Map<string, Map<number, Float32Array>>, scale: number): Float32Array {
  const parts = rows.map((r) => {
    const row = kept.get(source)?.get(r);
    if (!row) throw new Error(`row ${r} of '${source}' was not generated before it was needed`);
    return row;
  });
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  if (scale !== 1) for (let i = 0; i < out.length; i++) out[i] *= scale;
  return out;
}
