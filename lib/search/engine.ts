/**
 * SearchEngine: the two stages the shop runs. Recall finds candidates two ways, with the filter
 * applied inside each: the query (never translated) embedded by Qwen3-Embedding against the
 * collection's vector index, and the query's terms against its keyword index (BM25, see
 * keyword-index.ts), searched while the query is embedded. `recall: 'hybrid'` (the default when the
 * collection has a keyword index) fuses the two lists by reciprocal rank fusion (fusion.ts) into the
 * top recallK candidates; 'vector' or 'keyword' uses one list; a query without keyword terms
 * ("!!!") is recalled by vector. Qwen3-Reranker scores those candidates, and the final score can
 * blend in business signals (numeric fields of the mapping, at most MAX_FUSION_SIGNALS). Query
 * embeddings and rerank scores are cached in LRUs bounded by bytes (keys included: they are hashes)
 * under keys that include the model, the instruction and the exact text, so a changed product text
 * is never served an old score.
 *
 * Collections live in a store (store.ts): a data directory (`dir`, the embedded SQLite + vector
 * index files) or Postgres with pgvector (`store: 'postgres://...'`, pg-store.ts), where several
 * processes serve one catalog. Collections: one opening per name, shared by concurrent first calls
 * (a failed one is forgotten). Names are checked first (checkCollectionName), so a name never
 * reaches the file system unless it stays in the data directory. `drop` makes the name unknown at
 * once (COLLECTION_NOT_FOUND), lets the searches, ingests and deletes already running finish, then
 * closes the collection and removes it from the store; `create` or `collection` of that name waits
 * for the drop. `close` does the same for every collection, then closes the store, and every later
 * call is CLOSED. `ready` says whether the store answers (the server's /ready).
 */
import { createHash } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { z } from 'zod';
import type { Embedder } from '../embedder';
import { QrankError, invalid } from '../errors';
import type { Reranker } from '../reranker';
import { checkText, parseOptions, positiveInt } from '../validate';
import { Collection, type CollectionInfo, type KeywordBuildProgress, type Mapping, type OpenOptions, type UnopenableCollection, checkCollectionName, fingerprint } from './collection';
import { EmbeddedStore } from './embedded-store';
import { type ProductRow, type Store, isPostgresUrl } from './store';
import { type Filter, type Problem, fieldNameProblem, invalidInput, isPlainObject } from './filters';
import { DEFAULT_RRF_K, MAX_RECALL_WEIGHT, MAX_RRF_K, reciprocalRankFusion } from './fusion';
import { queryTerms } from './keyword-text';

/** Where candidates come from: both indexes fused, the vector index, or the keyword index. */
export type RecallMode = 'hybrid' | 'vector' | 'keyword';
export const RECALL_MODES: readonly RecallMode[] = ['hybrid', 'vector', 'keyword'];

export interface SearchOptions {
  /** Recall (see the header): 'hybrid' by default when the collection has a keyword index, else 'vector'. */
  recall?: RecallMode;
  /** Candidates recalled (the reranker scores them), at most MAX_RECALL_K (default 100); also the vector list's length. */
  recallK?: number;
  /** Length of the keyword list, at most MAX_RECALL_K (default recallK). */
  keywordK?: number;
  topN?: number;
  filter?: Filter;
  /** Reranker instruction (and embedder task for the query). */
  instruction?: string;
  /** false: recall only. */
  rerank?: boolean;
  /**
   * Recall fusion: RRF's k (default DEFAULT_RRF_K) and each list's weight (default 1). Signals:
   * final = (1 - sum of weights) x relevance + sum of weight x normalised signal, over numeric fields of the mapping.
   */
  fusion?: RecallFusion & { signals?: Record<string, number> };
  explain?: boolean;
  signal?: AbortSignal;
}

