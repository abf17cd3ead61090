/**
 * SearchEngine: the two stages the shop runs. The query (never translated) is embedded by
 * Qwen3-Embedding, the top recallK products are recalled from the collection's vector index with
 * the filter applied inside the search, Qwen3-Reranker scores those candidates, and the final score
 * can blend in business signals. Query embeddings and rerank scores are cached (bounded LRU) under
 * keys that include the model, the instruction and the exact text, so a changed product text is
 * never served an old score.
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { LRUCache } from 'lru-cache';
import type { Embedder } from '../embedder';
import { QrankError, invalid } from '../errors';
import type { Reranker } from '../reranker';
import type { IndexOptions } from '../vector-index';
import { COLLECTION_NAME, Collection, type Mapping, checkCollectionName, fingerprint } from './collection';
import type { Filter } from './filters';

export interface SearchOptions {
  recallK?: number;
  topN?: number;
  filter?: Filter;
  /** Reranker instruction (and embedder task for the query). */
  instruction?: string;
  /** false: recall only. */
  rerank?: boolean;
  /** final = (1 - sum of weights) x relevance + sum of weight x normalised signal. */
  fusion?: { signals: Record<string, number> };
  explain?: boolean;
  signal?: AbortSignal;
}

export interface SearchHit {
  id: string;
  score: number;
  rerankScore?: number;
  recallScore: number;
  fields: Record<string, unknown>;
  explain?: { relevance: number; relevanceWeight: number; signals: Record<string, { value: number; normalised: number; weight: number; contribution: number }> };
}

export interface SearchResponse {
  results: SearchHit[];
  timings: { embedMs: number; recallMs: number; fetchMs: number; rerankMs: number; totalMs: number };
  candidates: number;
  /** Whether the reranker scored the candidates (false: recall only, asked for or no reranker). */
  reranked: boolean;
}

export interface CacheStats {
  queryEmbeddings: { hits: number; misses: number; size: number };
  rerankScores: { hits: number; misses: number; size: number };
}

const sha = (s: string) => createHash('sha256').update(s).digest('hex');

export class SearchEngine {
  private readonly collections = new Map<string, Collection>();
  private readonly queryCache: LRUCache<string, Float32Array>;
  private readonly scoreCache: LRUCache<string, number>;
  private readonly stats = { qHits: 0, qMisses: 0, sHits: 0, sMisses: 0 };

  private constructor(
    private readonly dir: string,
    readonly embedder: Embedder,
    readonly reranker: Reranker | undefined,
    cache: { queryEmbeddings?: number; rerankScores?: number },
  ) {
    this.queryCache = new LRUCache({ max: cache.queryEmbeddings ?? 10_000 });
    this.scoreCache = new LRUCache({ max: cache.rerankScores ?? 200_000 });
  }

  static async open(options: { dir: string; embedder: Embedder; reranker?: Reranker; cache?: { queryEmbeddings?: number; rerankScores?: number } }): Promise<SearchEngine> {
    if (!options?.dir || !options.embedder) throw invalid('SearchEngine.open needs { dir, embedder } (and a reranker for the second stage)');
    return new SearchEngine(options.dir, options.embedder, options.reranker, options.cache ?? {});
  }

  /** Opens (or creates) a collection. `reindex: true` re-embeds it when the embedding model changed. */
  async collection(name: string, options: { index?: Partial<IndexOptions>; mapping?: Mapping; reindex?: boolean } = {}): Promise<Collection> {
    checkCollectionName(name);
    let c = this.collections.get(name);
    if (!c) {
      c = await Collection.open(this.dir, name, this.embedder, options);
      this.collections.set(name, c);
    }
    return c;
  }

  /** Names of the collections stored in the data directory. */
  names(): string[] {
    if (!existsSync(this.dir)) return [];
    return readdirSync(this.dir)
      .filter((f) => f.endsWith('.sqlite'))
      .map((f) => f.slice(0, -'.sqlite'.length))
      .filter((name) => COLLECTION_NAME.test(name))
      .sort();
  }

  has(name: string): boolean {
    checkCollectionName(name);
    return this.collections.has(name) || existsSync(join(this.dir, `${name}.sqlite`));
  }

  /** Opens a collection that must exist (COLLECTION_NOT_FOUND otherwise). */
  async existing(name: string): Promise<Collection> {
    if (!this.has(name)) throw new QrankError('COLLECTION_NOT_FOUND', `no collection named '${name}'; create it first (POST /v1/collections or qrank index)`);
    return this.collection(name);
  }

