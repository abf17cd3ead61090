/**
 * VectorIndex: vector recall. Kinds: 'flat' (exact) and 'hnsw' (graph) over USearch (its HNSW graph
 * and SIMD kernels, vectors stored as f32, f16 or i8), 'ivf' and 'ivfpq' over FAISS (inverted lists;
 * they train on the first vectors added, or on an explicit train()). Adds, removes, searches and
 * saves run off the JS thread; searches run concurrently with each other and with an add, and take
 * their parameters (efSearch, nprobe, filter) per call. Filters restrict the search itself, so a
 * filtered search still returns k results when k allowed vectors exist (native/qrank/vector_index.h
 * has the whole contract).
 */
import { z } from 'zod';
import { type NativeIndex, type NativeIndexSpec, binding } from './native';
import { callerStack, invalid, toQrankError } from './errors';
import { parseOptions, positiveInt } from './validate';

export type Metric = 'ip' | 'l2';
export type IndexKind = 'flat' | 'hnsw' | 'ivf' | 'ivfpq';
/** How flat and HNSW indexes hold vectors: f16 is half the memory of f32, i8 a quarter. */
export type VectorStorage = 'f32' | 'f16' | 'i8';
/** Ids: non-negative 64-bit integers. */
export type Ids = BigInt64Array | readonly number[] | readonly bigint[];

export interface IndexOptions {
  dim: number;
  /** 'ip' (inner product; cosine for unit vectors, as qrank's embeddings are) or 'l2' (squared distance). */
  metric?: Metric;
  kind?: IndexKind;
  /** HNSW: graph degree (16; twice that on the base level), construction and default search breadth (128, 64). */
  m?: number;
  efConstruction?: number;
  efSearch?: number;
  /** IVF: cells (default about 4 sqrt(n) of the training set) and cells probed per search (8). */
  nlist?: number;
  nprobe?: number;
  /** IVF-PQ: sub-quantizers (default dim / 4; must divide dim) and bits per code (8). */
  pqM?: number;
  pqBits?: number;
  /**
   * flat and hnsw: 'f32' (default), 'f16' or 'i8' (one symmetric scale per index, learned from the
   * first vectors added or from train()). Scores are computed on the stored vectors.
   */
  storage?: VectorStorage;
  /**
   * 'cpu' (default); 'cuda' (the CUDA build, a GPU): kind 'flat' (storage 'f32' or 'f16') and 'ivf'
   * searched on the GPU, concurrent searches batched; elsewhere UNSUPPORTED with the reason.
   */
  device?: IndexDevice;
}

export type IndexDevice = 'cpu' | 'cuda';

export interface IndexSearchOptions {
  /** Only these ids can be returned. */
  filter?: Ids;
  efSearch?: number;
  nprobe?: number;
}

/** One query's results, best first: inner products (higher is closer) or squared L2 (lower is closer). */
export interface IndexHits {
  ids: BigInt64Array;
  scores: Float32Array;
}

/** The most results one query of a search may ask for. */
export const MAX_SEARCH_K = 100_000;

const optionalPositive = positiveInt.optional();
const indexOptionsSchema = z
  .object({
    dim: positiveInt.max(65536),
    metric: z.enum(['ip', 'l2']).default('ip'),
    kind: z.enum(['flat', 'hnsw', 'ivf', 'ivfpq']).default('flat'),
    m: positiveInt.min(2).max(512).optional(),
    efConstruction: optionalPositive,
    efSearch: optionalPositive,
    nlist: optionalPositive,
    nprobe: optionalPositive,
    pqM: optionalPositive,
    pqBits: positiveInt.max(16).optional(),
    storage: z.enum(['f32', 'f16', 'i8']).default('f32'),
    device: z.enum(['cpu', 'cuda']).default('cpu'),
  })
  .strict();
const loadOptionsSchema = z.object({ device: z.enum(['cpu', 'cuda']).default('cpu') }).strict();
const searchOptionsSchema = z
  .object({ filter: z.any().optional(), efSearch: optionalPositive, nprobe: optionalPositive })
  .strict();

/** Promise over a node-style native call, with the caller's stack on failure. */
function call<T>(stack: string, start: (cb: (err: Error | null, value?: T) => void) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    try {
      start((err, value) => (err ? reject(toQrankError(err, stack)) : resolve(value as T)));
    } catch (err) {
      reject(toQrankError(err, stack));
    }
  });
}