export interface SearchHit {
  id: string;
  score: number;
  rerankScore?: number;
  recallScore: number;
  fields: Record<string, unknown>;
  explain?: {
    relevance: number;
    relevanceWeight: number;
    signals: Record<string, { value: number; normalised: number; weight: number; contribution: number }>;
    recall: RecallExplain;
  };
}

/** How the keyword and vector lists are fused (fusion.ts). */
export interface RecallFusion {
  rrfK?: number;
  keywordWeight?: number;
  vectorWeight?: number;
}

/** Where a candidate stood in each recall list (ranks from 1; absent: not in that list) and its fused score. */
export interface RecallExplain {
  keywordRank?: number;
  keywordScore?: number;
  vectorRank?: number;
  vectorScore?: number;
  fusedScore?: number;
}

export interface SearchResponse {
  results: SearchHit[];
  /**
   * Per stage. The keyword index is searched while the query is embedded: embedMs runs from the
   * embedding's start to when its result is read, which is not before keywordMs ends. recallMs is
   * vector recall, fetchMs fusion and reading the rows.
   */
  timings: { embedMs: number; keywordMs: number; recallMs: number; fetchMs: number; rerankMs: number; totalMs: number };
  candidates: number;
  /** The recall that ran: the one asked for, or 'vector' for a query without keyword terms. */
  recall: RecallMode;
  /** Whether the reranker scored the candidates (false: recall only, asked for or no reranker). */
  reranked: boolean;
}

export interface CacheStats {
  queryEmbeddings: CacheStat;
  rerankScores: CacheStat;
}

/** `size` entries taking `bytes` (keys, values and bookkeeping) of at most `maxBytes`. */
export interface CacheStat {
  hits: number;
  misses: number;
  size: number;
  bytes: number;
  maxBytes: number;
}

/** Byte bounds of the caches (defaults: 32 MiB each). */
export interface CacheOptions {
  queryEmbeddingsBytes?: number;
  rerankScoresBytes?: number;
}

/** How a collection is opened or created: index and mapping of a new one; `reindex` after a model change. */
export type CollectionOptions = OpenOptions;

/** A recalled candidate: the score it is ranked by (fused, BM25 or similarity), and where it came from. */
interface Candidate {
  vid: number;
  score: number;
  explain: RecallExplain;
}

export const MAX_RECALL_K = 10_000;
/** Candidates recalled (and reranked) when a search does not say. */
export const DEFAULT_RECALL_K = 100;
export const MAX_FUSION_SIGNALS = 16;
// weights that sum to 1 in decimal may sum to 1 + 2^-52 in binary
const WEIGHT_SUM_SLACK = 1e-9;

const cacheOptions = z.object({ queryEmbeddingsBytes: positiveInt.optional(), rerankScoresBytes: positiveInt.optional() }).strict();
const DEFAULT_CACHE_BYTES = 32 << 20;
// what lru-cache and V8 keep per entry beside the key and the value (an estimate)
const ENTRY_OVERHEAD_BYTES = 128;

const sha = (s: string) => createHash('sha256').update(s).digest('hex');
const notFound = (name: string) => new QrankError('COLLECTION_NOT_FOUND', `no collection named '${name}'; create it first (POST /v1/collections or qrank index)`);

/** The fusion of one search: weights, their sum, and each signal's range over the collection. */
interface Fusion {
  weights: Record<string, number>;
  weightSum: number;
  ranges: Map<string, { min: number; max: number }>;
}

/** What is wrong with fusion signals (field: weight in [0, 1], at most MAX_FUSION_SIGNALS, summing to at most 1), or undefined. */
export function signalsProblem(signals: unknown): Problem | undefined {
  if (!isPlainObject(signals)) return { path: [], message: 'must be an object of field: weight' };
  const fields = Object.keys(signals);
  if (fields.length > MAX_FUSION_SIGNALS) return { path: [], message: `at most ${MAX_FUSION_SIGNALS} signals, got ${fields.length}` };
  let sum = 0;
  for (const field of fields) {
    const bad = fieldNameProblem(field);
    if (bad) return { path: [], message: bad };
    const w = signals[field];
    if (typeof w !== 'number' || !(w >= 0 && w <= 1)) return { path: [field], message: 'must be a weight between 0 and 1' };
    sum += w;
  }
  return sum > 1 + WEIGHT_SUM_SLACK ? { path: [], message: `the weights sum to ${sum}, more than 1` } : undefined;
}

