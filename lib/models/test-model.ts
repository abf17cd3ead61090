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
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import {
  GGMLType,
  GGUFValueType,
  LlamaFileType,
  tensorElementCount,
} from '../gguf/format';
import { GGUFFile } from '../gguf/reader';
import { GGUFWriter } from '../gguf/writer';

export type TestModelKind = 'reranker' | 'embedder' | 'causal';
export type TestModelShapeName = 'tiny' | 'small' | '0.6b' | '4b';
export type TestModelType = 'f32' | 'f16' | 'bf16' | 'q8_0';

export const TEST_MODEL_KINDS: readonly TestModelKind[] = ['reranker', 'embedder', 'causal'];
export const TEST_MODEL_SHAPE_NAMES: readonly TestModelShapeName[] = ['tiny', 'small', '0.6b', '4b'];
export const TEST_MODEL_TYPES: readonly TestModelType[] = ['f32', 'f16', 'bf16', 'q8_0'];

export interface TestModelShape {
  blockCount: number;
  /** Training context per kind (Qwen3-Embedding-0.6B advertises 32768, the others 40960). */
  contextLength: Readonly<Record<TestModelKind, number>>;
  embeddingLength: number;
  feedForwardLength: number;
  headCount: number;
  headCountKv: number;
  /** key_length = value_length. */
  headDim: number;
}

/**
 * Hyper-parameters: `tiny` for fast tests; `small` the smallest shape with Qwen3's head size of 128
 * (what the CUDA engine's attention implements), for quick GPU checks (about 27 MB in q8_0, mostly the embedding table); the
 * others exactly those of Qwen3-0.6B and Qwen3-4B.
 */
export const TEST_MODEL_SHAPES: Readonly<Record<TestModelShapeName, TestModelShape>> = {
  tiny: {
    blockCount: 2,
    contextLength: { reranker: 512, embedder: 512, causal: 512 },
    embeddingLength: 64,
    feedForwardLength: 128,
    headCount: 4,
    headCountKv: 2,
    headDim: 16,
  },
  small: {
    blockCount: 2,
    contextLength: { reranker: 2048, embedder: 2048, causal: 2048 },
    embeddingLength: 128,
    feedForwardLength: 384,
    headCount: 4,
    headCountKv: 2,
    headDim: 128,
  },
  '0.6b': {
    blockCount: 28,
    contextLength: { reranker: 40960, embedder: 32768, causal: 40960 },
    embeddingLength: 1024,
    feedForwardLength: 3072,
    headCount: 16,
    headCountKv: 8,
    headDim: 128,
  },
  '4b': {
    blockCount: 36,
    contextLength: { reranker: 40960, embedder: 40960, causal: 40960 },
    embeddingLength: 2560,
    feedForwardLength: 9728,
    headCount: 32,
    headCountKv: 8,
    headDim: 128,
  },
};

export const DEFAULT_SEEDS: Readonly<Record<TestModelKind, number>> = { reranker: 1, embedder: 2, causal: 3 };

/** llama.cpp's enum llama_pooling_type. */
const POOLING_LAST = 3;
const POOLING_RANK = 4;

export const QWEN3_VOCAB_SIZE = 151936;
export const QWEN3_EOS_ID = 151643;
/** Token ids of "yes" and "no", whose embedding rows form the reranker's classifier. */
export const QWEN3_YES_ID = 9693;
export const QWEN3_NO_ID = 2152;

/** llama.cpp's llama_token_type values used by the Qwen vocabulary. */
export enum TokenType {
  NORMAL = 1,
  CONTROL = 3,
  USER_DEFINED = 4,
}

/**
 * Qwen3's added tokens that the Qwen2 vocabulary file only has as `[PADn]` placeholders (from Qwen3's
 * tokenizer_config.json: special tokens are CONTROL, the others USER_DEFINED).
 */
