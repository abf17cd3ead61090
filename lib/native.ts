/**
 * The native addon, described once: every function it exports and every object it returns, typed
 * here and nowhere else (addon/addon.cc registers them). `binding()` loads it: prebuilds/<platform>-
 * <arch>/ first, then build/Release (node-gyp-build). Its classes are not exported: models and
 * indexes come from loadModel, createIndex and loadIndex only.
 * A prebuild targets x86-64-v3 (AVX2, FMA, F16C); on an older x86 CPU it would die with SIGILL,
 * so the CPU is checked first and the caller gets an error that says what to do instead.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { QrankError } from './errors';

export interface NativeOutcome {
  values: Float32Array;
  /** Scores only: the relevance logit of each pair (values = sigmoid(logits)). */
  logits?: Float32Array;
  width: number;
  tokenCounts: Int32Array;
  truncated: number;
}

export type NativeCallback = (err: Error | null, result?: NativeOutcome) => void;

export interface NativeModelInfo {
  path: string;
  architecture: string;
  name: string;
  description: string;
  pooling: string;
  contextLength: number;
  embeddingLength: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  ffnLength: number;
  vocabSize: number;
  /** The type holding most of the weight bytes: f32, f16, bf16, q8_0, ... */
  weightType: string;
  parameters: number;
  sizeBytes: number;
  classLabels: string[];
  causal: boolean;
  synthetic: boolean;
  recipe: string;
  /** The engine that runs the network: llama.cpp-cpu, llama.cpp-cuda (ggml-cuda) or cuda (qrank's own). */
  backend: string;
  maxLength: number;
  defaultInstruction: string;
  /** What the engine uses and accepts: batch token budget and sequences per batch. */
  limits: NativeEngineLimits;
}

export interface NativeEngineLimits {
  batchTokens: number;
  maxSequences: number;
  maxBatchTokens: number;
  maxSequencesLimit: number;
}

/** What a GGUF file is, from its metadata alone: its facts and which recipe serves each role. */
export interface NativeModelDescription extends Omit<NativeModelInfo, 'recipe' | 'backend' | 'maxLength' | 'defaultInstruction' | 'limits'> {
  tensors: number;
  roles: Record<'reranker' | 'embedder', { recipe: string; cuda: true | string } | { error: string }>;
}

/** Whether this build has the CUDA engine and whether it can run here; `reason` says why not. */
export interface CudaStatus {
  built: boolean;
  devices: number;
  deviceName: string;
  computeCapability: number;
  reason: string;
}

export interface NativeStats {
  batches: number;
  sequences: number;
  tokensEvaluated: number;
  tokensReused: number;
  queuedCalls: number;
  completedCalls: number;
  /** Distinct rerank queries tokenised: once per call whatever its number of documents. */
  queryPrompts: number;
  /** Memory the engine holds on its GPU, now and at its peak (0 on the CPU). */
  deviceBytes: number;
  devicePeakBytes: number;
}

export interface NativeModel {
  /** maxInputTokens 0: no limit of the caller's; truncate false: refuse what would be cut (INPUT_TOO_LONG). */
  score(queries: string[], documents: string[], instruction: string, maxInputTokens: number, truncate: boolean, callback: NativeCallback): number;
  embed(texts: string[], kind: 'query' | 'document', instruction: string, dimensions: number, maxInputTokens: number, truncate: boolean, callback: NativeCallback): number;
  cancel(id: number): void;
  tokenize(text: string): Int32Array;
  detokenize(tokens: Int32Array): string;
  formatPair(query: string, document: string, instruction: string): { text: string; tokens: Int32Array };
  formatText(text: string, kind: 'query' | 'document', instruction: string): { text: string; tokens: Int32Array };
  info(): NativeModelInfo;
  stats(): NativeStats;
  close(callback: (err: Error | null) => void): void;
}

export interface NativeLoadOptions {
  model: string;
  role: 'reranker' | 'embedder';
  device: 'auto' | 'cpu' | 'cuda';
  deviceIndex?: number;
  maxLength?: number;
  batchTokens?: number;
  maxSequences?: number;
  threads?: number;
}

/** An index's parameters, as createIndex takes them and spec() returns them (every field set). */
export interface NativeIndexSpec {
  dim: number;
  metric: 'ip' | 'l2';
  kind: 'flat' | 'hnsw' | 'ivf' | 'ivfpq';
  m: number;
  efConstruction: number;
  efSearch: number;
  nlist: number;
  nprobe: number;
  pqM: number;
  pqBits: number;
  storage: 'f32' | 'f16' | 'i8';
  device: 'cpu' | 'cuda';
}

export type NativeDone = (err: Error | null) => void;

export interface NativeIndex {
  add(ids: BigInt64Array, vectors: Float32Array, cb: NativeDone): void;
  train(vectors: Float32Array, cb: NativeDone): void;
  search(queries: Float32Array, k: number, efSearch: number, nprobe: number, allow: BigInt64Array | null,
    cb: (err: Error | null, r?: { ids: BigInt64Array; scores: Float32Array }) => void): void;
  remove(ids: BigInt64Array, cb: NativeDone): void;
  save(path: string, cb: NativeDone): void;
  size(): number;
  trained(): boolean;
  spec(): NativeIndexSpec;
  ids(): BigInt64Array;
}

export interface NativeBinding {
  loadModel(options: NativeLoadOptions, onProgress?: (p: number) => void): { promise: Promise<NativeModel>; cancel(): void };
  inspectModel(path: string): Promise<NativeModelDescription>;
  /** Fields left out take the native defaults. */
  createIndex(spec: Partial<NativeIndexSpec> & { dim: number }): NativeIndex;
  /** A saved index, to run on `device`. */
  loadIndex(path: string, device: 'cpu' | 'cuda', cb: (err: Error | null, index?: NativeIndex) => void): void;
  cudaStatus(): CudaStatus;
  errorCodes(): string[];
}

const REQUIRED_X86_FLAGS = ['avx2', 'fma', 'f16c'];

function checkCpu(): void {
  if (process.arch !== 'x64' || process.platform !== 'linux' || process.env.QRANK_SKIP_CPU_CHECK) return;
  let flags: string[];
  try {
    const line = readFileSync('/proc/cpuinfo', 'utf8').split('\n').find((l) => l.startsWith('flags'));
    flags = line ? line.split(':')[1].trim().split(/\s+/) : [];
  } catch {
    return; // no /proc: nothing to check against
  }
  const missing = REQUIRED_X86_FLAGS.filter((f) => !flags.includes(f));
  if (missing.length > 0) {
    throw new QrankError(
      'UNSUPPORTED',
      `this CPU lacks ${missing.join(', ')}, which qrank's build targets (x86-64-v3); rebuild from source with ` +
        `QRANK_CMAKE_ARGS="-DGGML_AVX2=OFF -DGGML_FMA=OFF -DGGML_F16C=OFF" npm rebuild qrank`,
    );
  }
}

let cached: NativeBinding | undefined;

export function binding(): NativeBinding {
  if (cached) return cached;
  checkCpu();
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const load = require('node-gyp-build') as (dir: string) => NativeBinding;
    cached = load(join(__dirname, '..'));
  } catch (err) {
    throw new QrankError(
      'NATIVE_LOAD_FAILED',
      `qrank's native addon could not be loaded (${(err as Error).message}); run 'npm rebuild qrank' to build it from source`,
      { cause: err },
    );
  }
  return cached;
}