export class SearchEngine {
  // one opening per name, shared by every caller (a failed one is removed: the next call tries again)
  private readonly collections = new Map<string, Promise<Collection>>();
  // the openings that succeeded (only those can be stale: see forget)
  private readonly opened = new WeakSet<Promise<Collection>>();
  // names being dropped, to the end of the drop (the name is unknown meanwhile)
  private readonly dropping = new Map<string, Promise<void>>();
  private closing?: Promise<void>;
  private readonly queryCache: LRUCache<string, Float32Array>;
  private readonly scoreCache: LRUCache<string, number>;
  private readonly stats = { qHits: 0, qMisses: 0, sHits: 0, sMisses: 0 };

  private constructor(
    private readonly store: Store,
    readonly embedder: Embedder,
    readonly reranker: Reranker | undefined,
    cache: CacheOptions,
    private readonly onKeywordIndexProgress?: (collection: string, p: KeywordBuildProgress) => void,
  ) {
    this.queryCache = new LRUCache({ maxSize: cache.queryEmbeddingsBytes ?? DEFAULT_CACHE_BYTES, sizeCalculation: (v, k) => ENTRY_OVERHEAD_BYTES + k.length + v.byteLength });
    this.scoreCache = new LRUCache({ maxSize: cache.rerankScoresBytes ?? DEFAULT_CACHE_BYTES, sizeCalculation: (_v, k) => ENTRY_OVERHEAD_BYTES + k.length + 8 });
  }

  /**
   * `store`: where the collections live, a data directory or a `postgres://` URL (default: `dir`).
   * `onKeywordIndexProgress`: progress of a keyword index build that opening a collection may do
   * (once per collection made before keyword indexes).
   */
  static async open(options: { dir?: string; store?: string; embedder: Embedder; reranker?: Reranker; cache?: CacheOptions; onKeywordIndexProgress?: (collection: string, p: KeywordBuildProgress) => void }): Promise<SearchEngine> {
    const location = options?.store ?? options?.dir;
    if (!location || typeof location !== 'string' || !options.embedder) throw invalid('SearchEngine.open needs { dir or store, embedder } (and a reranker for the second stage)');
    const cache = parseOptions(cacheOptions, options.cache, 'cache');
    const store = isPostgresUrl(location) ? await (await import('./pg-store')).PostgresStore.connect(location) : new EmbeddedStore(location);
    return new SearchEngine(store, options.embedder, options.reranker, cache, options.onKeywordIndexProgress);
  }

  /** Which store holds the collections ('embedded' or 'postgres') and where, without credentials. */
  get storeInfo(): { kind: string; location: string } {
    return { kind: this.store.kind, location: this.store.location };
  }

  /** Resolves when the store answers; STORE_UNAVAILABLE (or CLOSED) otherwise. */
  async ready(): Promise<void> {
    this.checkOpen();
    await this.store.ping();
  }

  /** Opens (or creates) a collection. `reindex: true` re-embeds it when the embedding model changed. */
  async collection(name: string, options: CollectionOptions = {}): Promise<Collection> {
    checkCollectionName(name);
    while (this.dropping.has(name)) await this.dropping.get(name);
    this.checkOpen();
    return this.opening(name, options);
  }

