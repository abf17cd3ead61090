/**
 * What Reranker and Embedder share: loading with progress and abort, one pending-call path that
 * turns native callbacks into promises (abort, close and error mapping in one place), and close().
 */
import { resolve } from 'node:path';
import { binding, type CudaStatus, type NativeCallback, type NativeModelDescription, type NativeModel, type NativeModelInfo, type NativeOutcome, type NativeStats } from './native';
import { QrankError, callerStack, toQrankError } from './errors';
import { loadOptionsSchema, parseOptions } from './validate';

export type Device = 'auto' | 'cpu' | 'cuda';

export interface LoadOptions {
  /** Path to a GGUF file. */
  model: string;
  /**
   * 'auto' (default): the CUDA engine when this build has it, a GPU is present and it implements the
   * architecture (Qwen3), else the CPU. 'cuda' fails with UNSUPPORTED and the reason where it cannot
   * run. `info.backend` says which engine runs.
   */
  device?: Device;
  /** Which GPU, for the CUDA engine (default 0). */
  deviceIndex?: number;
  /** Tokens per sequence; longer documents are truncated. Default: the model's context length. */
  maxLength?: number;
  /** Token budget of one batch: concurrent calls are packed up to it. */
  batchTokens?: number;
  /** Sequences per batch (the engine's maximum is in info.limits). */
  maxSequences?: number;
  /** CPU threads (default: all cores). */
  threads?: number;
  /** Aborts the load. */
  signal?: AbortSignal;
  /** Load progress in [0, 1]. */
  onProgress?: (progress: number) => void;
}

export type ModelInfo = NativeModelInfo;
export type ModelStats = NativeStats;
export type { CudaStatus };

export type ModelDescription = NativeModelDescription;

/**
 * What a GGUF is without loading it: its facts (as `info` gives them after a load), and for each
 * role the recipe that would serve it (or why none does) and whether the CUDA engine could (`cuda`:
 * true, or the reason). The same decisions a load makes, from the native side.
 */
export async function inspectModel(path: string): Promise<ModelDescription> {
  const stack = callerStack();
  if (typeof path !== 'string' || path.length === 0) throw toQrankError(new QrankError('INVALID_INPUT', 'path must name a GGUF file'), stack);
  try {
    return await binding().inspectModel(resolve(path));
  } catch (err) {
    throw toQrankError(err, stack);
  }
}

/** Whether this build has the CUDA engine and whether it can run on this machine (`reason` says why not). */
export function cudaStatus(): CudaStatus {
  try {
    return binding().cudaStatus();
  } catch (err) {
    throw toQrankError(err, callerStack());
  }
}

export async function loadNative(options: LoadOptions, role: 'reranker' | 'embedder', stack: string): Promise<NativeModel> {
  const o = parseOptions(loadOptionsSchema, options, 'options');
  if (o.signal?.aborted) throw toQrankError(new QrankError('ABORTED', 'model load aborted'), stack);
  let task: ReturnType<ReturnType<typeof binding>['loadModel']>;
  try {
    task = binding().loadModel(
      {
        model: resolve(o.model),
        role,
        device: o.device,
        deviceIndex: o.deviceIndex,
        maxLength: o.maxLength,
        batchTokens: o.batchTokens,
        maxSequences: o.maxSequences,
        threads: o.threads,
      },
      o.onProgress,
    );
  } catch (err) {
    throw toQrankError(err, stack);
  }
  const onAbort = () => task.cancel();
  o.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    return await task.promise;
  } catch (err) {
    throw toQrankError(err, stack);
  } finally {
    o.signal?.removeEventListener('abort', onAbort);
  }
}

export abstract class ModelHandle {
  /** Architecture, context length, pooling, sizes, recipe and backend of the loaded model. */
  readonly info: ModelInfo;
  protected readonly native: NativeModel;
  private closing?: Promise<void>;

  protected constructor(native: NativeModel) {
    this.native = native;
    this.info = Object.freeze(native.info());
  }

  /** Token ids of `text` in the model's vocabulary (special tokens written in the text are parsed). */
  tokenize(text: string): number[] {
    return Array.from(this.guardSync(() => this.native.tokenize(text)));
  }

  countTokens(text: string): number {
    return this.guardSync(() => this.native.tokenize(text)).length;
  }

  /** The text of token ids; an id that is not an integer of the vocabulary is INVALID_INPUT. */
  detokenize(tokens: readonly number[] | Int32Array): string {
    return this.guardSync(() => this.native.detokenize(checkTokenIds(tokens, this.info.vocabSize)));
  }

  /** Batches run, sequences and tokens evaluated, tokens saved by prefix reuse, queue depth. */
  stats(): ModelStats {
    return this.guardSync(() => this.native.stats());
  }

  get closed(): boolean {
    return this.closing !== undefined;
  }

  /** Frees the model. Calls still queued or running reject with CLOSED. */
  close(): Promise<void> {
    this.closing ??= new Promise<void>((done) => this.native.close(() => done()));
    return this.closing;
  }

  protected guardSync<T>(fn: () => T): T {
    if (this.closing) throw new QrankError('CLOSED', 'the model is closed');
    try {
      return fn();
    } catch (err) {
      throw toQrankError(err, callerStack());
    }
  }

  /** Starts a native call and settles once: on its callback, on abort, or on a synchronous throw. */
  protected run(start: (callback: NativeCallback) => number, signal: AbortSignal | undefined, stack: string): Promise<NativeOutcome> {
    return new Promise<NativeOutcome>((resolvePromise, reject) => {
      if (this.closing) return reject(toQrankError(new QrankError('CLOSED', 'the model is closed'), stack));
      if (signal?.aborted) return reject(toQrankError(new QrankError('ABORTED', 'the call was aborted'), stack));
      let settled = false;
      let id = -1;
      const onAbort = () => {
        if (settled) return;
        settled = true;
        if (id >= 0) this.native.cancel(id);
        reject(toQrankError(new QrankError('ABORTED', 'the call was aborted'), stack));
      };
      try {
        id = start((err, result) => {
          signal?.removeEventListener('abort', onAbort);
          if (settled) return;
          settled = true;
          if (err) reject(toQrankError(err, stack));
          else resolvePromise(result as NativeOutcome);
        });
      } catch (err) {
        settled = true;
        return reject(toQrankError(err, stack));
      }
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}

export { callerStack };

/** Token ids as an Int32Array, each checked to be an integer id of the vocabulary (no wrapping: 2^32 + 5 is not 5). */
function checkTokenIds(tokens: readonly number[] | Int32Array, vocabSize: number): Int32Array {
  if (tokens instanceof Int32Array) return tokens;
  if (!Array.isArray(tokens)) throw new QrankError('INVALID_INPUT', 'tokens must be an array of token ids or an Int32Array');
  const out = new Int32Array(tokens.length);
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i];
    if (!Number.isInteger(t) || t < 0 || t >= vocabSize) {
      throw new QrankError('INVALID_INPUT', `tokens[${i}]: ${String(t)} is outside the vocabulary (token ids are integers 0..${vocabSize - 1})`);
    }
    out[i] = t;
  }
  return out;
}