export const QWEN3_ADDED_TOKENS: ReadonlyArray<{ id: number; text: string; type: TokenType }> = [
  ...[
    '<|object_ref_start|>',
    '<|object_ref_end|>',
    '<|box_start|>',
    '<|box_end|>',
    '<|quad_start|>',
    '<|quad_end|>',
    '<|vision_start|>',
    '<|vision_end|>',
    '<|vision_pad|>',
    '<|image_pad|>',
    '<|video_pad|>',
  ].map((text, i) => ({ id: 151646 + i, text, type: TokenType.CONTROL })),
  ...[
    '<tool_call>',
    '</tool_call>',
    '<|fim_prefix|>',
    '<|fim_middle|>',
    '<|fim_suffix|>',
    '<|fim_pad|>',
    '<|repo_name|>',
    '<|file_sep|>',
    '<tool_response>',
    '</tool_response>',
    '<think>',
    '</think>',
  ].map((text, i) => ({ id: 151657 + i, text, type: TokenType.USER_DEFINED })),
];

/** The prompt llama.cpp formats rerank pairs with (`tokenizer.chat_template.rerank`), as in Qwen3-Reranker. */
export const QWEN3_RERANK_TEMPLATE =
  '<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the Instruct ' +
  'provided. Note that the answer can only be "yes" or "no".<|im_end|>\n<|im_start|>user\n<Instruct>: Given a web ' +
  'search query, retrieve relevant passages that answer the query\n<Query>: {query}\n<Document>: {document}' +
  '<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n';

// ---------------------------------------------------------------------------------------------------------------------
// Tokenizer data
// ---------------------------------------------------------------------------------------------------------------------

export interface QwenVocab {
  tokens: readonly string[];
  tokenTypes: Int32Array;
  merges: readonly string[];
  model: string;
  pre: string;
  eosId: number;
  bosId: number;
  paddingId: number;
}

/** Repository root: this file lives in lib/models (vitest) or dist/models (compiled). */
function repoRoot(): string {
  return path.resolve(__dirname, '..', '..');
}

/** The Qwen2 vocabulary shipped with the package, brotli-compressed (scripts/pack-vocab.mjs makes it from deps/). */
export const SHIPPED_VOCAB = path.join(repoRoot(), 'vocab', 'ggml-vocab-qwen2.gguf.br');

/**
 * Where the Qwen tokenizer is read from: $QRANK_VOCAB_GGUF, else the vocabulary the package ships,
 * unpacked once into the temporary directory (an installed package has no llama.cpp source tree).
 */
export function defaultVocabPath(): string {
  return process.env.QRANK_VOCAB_GGUF || unpackShippedVocab();
}