  // The opening of `name`, begun now unless one is on (or done).
  private opening(name: string, options: CollectionOptions): Promise<Collection> {
    let p = this.collections.get(name);
    if (!p) {
      const report = this.onKeywordIndexProgress;
      const onKeywordIndexProgress = options.onKeywordIndexProgress ?? (report && ((p: KeywordBuildProgress) => report(name, p)));
      const opening = Collection.open(this.store, name, this.embedder, { ...options, onKeywordIndexProgress });
      opening.then(() => this.opened.add(opening), () => this.collections.get(name) === opening && this.collections.delete(name));
      this.collections.set(name, (p = opening));
    }
    return p;
  }

  /** Names of the collections in the store (not those being dropped). */
  async names(): Promise<string[]> {
    return (await this.store.names()).filter((name) => !this.dropping.has(name));
  }

  /**
   * What each collection holds; one dropped while the list is made is left out, and one that cannot
   * be opened (a damaged index, another model) is listed with why, so it never hides the others and
   * can still be dropped.
   */
  async list(): Promise<(CollectionInfo | UnopenableCollection)[]> {
    const infos: (CollectionInfo | UnopenableCollection)[] = [];
    for (const name of await this.names()) {
      try {
        infos.push(await (await this.existing(name)).info());
      } catch (err) {
        const e = err as QrankError;
        if (e.code === 'COLLECTION_NOT_FOUND') continue;
        infos.push({ name, error: { code: e.code ?? 'ENGINE_FAILURE', message: e.message } });
      }
    }
    return infos;
  }

  async has(name: string): Promise<boolean> {
    checkCollectionName(name);
    this.checkOpen();
    const opening = this.collections.get(name);
    if (opening && !this.opened.has(opening)) return !this.dropping.has(name); // being opened (or created) here
    const stored = await this.store.exists(name);
    if (!stored) this.forget(name);
    return stored && !this.dropping.has(name); // read after the await: a drop may have begun meanwhile
  }

  /**
   * Forgets an open collection the store no longer has, or has again under a new identity (a shared
   * store: another process dropped it, and perhaps made it again): the next call opens it afresh.
   */
  private forget(name: string): void {
    const opening = this.collections.get(name);
    if (!opening || !this.opened.has(opening) || this.dropping.has(name)) return;
    this.collections.delete(name);
    void opening.then((c) => c.close(notFound(name)));
  }

  /** Opens a collection that must exist (COLLECTION_NOT_FOUND otherwise). */
  async existing(name: string): Promise<Collection> {
    if (!(await this.has(name))) throw notFound(name);
    return this.collection(name);
  }

  /** Creates a collection that must not exist yet (COLLECTION_EXISTS otherwise); waits for a drop of that name. */
  async create(name: string, options: { index?: OpenOptions['index']; mapping?: Mapping } = {}): Promise<Collection> {
    checkCollectionName(name);
    while (this.dropping.has(name)) await this.dropping.get(name);
    // the second test runs in the same step as the opening below: of two concurrent creates, one wins
    if ((await this.has(name)) || this.collections.has(name)) throw new QrankError('COLLECTION_EXISTS', `a collection named '${name}' already exists`);
    try {
      return await this.collection(name, options);
    } catch (err) {
      // nothing existed before: a create that fails (index options the index refuses) leaves nothing
      if (!this.collections.has(name)) await this.store.remove(name).catch(() => undefined);
      throw err;
    }
  }

  /**
   * Deletes a collection once the searches, ingests and deletes running on it are over (see the
   * header). One that cannot be opened (a damaged index, another model) is deleted too.
   */
  async drop(name: string): Promise<void> {
    checkCollectionName(name);
    this.checkOpen();
    if (this.dropping.has(name)) throw notFound(name);
    const done = (async () => {
      try {
        if (!this.collections.has(name) && !(await this.store.exists(name))) throw notFound(name);
        const c = await this.opening(name, {}).catch(() => undefined);
        this.collections.delete(name);
        await c?.close(notFound(name));
        await this.store.remove(name);
      } finally {
        this.dropping.delete(name);
      }
    })();
    this.dropping.set(name, done.catch(() => undefined)); // from now on the name is unknown; waiters only need the drop over
    await done;
  }