export function toIds(ids: Ids, name = 'ids'): BigInt64Array {
  if (ids instanceof BigInt64Array) return ids;
  if (!Array.isArray(ids)) throw invalid(`${name} must be a BigInt64Array or an array of integers`);
  const out = new BigInt64Array(ids.length);
  ids.forEach((id: number | bigint, i: number) => {
    if (typeof id === 'bigint') out[i] = id;
    else if (Number.isSafeInteger(id)) out[i] = BigInt(id);
    else throw invalid(`${name}[${i}] must be an integer, got ${String(id)}`);
  });
  return out;
}

function toVectors(vectors: Float32Array | readonly Float32Array[], dim: number, name: string): Float32Array {
  if (vectors instanceof Float32Array) return vectors;
  if (!Array.isArray(vectors)) throw invalid(`${name} must be a Float32Array or an array of Float32Array`);
  const out = new Float32Array(vectors.length * dim);
  vectors.forEach((v: Float32Array, i: number) => {
    if (!(v instanceof Float32Array) || v.length !== dim) throw invalid(`${name}[${i}] must be a Float32Array of ${dim} values`);
    out.set(v, i * dim);
  });
  return out;
}

export class VectorIndex {
  private constructor(private readonly native: NativeIndex) {}

  static create(options: IndexOptions): VectorIndex {
    const o = parseOptions(indexOptionsSchema, options, 'options');
    try {
      return new VectorIndex(binding().createIndex(o));
    } catch (err) {
      throw toQrankError(err, callerStack());
    }
  }

  /** A saved index (from either device), to run on `device` (default 'cpu'). */
  static async load(path: string, options: { device?: IndexDevice } = {}): Promise<VectorIndex> {
    const stack = callerStack();
    if (typeof path !== 'string' || path.length === 0) throw invalid('path must be a non-empty string');
    const { device } = parseOptions(loadOptionsSchema, options, 'options');
    return new VectorIndex(await call<NativeIndex>(stack, (cb) => binding().loadIndex(path, device, cb)));
  }

  get size(): number {
    return this.native.size();
  }

  get trained(): boolean {
    return this.native.trained();
  }

  /** Every id the index holds, in no particular order. */
  ids(): BigInt64Array {
    return this.native.ids();
  }

  /** The index's parameters (IVF's nlist as chosen at training). */
  get spec(): NativeIndexSpec {
    return this.native.spec();
  }

  /** Adds vectors (n x dim, row-major, or one Float32Array per vector) under `ids`. */
  async add(ids: Ids, vectors: Float32Array | readonly Float32Array[]): Promise<void> {
    const stack = callerStack();
    const x = toVectors(vectors, this.spec.dim, 'vectors');
    const i = toIds(ids);
    await call<void>(stack, (cb) => this.native.add(i, x, cb));
  }

  /** IVF kinds: learns the cells; i8 storage: its scale (otherwise the first add() does). */
  async train(vectors: Float32Array | readonly Float32Array[]): Promise<void> {
    const stack = callerStack();
    const x = toVectors(vectors, this.spec.dim, 'vectors');
    await call<void>(stack, (cb) => this.native.train(x, cb));
  }

  /** The k nearest vectors of each query, best first (fewer when fewer exist or pass the filter). */
  async search(queries: Float32Array | readonly Float32Array[], k: number, options: IndexSearchOptions = {}): Promise<IndexHits[]> {
    const stack = callerStack();
    if (!Number.isInteger(k) || k < 1 || k > MAX_SEARCH_K) throw invalid(`k must be an integer between 1 and ${MAX_SEARCH_K}`);
    const o = parseOptions(searchOptionsSchema, options, 'options');
    const q = toVectors(queries, this.spec.dim, 'queries');
    const allow = o.filter === undefined ? null : toIds(o.filter as Ids, 'options.filter');
    const r = await call<{ ids: BigInt64Array; scores: Float32Array }>(stack, (cb) =>
      this.native.search(q, k, o.efSearch ?? 0, o.nprobe ?? 0, allow, cb),
    );
    const hits: IndexHits[] = [];
    for (let row = 0; row < q.length / this.spec.dim; row++) {
      let n = 0;
      while (n < k && r.ids[row * k + n] >= 0n) n++;
      hits.push({ ids: r.ids.slice(row * k, row * k + n), scores: r.scores.slice(row * k, row * k + n) });
    }
    return hits;
  }

  /** Removes ids; fails (removing nothing) when one is unknown. */
  async remove(ids: Ids): Promise<void> {
    const stack = callerStack();
    const i = toIds(ids);
    await call<void>(stack, (cb) => this.native.remove(i, cb));
  }

  /** Atomic: a temporary file beside `path`, fsynced, then renamed over it. */
  async save(path: string): Promise<void> {
    const stack = callerStack();
    if (typeof path !== 'string' || path.length === 0) throw invalid('path must be a non-empty string');
    await call<void>(stack, (cb) => this.native.save(path, cb));
  }
}