  /** Creates a collection that must not exist yet (COLLECTION_EXISTS otherwise). */
  async create(name: string, options: { index?: Partial<IndexOptions>; mapping?: Mapping } = {}): Promise<Collection> {
    if (this.has(name)) throw new QrankError('COLLECTION_EXISTS', `a collection named '${name}' already exists`);
    return this.collection(name, options);
  }

  /** Closes a collection and deletes its files. */
  async drop(name: string): Promise<void> {
    const c = await this.existing(name);
    await c.idle();
    c.close();
    this.collections.delete(name);
    for (const suffix of ['.sqlite', '.sqlite-wal', '.sqlite-shm', '.qrix']) rmSync(join(this.dir, name + suffix), { force: true });
  }

  cacheStats(): CacheStats {
    return {
      queryEmbeddings: { hits: this.stats.qHits, misses: this.stats.qMisses, size: this.queryCache.size },
      rerankScores: { hits: this.stats.sHits, misses: this.stats.sMisses, size: this.scoreCache.size },
    };
  }

  async search(collectionName: string, query: string, options: SearchOptions = {}): Promise<SearchResponse> {
    const t0 = performance.now();
    if (typeof query !== 'string' || query.trim() === '') throw invalid('query must be a non-empty string');
    const recallK = options.recallK ?? 100;
    const topN = options.topN ?? 10;
    if (!Number.isInteger(recallK) || recallK < 1 || !Number.isInteger(topN) || topN < 1) throw invalid('recallK and topN must be positive integers');
    const weights = options.fusion?.signals ?? {};
    const weightSum = Object.values(weights).reduce((a, b) => a + b, 0);
    if (Object.values(weights).some((w) => !(w >= 0)) || weightSum > 1) throw invalid('fusion weights must be >= 0 and sum to at most 1');
    const col = await this.existing(collectionName);

    const qvec = await this.queryVector(query, options.instruction, options.signal);
    const t1 = performance.now();
    const recalled = await col.recall(qvec, recallK, options.filter);
    const t2 = performance.now();
    const rows = col.rows(recalled.map((r) => r.vid));
    const t3 = performance.now();
    const candidates = recalled.filter((r) => rows.has(r.vid));
    const rerank = options.rerank !== false && this.reranker !== undefined;
    const relevance = rerank ? await this.rerankScores(query, candidates.map((c) => rows.get(c.vid)!.rerankText), options) : candidates.map((c) => c.score);
    const t4 = performance.now();

    const hits: SearchHit[] = candidates.map((c, i) => {
      const row = rows.get(c.vid)!;
      const signals: NonNullable<SearchHit['explain']>['signals'] = {};
      let score = (1 - weightSum) * relevance[i];
      for (const [field, weight] of Object.entries(weights)) {
        const value = Number(row.fields[field] ?? 0);
        const { min, max } = col.signalRange(field);
        const normalised = max > min && Number.isFinite(value) ? (value - min) / (max - min) : 0;
        score += weight * normalised;
        signals[field] = { value, normalised, weight, contribution: weight * normalised };
      }
      return {
        id: row.id,
        score,
        ...(rerank ? { rerankScore: relevance[i] } : {}),
        recallScore: c.score,
        fields: row.fields,
        ...(options.explain ? { explain: { relevance: relevance[i], relevanceWeight: 1 - weightSum, signals } } : {}),
      };
    });
    hits.sort((a, b) => b.score - a.score);
    const t5 = performance.now();
    return {
      results: hits.slice(0, topN),
      candidates: candidates.length,
      reranked: rerank,
      timings: { embedMs: t1 - t0, recallMs: t2 - t1, fetchMs: t3 - t2, rerankMs: t4 - t3, totalMs: t5 - t0 },
    };
  }

  private async queryVector(query: string, instruction: string | undefined, signal?: AbortSignal): Promise<Float32Array> {
    const key = `${fingerprint(this.embedder)}\0${instruction ?? ''}\0${query}`;
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
    const base = `${rr.info.description}\0${rr.info.sizeBytes}\0${options.instruction ?? ''}\0${query}\0`;
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

  close(): void {
    for (const c of this.collections.values()) c.close();
    this.collections.clear();
  }
}
