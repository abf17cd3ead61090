/**
 * The tensor plan of the synthetic models: the shapes (tiny to 4b), kinds and weight types, and for
 * each tensor its name, dimensions and how its values are drawn.
 * Part of the synthetic models (lib/synthetic/): deterministic Qwen3 GGUFs with the real tokenizer,
 * the real tensor layout and random weights, for tests, benchmarks and the demo.
 */
import { QWEN3_NO_ID, QWEN3_VOCAB_SIZE, QWEN3_YES_ID } from './vocab';
import { GGMLType, LlamaFileType } from '../gguf/format';

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

export const FILE_TYPE_OF: Readonly<Record<TestModelType, LlamaFileType>> = {
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