  cacheStats(): CacheStats {
    const stat = (cache: { size: number; calculatedSize: number; maxSize: number }, hits: number, misses: number): CacheStat => ({ hits, misses, size: cache.size, bytes: cache.calculatedSize, maxBytes: cache.maxSize });
    return {
      queryEmbeddings: stat(this.queryCache, this.stats.qHits, this.stats.qMisses),
      rerankScores: stat(this.scoreCache, this.stats.sHits, this.stats.sMisses),
    };
  }

  async search(collectionName: string, query: string, options: SearchOptions = {}): Promise<SearchResponse> {
    const t0 = performance.now();
    checkText(query, 'query', { allowEmpty: false });
    const recallK = options.recallK ?? DEFAULT_RECALL_K;
    const keywordK = options.keywordK ?? recallK;
    const topN = options.topN ?? 10;
    if (!isRecallCount(recallK) || !isRecallCount(keywordK) || !Number.isInteger(topN) || topN < 1) {
      throw invalid(`recallK and keywordK must be integers from 1 to ${MAX_RECALL_K}, topN a positive integer`);
    }
    if (options.recall !== undefined && !RECALL_MODES.includes(options.recall)) throw invalid(`recall must be one of ${RECALL_MODES.join(', ')}`);
    const weights = options.fusion?.signals ?? {};
    const problem = signalsProblem(weights);
    if (problem) throw invalidInput('fusion.signals', problem);
    const fusionBad = recallFusionProblem(options.fusion ?? {});
    if (fusionBad) throw invalidInput('fusion', fusionBad);
    const col = await this.existing(collectionName);
    try {
      return await col.lease(() => this.searchIn(col, query, { ...options, recallK, keywordK, topN }, weights, t0));
    } catch (err) {
      if ((err as QrankError).code === 'COLLECTION_NOT_FOUND') this.forget(collectionName);
      throw err;
    }
  }

  private async searchIn(col: Collection, query: string, options: CheckedSearch, weights: Record<string, number>, t0: number): Promise<SearchResponse> {
    const recalled = await this.recall(col, query, options);
    const t2 = performance.now();
    const fields = Object.keys(weights);
    const [rows, ranges] = await Promise.all([col.rows(recalled.candidates.map((c) => c.vid)), Promise.all(fields.map((f) => col.signalRange(f)))]);
    const fusion: Fusion = { weights, weightSum: Object.values(weights).reduce((a, b) => a + b, 0), ranges: new Map(fields.map((f, i) => [f, ranges[i]])) };
    const t3 = performance.now();
    const candidates = recalled.candidates.filter((c) => rows.has(c.vid));
    const rerank = options.rerank !== false && this.reranker !== undefined;
    const relevance = rerank ? await this.rerankScores(query, candidates.map((c) => rows.get(c.vid)!.rerankText), options) : candidates.map((c) => c.score);
    const t4 = performance.now();
    const hits = candidates.map((c, i): SearchHit => {
      const row = rows.get(c.vid)!;
      const { score, explain } = fuse(row, relevance[i], fusion);
      return {
        id: row.id,
        score,
        ...(rerank ? { rerankScore: relevance[i] } : {}),
        recallScore: c.score,
        fields: row.fields,
        ...(options.explain ? { explain: { ...explain, recall: c.explain } } : {}),
      };
    });
    hits.sort((a, b) => b.score - a.score);
    const t5 = performance.now();
    const { embedMs, keywordMs, recallMs } = recalled;
    return {
      results: hits.slice(0, options.topN),
      candidates: candidates.length,
      reranked: rerank,
      recall: recalled.mode,
      timings: { embedMs, keywordMs, recallMs, fetchMs: recalled.fuseMs + (t3 - t2), rerankMs: t4 - t3, totalMs: t5 - t0 },
    };
  }

