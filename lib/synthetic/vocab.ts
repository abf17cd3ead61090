/**
 * The Qwen3 vocabulary of the synthetic models: token ids the recipes rely on, the added tokens
 * Qwen3 has and llama.cpp's bundled vocabulary lacks, and the shipped vocabulary file.
 * Part of the synthetic models (lib/synthetic/): deterministic Qwen3 GGUFs with the real tokenizer,
 * the real tensor layout and random weights, for tests, benchmarks and the demo.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { createHash } from 'node:crypto';
import { GGUFValueType } from '../gguf/format';
import { GGUFFile } from '../gguf/reader';

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

/** Qwen3's chat end token, which many Qwen3 GGUFs declare as EOS. */
export const QWEN3_IM_END_ID = 151645;
