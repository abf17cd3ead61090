/**
 * A collection: products, their vectors and their keyword terms in a store (store.ts: the embedded
 * SQLite + VectorIndex store, or Postgres with pgvector), searched and written through this facade.
 * Opening checks the embedding model (fingerprint.ts: MODEL_MISMATCH unless `reindex`), prepares the
 * store's vector side (the embedded store reconciles its files there), builds the keyword index
 * once when it was not built from the mapping's keyword columns (a collection made before keyword
 * indexes, or a changed mapping) or does not hold as many products as the store, and embeds the
 * products left pending. Ingestion is ingest.ts. A failed open closes what it opened; a mapping is
 * validated when it is given and when it is read back from the meta (see mapping.ts).
 *
 * Lifecycle: searches, ingests and deletes run under a lease. `close` refuses new leases at once,
 * waits for the running ones, then closes the store; from then on every call fails with the reason
 * given to close (COLLECTION_NOT_FOUND for a dropped collection, CLOSED otherwise), never with the
 * store's own "connection is not open". Writes to one collection run one at a time in this process
 * (searches go on beside them); the stores keep writes from several processes consistent.
 */
import type { Embedder } from '../embedder';
import { QrankError, type QrankErrorCode, invalid } from '../errors';
import type { IndexOptions } from '../vector-index';
import { EmbeddedStore } from './embedded-store';
import { type Filter, fieldNameProblem, parseFilter } from './filters';
import { describeModel, fingerprint, modelChanged } from './fingerprint';
import { type IngestOptions, type IngestResult, embedPending, ingestInto } from './ingest';
import type { KeywordBuildProgress } from './keyword-index';
import { type KeywordColumn, type Mapping, keywordColumns, parseMapping } from './mapping';
import type { Source } from './sources';
import { type CollectionStore, type Hit, type ProductRow, type Store, checkCollectionName } from './store';

export type { Mapping } from './mapping';
export type { KeywordBuildProgress } from './keyword-index';
export type { IngestOptions, IngestProgress, IngestResult } from './ingest';
export type { ProductRow } from './store';
export { COLLECTION_NAME, checkCollectionName } from './store';
export { fingerprint, sameModel } from './fingerprint';
export { collectionsUnsupported } from './sqlite';

/** How a collection is opened: index and mapping of a new one, `reindex` after a model change. */
export interface OpenOptions {
  index?: Partial<IndexOptions>;
  mapping?: Mapping;
  reindex?: boolean;
  /** Progress of the keyword index build that an open may do, once (see the header). */
  onKeywordIndexProgress?: (p: KeywordBuildProgress) => void;
}

/** A collection in the store that cannot be opened, and why. */
export interface UnopenableCollection {
  name: string;
  error: { code: string; message: string };
}

export interface CollectionInfo {
  name: string;
  /** Products in the store. */
  size: number;
  /** Products whose vectors are not yet stored. */
  pending: number;
  /** Vectors stored (one per product, or one per embed template). */
  vectors: number;
  index: IndexOptions;
  mapping?: Mapping;
  /** The embedding model the vectors come from. */
  embedder?: string;
  /** The keyword index's columns and weights; empty when the collection has none. */
  keywords: Required<KeywordColumn>[];
}

/** Why a closed collection refuses calls: the code and message of the error they get. */
export interface CloseReason {
  code: QrankErrorCode;
  message: string;
}

export class Collection {
  // ingest and delete run one at a time per collection (searches go on beside them)
  private writes: Promise<unknown> = Promise.resolve();
  // lifecycle (see the header): running leases, what close waits on, why calls now fail
  private leases = 0;
  private released?: () => void;
  private closing?: Promise<void>;
  private closedBy?: CloseReason;
  private closed = false;

  private constructor(
    readonly name: string,
    private readonly store: CollectionStore,
    private readonly embedder: Embedder,
  ) {}

  /** Opens (or creates) collection `name` in `location`: a Store, or the data directory of an embedded one. */
  static async open(location: string | Store, name: string, embedder: Embedder, options: OpenOptions = {}): Promise<Collection> {
    checkCollectionName(name);
    const mapping = options.mapping === undefined ? undefined : parseMapping(options.mapping);
    const store = await (typeof location === 'string' ? new EmbeddedStore(location) : location).open(name);
    try {
      const c = new Collection(name, store, embedder);
      await c.init({ ...options, mapping });
      return c;
    } catch (err) {
      await store.close().catch(() => undefined);
      throw err;
    }
  }

  private async init(options: OpenOptions): Promise<void> {
    const fp = fingerprint(this.embedder);
    const reset = modelChanged(this.name, await this.store.getMeta('embedder'), fp, await this.store.count(), options.reindex);
    if (options.mapping) await this.store.setMeta('mapping', JSON.stringify(options.mapping));
    await this.store.prepare({ index: options.index, dim: this.embedder.info.embeddingLength, reset });
    await this.store.setMeta('embedder', fp);
    await this.syncKeywords(options.onKeywordIndexProgress);
    if ((await this.store.pendingCount()) > 0) await embedPending(this.store, this.embedder);
  }

  // Builds the keyword index if it was not built from the mapping, or lost products (see the header).
  private async syncKeywords(onProgress?: (p: KeywordBuildProgress) => void): Promise<void> {
    const mapping = await this.mapping();
    if (!mapping) return;
    const columns = keywordColumns(mapping);
    const built = await this.store.syncKeywords(columns, onProgress);
    if (!built && (await this.store.keywordColumns()).length > 0 && (await this.store.keywordCount()) !== (await this.store.count())) {
      await this.store.syncKeywords(columns, onProgress, true);
    }
  }