  /**
   * The candidates of a search (see the header). The keyword index is searched while the embedder
   * works on the query; each stage's time is its own.
   */
  private async recall(col: Collection, query: string, options: CheckedSearch): Promise<{ mode: RecallMode; candidates: Candidate[]; embedMs: number; keywordMs: number; recallMs: number; fuseMs: number }> {
    const asked = await this.recallMode(col, options.recall);
    const terms = asked === 'vector' ? [] : queryTerms(query);
    const mode: RecallMode = terms.length === 0 ? 'vector' : asked;
    const te = performance.now();
    let embedMs = 0;
    const embedding = mode === 'keyword' ? undefined : this.queryVector(query, options.instruction, options.signal).then((v) => ((embedMs = performance.now() - te), v));
    embedding?.catch(() => undefined); // awaited below; this only keeps a keyword stage that throws first from leaving it unhandled
    const tk = performance.now();
    const keyword = mode === 'vector' ? [] : await col.keywordRecall(terms, options.keywordK, options.filter);
    const keywordMs = performance.now() - tk;
    let vector: { vid: number; score: number }[] = [];
    let recallMs = 0;
    if (embedding) {
      const qvec = await embedding;
      const tv = performance.now();
      vector = await col.recall(qvec, options.recallK, options.filter);
      recallMs = performance.now() - tv;
    }
    const tf = performance.now();
    const candidates = recallCandidates(mode, keyword, vector, options);
    return { mode, candidates, embedMs, keywordMs, recallMs, fuseMs: performance.now() - tf };
  }

  // The recall asked for, or the collection's default; one that needs a keyword index it lacks is INVALID_INPUT.
  private async recallMode(col: Collection, asked: RecallMode | undefined): Promise<RecallMode> {
    const hasKeywordIndex = await col.hasKeywordIndex();
    const mode = asked ?? (hasKeywordIndex ? 'hybrid' : 'vector');
    if (mode !== 'vector' && !hasKeywordIndex) {
      throw invalid(`recall '${mode}' needs a keyword index, and collection '${col.name}' has none (its mapping says keyword: false, or it has no mapping yet): use recall 'vector'`);
    }
    return mode;
  }

  private async queryVector(query: string, instruction: string | undefined, signal?: AbortSignal): Promise<Float32Array> {
    const key = sha(`${fingerprint(this.embedder)}\0${instruction ?? ''}\0${query}`);
    const hit = this.queryCache.get(key);
    if (hit) {
      this.stats.qHits++;
      return hit;
    }
    this.stats.qMisses++;
    const [v] = await this.embedder.embed([query], { kind: 'query', instruction, signal });
    this.queryCache.set(key, v);
    return v;
  }

  // Scores come from the cache when the same model, instruction, query and document text were seen.
  private async rerankScores(query: string, texts: string[], options: SearchOptions): Promise<number[]> {
    const rr = this.reranker!;
    const base = sha(`${rr.info.description}\0${rr.info.sizeBytes}\0${options.instruction ?? ''}\0${query}`);
    const keys = texts.map((t) => base + sha(t));
    const out = keys.map((k) => this.scoreCache.get(k));
    const todo = out.map((s, i) => (s === undefined ? i : -1)).filter((i) => i >= 0);
    this.stats.sHits += texts.length - todo.length;
    this.stats.sMisses += todo.length;
    if (todo.length) {
      const scores = await rr.score(todo.map((i) => ({ query, document: texts[i] })), { instruction: options.instruction, signal: options.signal });
      todo.forEach((i, k) => {
        out[i] = scores[k];
        this.scoreCache.set(keys[i], scores[k]);
      });
    }
    return out as number[];
  }