function unpackShippedVocab(): string {
  if (!fs.existsSync(SHIPPED_VOCAB)) {
    throw new Error(`the Qwen tokenizer ${SHIPPED_VOCAB} is missing from this installation; reinstall qrank, or name a GGUF that has the Qwen2/Qwen3 vocabulary with QRANK_VOCAB_GGUF`);
  }
  const packed = fs.readFileSync(SHIPPED_VOCAB);
  const digest = createHash('sha256').update(packed).digest('hex').slice(0, 16);
  const out = path.join(os.tmpdir(), `qrank-vocab-qwen2-${digest}.gguf`);
  if (!fs.existsSync(out)) {
    const tmp = `${out}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, zlib.brotliDecompressSync(packed));
    fs.renameSync(tmp, out); // atomic: concurrent processes never read half a file
  }
  return out;
}

const vocabCache = new Map<string, QwenVocab>();

/**
 * Reads the Qwen2 vocabulary GGUF and turns it into Qwen3's (same BPE; the added tokens 151646..151668 filled in).
 * Cached per path; treat the result as read-only.
 */
export function loadQwen3Vocab(vocabPath: string = defaultVocabPath()): QwenVocab {
  const key = path.resolve(vocabPath);
  const cached = vocabCache.get(key);
  if (cached) return cached;
  if (!fs.existsSync(key)) {
    throw new Error(`Qwen tokenizer file ${key} not found (QRANK_VOCAB_GGUF names a GGUF with the Qwen2/Qwen3 vocabulary)`);
  }
  const file = GGUFFile.open(key);
  try {
    const vocab = vocabFromGGUF(file);
    vocabCache.set(key, vocab);
    return vocab;
  } finally {
    file.close();
  }
}

function vocabFromGGUF(file: GGUFFile): QwenVocab {
  const where = file.path;
  const tokensKV = file.getArray('tokenizer.ggml.tokens');
  const typesKV = file.getArray('tokenizer.ggml.token_type');
  const mergesKV = file.getArray('tokenizer.ggml.merges');
  if (tokensKV?.itemType !== GGUFValueType.STRING || typesKV?.itemType !== GGUFValueType.INT32) {
    throw new Error(`${where}: missing tokenizer.ggml.tokens / token_type`);
  }
  if (mergesKV?.itemType !== GGUFValueType.STRING) throw new Error(`${where}: missing tokenizer.ggml.merges`);
  const tokens = [...(tokensKV.value as string[])];
  const tokenTypes = Int32Array.from(typesKV.value as Int32Array);
  if (tokens.length !== QWEN3_VOCAB_SIZE || tokenTypes.length !== QWEN3_VOCAB_SIZE) {
    throw new Error(`${where}: expected ${QWEN3_VOCAB_SIZE} tokens, found ${tokens.length}`);
  }
  if (tokens[QWEN3_YES_ID] !== 'yes' || tokens[QWEN3_NO_ID] !== 'no' || tokens[QWEN3_EOS_ID] !== '<|endoftext|>') {
    throw new Error(`${where}: not the Qwen2/Qwen3 vocabulary`);
  }
  for (const t of QWEN3_ADDED_TOKENS) {
    tokens[t.id] = t.text;
    tokenTypes[t.id] = t.type;
  }
  return {
    tokens,
    tokenTypes,
    merges: mergesKV.value as string[],
    model: file.getString('tokenizer.ggml.model') ?? 'gpt2',
    pre: file.getString('tokenizer.ggml.pre') ?? 'qwen2',
    eosId: file.getNumber('tokenizer.ggml.eos_token_id') ?? QWEN3_EOS_ID,
    bosId: file.getNumber('tokenizer.ggml.bos_token_id') ?? QWEN3_EOS_ID,
    paddingId: file.getNumber('tokenizer.ggml.padding_token_id') ?? QWEN3_EOS_ID,
  };
}

// ---------------------------------------------------------------------------------------------------------------------
// Random numbers
// ---------------------------------------------------------------------------------------------------------------------

/** FNV-1a over the UTF-16 code units of `s` (tensor names are ASCII). */
function fnv1a32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** splitmix32 sequence, used only to expand seeds into xoshiro state. */
function splitmix32(seed: number): () => number {
  let a = seed | 0;
  return () => {
    a = (a + 0x9e3779b9) | 0;
    let t = a ^ (a >>> 16);
    t = Math.imul(t, 0x21f0aaad);
    t ^= t >>> 15;
    t = Math.imul(t, 0x735a2d97);
    return (t ^ (t >>> 15)) >>> 0;
  };
}

/**
 * Ziggurat tables for N(0,1) (Marsaglia & Tsang, "The Ziggurat Method for Generating Random Variables", 2000;
 * 128 layers). A sample takes one 32-bit draw and, ~97% of the time, one multiply: ~3x faster than Box-Muller or
 * the polar method, which matters at 600M (0.6b) to 4G (4b) samples per model.
 */
const ZIG_R = 3.442619855899; // start of the tail
const ZIG_K = new Int32Array(128); // acceptance thresholds for the fast path, scaled to 2^31
const ZIG_W = new Float64Array(128); // layer widths / 2^31
const ZIG_F = new Float64Array(128); // density at the layer edges
(function buildZigguratTables() {
  const m1 = 2 ** 31;
  const vn = 9.91256303526217e-3; // area of each layer
  let dn = ZIG_R;
  let tn = dn;
  const q = vn / Math.exp(-0.5 * dn * dn);
  ZIG_K[0] = Math.floor((dn / q) * m1);
  ZIG_K[1] = 0;
  ZIG_W[0] = q / m1;
  ZIG_W[127] = dn / m1;
  ZIG_F[0] = 1;
  ZIG_F[127] = Math.exp(-0.5 * dn * dn);
  for (let i = 126; i >= 1; i--) {
    dn = Math.sqrt(-2 * Math.log(vn / dn + Math.exp(-0.5 * dn * dn)));
    ZIG_K[i + 1] = Math.floor((dn / tn) * m1);
    tn = dn;
    ZIG_F[i] = Math.exp(-0.5 * dn * dn);
    ZIG_W[i] = dn / m1;
  }
})();

/**
 * Seedable xoshiro128** generator with ziggurat normal deviates. Half of the 128-bit state comes from the seed and
 * half from the stream name, so streams of different tensors (or seeds) never share a state. Raw 32-bit outputs are
 * produced in blocks by a tight loop and consumed from a buffer, so the sequence of values is the same however
 * callers chunk their requests.
 */
export class Rng {
  private readonly s = new Int32Array(4);
  private readonly block = new Int32Array(4096);
  private pos = this.block.length;

  constructor(seed: number, stream: string) {
    const fromSeed = splitmix32(seed);
    const fromName = splitmix32(fnv1a32(stream));
    this.s[0] = fromSeed();
    this.s[1] = fromSeed();
    this.s[2] = fromName();
    this.s[3] = fromName() | 1; // never the all-zero state
    // The first outputs depend on s[1] alone (i.e. on the seed, not the name): skip them.
    this.refill();
    this.pos = 16;
  }

  /** Refills the block with xoshiro128** outputs (state kept in locals: this loop is the generator's hot path). */
  private refill(): void {
    const st = this.s;
    const out = this.block;
    let s0 = st[0], s1 = st[1], s2 = st[2], s3 = st[3];
    for (let i = 0; i < out.length; i++) {
      const x = Math.imul(s1, 5);
      out[i] = Math.imul((x << 7) | (x >>> 25), 9);
      const t = s1 << 9;
      s2 ^= s0;
      s3 ^= s1;
      s1 ^= s2;
      s0 ^= s3;
      s2 ^= t;
      s3 = (s3 << 11) | (s3 >>> 21);
    }
    st[0] = s0; st[1] = s1; st[2] = s2; st[3] = s3;
    this.pos = 0;
  }

  /** The next 32 random bits as a signed integer. */
  nextInt32(): number {
    if (this.pos === this.block.length) this.refill();
    return this.block[this.pos++];
  }

  /** The next 32 random bits as an unsigned integer. */
  nextU32(): number {
    return this.nextInt32() >>> 0;
  }

  /** A uniform number in the open interval (0, 1). */
  nextUnit(): number {
    return ((this.nextInt32() >>> 0) + 0.5) * 2 ** -32;
  }

  /** Fills `out` with N(mean, std²) samples. */
  fillNormal(out: Float32Array, mean: number, std: number): void {
    for (let i = 0; i < out.length; i++) {
      // Low 7 bits pick the layer, the other 25 (signed) the position, so the two are independent.
      const r = this.nextInt32();
      const hz = r & -128;
      const iz = r & 127;
      const k = ZIG_K[iz];
      out[i] = mean + std * (hz < k && -hz < k ? hz * ZIG_W[iz] : this.zigguratSlow(hz, iz));
    }
  }

  /** The ziggurat's rare cases: a point in a layer's wedge, or in the tail beyond ZIG_R. */
  private zigguratSlow(hz: number, iz: number): number {
    for (;;) {
      if (iz === 0) {
        let x: number, y: number;
        do {
          x = -Math.log(this.nextUnit()) / ZIG_R;
          y = -Math.log(this.nextUnit());
        } while (y + y < x * x);
        return hz > 0 ? ZIG_R + x : -ZIG_R - x;
      }
      const x = hz * ZIG_W[iz];
      if (ZIG_F[iz] + this.nextUnit() * (ZIG_F[iz - 1] - ZIG_F[iz]) < Math.exp(-0.5 * x * x)) return x;
      const r = this.nextInt32();
      hz = r & -128;
      iz = r & 127;
      if (hz < ZIG_K[iz] && -hz < ZIG_K[iz]) return hz * ZIG_W[iz];
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// Model layout
// ---------------------------------------------------------------------------------------------------------------------

/**
 * Weight scales, chosen so that random models still give input-dependent, well-spread outputs. Checked with a NumPy
 * reference forward pass (which agrees with llama.cpp's llama-embedding to 3 decimals) on 60 template-formatted
 * random query/document pairs.
 *
 * - Every matrix's input is RMS-normalised, so N(0, 1/fan_in) weights keep activations at unit RMS.
 * - Norm gains are g·(1 + N(0, 0.1)): distinct per channel, scale g.
 * - Rerank prompts all end with the same tokens ("</think>\n\n"), so the last position's hidden state (the one that
 *   is pooled) starts as the same embedding row for every input; only attention brings the query and document in.
 *   With N(0,1) embeddings and diffuse attention that constant part dominated: p(yes) ranged over 0.07..0.16 and
 *   LAST-pooled embeddings of unrelated texts had cosine similarity ~0.98. Two changes fix that: small embeddings
 *   (std 0.1, so attention and FFN outputs dominate the residual stream; RMS norms make the overall scale
 *   irrelevant) and q/k-norm gains of 2.5 (attention logits with std ~6: sharp, content-dependent attention).
 * - The reranker's logits are h·e_yes and h·e_no, where e_* are token_embd rows (they must stay those rows) and h is
 *   the final normalised hidden state times the output-norm gain. For unit-RMS h their difference has std
 *   sqrt(2·n_embd)·EMBEDDING_STD·gain, so the gain is OUTPUT_LOGIT_SCALE / (EMBEDDING_STD·sqrt(n_embd)), which
 *   makes the scale independent of the shape and also keeps the causal model's vocabulary logits moderate.
 *
 * Result with the default seed: tiny reranker p(yes) 0.01..0.71 (10th-90th percentile 0.04..0.59; the centre
 * depends on the seed, medians 0.14..0.69 over seeds 1-5), 0.6b reranker 0.02..0.99 (median 0.51); tiny embedder
 * cosine similarities between unrelated texts -0.33..0.91 (mean 0.24).
 */
const EMBEDDING_STD = 0.1;
const NORM_GAIN_REL_STD = 0.1;
const QK_NORM_GAIN = 2.5;
const OUTPUT_LOGIT_SCALE = 1.35;

/** How a tensor's values are produced. */
export type TensorInit =
  | { kind: 'normal'; mean: number; std: number }
  /** Copies of rows of an earlier tensor (ne0 = row length), e.g. the reranker's yes/no classifier. */
  | { kind: 'rows'; source: string; rows: number[]; scale?: number };

export interface TestModelTensor {
  name: string;
  /** ne0 first. */
  dims: number[];
  type: GGMLType;
  init: TensorInit;
}

const GGML_TYPE_OF: Readonly<Record<TestModelType, GGMLType>> = {
  f32: GGMLType.F32,
  f16: GGMLType.F16,
  bf16: GGMLType.BF16,
  q8_0: GGMLType.Q8_0,
};

const FILE_TYPE_OF: Readonly<Record<TestModelType, LlamaFileType>> = {
  f32: LlamaFileType.ALL_F32,
  f16: LlamaFileType.MOSTLY_F16,
  bf16: LlamaFileType.MOSTLY_BF16,
  q8_0: LlamaFileType.MOSTLY_Q8_0,
};

export function defaultTestModelType(shape: TestModelShapeName): TestModelType {
  return shape === 'tiny' ? 'f32' : 'f16';
}

/**
 * How real conversions differ, for files that must exercise each case:
 *  - `tied` (causal): no `output.weight`; the vocabulary head is `token_embd.weight` (Qwen3-0.6B ties them);
 *  - `headScale` (reranker): the 2-row head scaled, as confident as a trained model: P(yes) then saturates to
 *    exactly 0 or 1 in float32 for many pairs, while the logit stays finite;
 *  - `eos`: the EOS id the file declares, `<|endoftext|>` (newer conversions) or `<|im_end|>` (many Qwen3 GGUFs);
 *  - `addEosToken`: `tokenizer.ggml.add_eos_token`, which some conversions set.
 */
export interface TestModelVariant {
  tied?: boolean;
  headScale?: number;
  eos?: 'endoftext' | 'im_end';
  addEosToken?: boolean;
}

/** The tensors of a synthetic model, in file order. Norms (1-D) are always F32, as llama.cpp's converter does. */
export function testModelTensors(kind: TestModelKind, shapeName: TestModelShapeName, type: TestModelType, variant: TestModelVariant = {}): TestModelTensor[] {
  const s = TEST_MODEL_SHAPES[shapeName];
  const E = s.embeddingLength;
  const V = QWEN3_VOCAB_SIZE;
  const F = s.feedForwardLength;
  const qDim = s.headCount * s.headDim;
  const kvDim = s.headCountKv * s.headDim;
  const wType = GGML_TYPE_OF[type];

  const norm = (name: string, n: number, gain = 1): TestModelTensor => ({
    name,
    dims: [n],
    type: GGMLType.F32,
    init: { kind: 'normal', mean: gain, std: NORM_GAIN_REL_STD * gain },
  });
  // dims = [fan_in, fan_out]: ggml_mul_mat(W, x) contracts x with W's ne0.
  const linear = (name: string, fanIn: number, fanOut: number): TestModelTensor => ({
    name,
    dims: [fanIn, fanOut],
    type: wType,
    init: { kind: 'normal', mean: 0, std: 1 / Math.sqrt(fanIn) },
  });
  const embedding = (name: string): TestModelTensor => ({
    name,
    dims: [E, V],
    type: wType,
    init: { kind: 'normal', mean: 0, std: EMBEDDING_STD },
  });

  const tensors: TestModelTensor[] = [embedding('token_embd.weight')];
  for (let i = 0; i < s.blockCount; i++) {
    const b = `blk.${i}`;
    tensors.push(
      norm(`${b}.attn_norm.weight`, E),
      linear(`${b}.attn_q.weight`, E, qDim),
      linear(`${b}.attn_k.weight`, E, kvDim),
      linear(`${b}.attn_v.weight`, E, kvDim),
      linear(`${b}.attn_output.weight`, qDim, E),
      norm(`${b}.attn_q_norm.weight`, s.headDim, QK_NORM_GAIN),
      norm(`${b}.attn_k_norm.weight`, s.headDim, QK_NORM_GAIN),
      norm(`${b}.ffn_norm.weight`, E),
      linear(`${b}.ffn_gate.weight`, E, F),
      linear(`${b}.ffn_up.weight`, E, F),
      linear(`${b}.ffn_down.weight`, F, E),
    );
  }
  tensors.push(norm('output_norm.weight', E, OUTPUT_LOGIT_SCALE / (EMBEDDING_STD * Math.sqrt(E))));
  if (kind === 'causal' && !variant.tied) tensors.push(embedding('output.weight'));
  if (kind === 'reranker') {
    tensors.push({
      name: 'cls.output.weight',
      dims: [E, 2],
      type: wType,
      init: { kind: 'rows', source: 'token_embd.weight', rows: [QWEN3_YES_ID, QWEN3_NO_ID], scale: variant.headScale },
    });
  }
  return tensors;
}

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

/** Qwen3's chat end token, which many Qwen3 GGUFs declare as EOS. */
export const QWEN3_IM_END_ID = 151645;

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