  /** Products in the store. */
  async count(): Promise<number> {
    this.checkOpen();
    return this.store.count();
  }

  /** Vectors stored. */
  async vectorCount(): Promise<number> {
    this.checkOpen();
    return this.store.vectorCount();
  }

  /** The stored mapping; one that is invalid (written by an older qrank) counts as none here, and ingest says why. */
  async mapping(): Promise<Mapping | undefined> {
    this.checkOpen();
    try {
      return await this.storedMapping();
    } catch (err) {
      if ((err as QrankError).code === 'INVALID_INPUT') return undefined;
      throw err;
    }
  }

  private async storedMapping(): Promise<Mapping | undefined> {
    const stored = await this.store.getMeta('mapping');
    if (stored === undefined) return undefined;
    try {
      return parseMapping(JSON.parse(stored));
    } catch (err) {
      throw invalid(`the stored mapping of collection '${this.name}' is invalid (${(err as Error).message}); send a valid mapping with the next documents`);
    }
  }

  /** Products whose stored vectors are not those of their current text. */
  async pendingCount(): Promise<number> {
    this.checkOpen();
    return this.store.pendingCount();
  }

  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.writes.then(fn, fn);
    this.writes = run.catch(() => undefined);
    return run;
  }

  /** Resolves when no write is running or queued. */
  async idle(): Promise<void> {
    await this.writes;
  }

  /** What the collection holds and how it is configured. */
  async info(): Promise<CollectionInfo> {
    this.checkOpen();
    const s = this.store;
    const [size, pending, vectors, index, mapping, embedder, keywords] = await Promise.all([
      s.count(), s.pendingCount(), s.vectorCount(), s.getMeta('index'), this.mapping(), s.getMeta('embedder'), s.keywordColumns(),
    ]);
    return { name: this.name, size, pending, vectors, index: JSON.parse(index ?? '{}') as IndexOptions, mapping, embedder: describeModel(embedder), keywords };
  }

  /** Adds or updates products. Unchanged texts are not embedded again. Writes to one collection run one at a time. */
  ingest(source: Source, options: IngestOptions = {}): Promise<IngestResult> {
    return this.lease(() => this.exclusive(async () => {
      const mapping = options.mapping === undefined ? await this.storedMapping() : parseMapping(options.mapping);
      if (!mapping) throw invalid('ingest needs a mapping (id field, embed and rerank templates) the first time');
      return ingestInto(this.store, this.embedder, mapping, source, options);
    }));
  }

  /** Removes products and their vectors; returns how many existed (an id given twice counts once). */
  delete(ids: string[]): Promise<number> {
    return this.lease(() => this.exclusive(() => this.store.delete([...new Set(ids)])));
  }

  /** Vector recall: best products first, by their best vector; `filter` applies inside the search. */
  async recall(query: Float32Array, k: number, filter?: Filter): Promise<Hit[]> {
    this.checkOpen();
    const terms = parseFilter(filter);
    const m = await this.mapping();
    return this.store.recall(query, k, m && Array.isArray(m.embed) ? m.embed.length : 1, terms);
  }

  /** Whether the collection has a keyword index to recall from. */
  async hasKeywordIndex(): Promise<boolean> {
    this.checkOpen();
    return (await this.store.keywordColumns()).length > 0;
  }

  /** Keyword recall: the best k products for the query's terms (keyword-text.ts), best first; `filter` applies inside the search. */
  async keywordRecall(terms: string[], k: number, filter?: Filter): Promise<Hit[]> {
    this.checkOpen();
    return this.store.keywordRecall(terms, k, parseFilter(filter));
  }

  async rows(vids: number[]): Promise<Map<number, ProductRow>> {
    this.checkOpen();
    return this.store.rows(vids);
  }

  /**
   * Min and max of a numeric field of the mapping over the collection (fusion normalises signals
   * with them); (0, 0) when no product has a number there.
   */
  async signalRange(field: string): Promise<{ min: number; max: number }> {
    this.checkOpen();
    const numeric = (await this.mapping())?.numeric ?? [];
    const problem = fieldNameProblem(field) ?? (numeric.includes(field) ? undefined : `not a numeric field of collection '${this.name}' (mapping.numeric: ${numeric.join(', ') || 'none'})`);
    if (problem) throw invalid(`fusion.signals.${field}: ${problem}`);
    return this.store.signalRange(field);
  }

  /**
   * Runs `fn` while the collection stays open: close waits for it. Once close has begun, a new
   * lease fails with close's reason.
   */
  async lease<T>(fn: () => Promise<T>): Promise<T> {
    this.checkOpen(true);
    this.leases++;
    try {
      return await fn();
    } finally {
      if (--this.leases === 0) this.released?.();
    }
  }

  /**
   * Refuses new leases now, waits for the running ones, then closes the store; every later call
   * fails with `reason`. The store closes a macrotask after the last lease, so what its caller does
   * right after still works. Calling it again returns the same promise.
   */
  close(reason: CloseReason = { code: 'CLOSED', message: `collection '${this.name}' is closed` }): Promise<void> {
    this.closing ??= this.closeWhenReleased(reason);
    return this.closing;
  }

  private async closeWhenReleased(reason: CloseReason): Promise<void> {
    this.closedBy = reason;
    if (this.leases > 0) await new Promise<void>((resolve) => (this.released = resolve));
    await new Promise((resolve) => setImmediate(resolve));
    await this.store.close();
    this.closed = true;
  }

  // `forLease`: refused as soon as close has begun; otherwise only once the store is closed
  private checkOpen(forLease = false): void {
    if (this.closedBy && (forLease || this.closed)) throw new QrankError(this.closedBy.code, this.closedBy.message);
  }
}