  /** Closes every collection once the work running on it is over (see the header); later calls are CLOSED. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      await Promise.all(this.dropping.values());
      const opened = await Promise.allSettled(this.collections.values());
      const reason = { code: 'CLOSED' as const, message: 'the SearchEngine is closed' };
      await Promise.all(opened.map((o) => o.status === 'fulfilled' && o.value.close(reason)));
      this.collections.clear();
      await this.store.close();
    })();
    return this.closing;
  }

  private checkOpen(): void {
    if (this.closing) throw new QrankError('CLOSED', 'the SearchEngine is closed');
  }
}

/** The final score of a row: relevance blended with the normalised signals (a value that is not a number counts 0). */
function fuse(row: ProductRow, relevance: number, fusion: Fusion): { score: number; explain: Omit<NonNullable<SearchHit['explain']>, 'recall'> } {
  const signals: NonNullable<SearchHit['explain']>['signals'] = {};
  let score = (1 - fusion.weightSum) * relevance;
  for (const [field, weight] of Object.entries(fusion.weights)) {
    const raw = Object.hasOwn(row.fields, field) ? row.fields[field] : undefined;
    const value = typeof raw === 'number' ? raw : 0;
    const { min, max } = fusion.ranges.get(field)!;
    const normalised = typeof raw === 'number' && max > min ? Math.min(1, Math.max(0, (value - min) / (max - min))) : 0;
    score += weight * normalised;
    signals[field] = { value, normalised, weight, contribution: weight * normalised };
  }
  return { score, explain: { relevance, relevanceWeight: 1 - fusion.weightSum, signals } };
}

/** A search's options once checked, with the defaults filled in. */
type CheckedSearch = SearchOptions & { recallK: number; keywordK: number; topN: number };

function isRecallCount(k: number): boolean {
  return Number.isInteger(k) && k >= 1 && k <= MAX_RECALL_K;
}

/** What is wrong with the recall part of `fusion` (rrfK in [0, MAX_RRF_K], weights in [0, MAX_RECALL_WEIGHT]), or undefined. */
export function recallFusionProblem(fusion: RecallFusion): Problem | undefined {
  if (!isPlainObject(fusion)) return { path: [], message: 'must be an object' };
  const bounds: [keyof RecallFusion, number][] = [['rrfK', MAX_RRF_K], ['keywordWeight', MAX_RECALL_WEIGHT], ['vectorWeight', MAX_RECALL_WEIGHT]];
  for (const [key, max] of bounds) {
    const v = fusion[key];
    if (v !== undefined && !(typeof v === 'number' && v >= 0 && v <= max)) return { path: [key], message: `must be a number from 0 to ${max}` };
  }
  return undefined;
}

/** The candidates of one recall mode: one list as it is, or both fused by RRF, at most recallK. */
function recallCandidates(mode: RecallMode, keyword: { vid: number; score: number }[], vector: { vid: number; score: number }[], options: CheckedSearch): Candidate[] {
  if (mode === 'keyword') return keyword.slice(0, options.recallK).map((h, i) => ({ vid: h.vid, score: h.score, explain: { keywordRank: i + 1, keywordScore: h.score } }));
  if (mode === 'vector') return vector.map((h, i) => ({ vid: h.vid, score: h.score, explain: { vectorRank: i + 1, vectorScore: h.score } }));
  const f = options.fusion ?? {};
  const fused = reciprocalRankFusion(
    [
      { ids: keyword.map((h) => h.vid), weight: f.keywordWeight ?? 1 },
      { ids: vector.map((h) => h.vid), weight: f.vectorWeight ?? 1 },
    ],
    f.rrfK ?? DEFAULT_RRF_K,
  );
  const [kw, vec] = [new Map(keyword.map((h) => [h.vid, h.score])), new Map(vector.map((h) => [h.vid, h.score]))];
  return fused.slice(0, options.recallK).map(({ id, score, ranks }) => ({
    vid: id,
    score,
    explain: { keywordRank: ranks[0], keywordScore: kw.get(id), vectorRank: ranks[1], vectorScore: vec.get(id), fusedScore: score },
  }));
}
