/**
 * The store under the search layer: where a collection's products, vectors and keyword index live.
 * Two implementations: the embedded default (SQLite + a VectorIndex file per collection, in a data
 * directory: embedded-store.ts) and Postgres with pgvector (pg-store.ts), chosen by `openStore`
 * from a location: a directory, or a `postgres://` (`postgresql://`) URL.
 *
 * What every store guarantees (test/store-suite.test.ts runs the same tests against both):
 * - Products are keyed by id; `write` is idempotent and all-or-nothing per batch for the rows (a
 *   product's row, its keyword terms and, when given, its vectors). A product whose stored vectors
 *   are not those of its current text is "pending" (`pending`, `pendingCount`) until `settle`
 *   gives them; nothing is lost when a write or a process dies half-way (the embedded store's
 *   protocol is in its header; Postgres commits the row and its vectors in one transaction).
 * - `recall` returns the best products by their best vector, the filter applied inside the search,
 *   so a selective filter still returns k products when k match. Scores are inner products.
 * - `keywordRecall` searches the keyword terms of keyword-text.ts (the same terms in both stores),
 *   the filter applied inside; scores rank within one store only (BM25 in SQLite, ts_rank in Postgres).
 * - Meta values (mapping, index options, model fingerprint, keyword spec) are strings per key.
 * - Calls fail with QrankError codes: STORE_UNAVAILABLE when the store cannot be reached (after
 *   retries), COLLECTION_NOT_FOUND for a collection dropped meanwhile, INVALID_INPUT for bad input.
 */
import type { IndexOptions } from '../vector-index';
import { invalid } from '../errors';
import type { FilterTerm } from './filters';
import type { KeywordBuildProgress } from './keyword-index';
import type { KeywordColumn, Product } from './mapping';

/** What a collection may be called: it names files in the data directory, so it never leaves it. */
export const COLLECTION_NAME = /^[\w-]{1,64}$/;
/** What COLLECTION_NAME asks, in words (the library's and the server's messages). */
export const COLLECTION_NAME_RULE = 'must be 1-64 letters, digits, _ or -';

/** `name` when it can name a collection; INVALID_INPUT otherwise. */
export function checkCollectionName(name: unknown): string {
  if (typeof name !== 'string' || !COLLECTION_NAME.test(name)) throw invalid(`collection name '${String(name).slice(0, 80)}' ${COLLECTION_NAME_RULE}`);
  return name;
}

export interface ProductRow {
  vid: number;
  id: string;
  fields: Record<string, unknown>;
  rerankText: string;
}

/** A product as stored, for deciding what a write changes. */
export interface StoredState {
  embedHash: string;
  fields: string;
  rerankText: string;
  /** Whether its stored vectors are those of its current text. */
  indexed: boolean;
}

/** A product to write, with the vectors of its texts when they are new (one per embed template). */
export interface WriteItem {
  product: Product;
  vectors?: Float32Array[];
}

/** A product whose vectors must be made: its texts and their hash. */
export interface PendingRow {
  vid: number;
  id: string;
  /** The texts to embed, as a JSON array. */
  embedTexts: string;
  embedHash: string;
}

/** The vectors of a pending row, or why the embedder refuses its text (the product is then removed). */
export type Settlement = Float32Array[] | string;

export interface Hit {
  vid: number;
  score: number;
}

/** How the vector side of a collection is set up when it is opened. */
export interface PrepareOptions {
  /** Index options of a new collection (the stored ones win for an existing one). */
  index?: Partial<IndexOptions>;
  dim: number;
  /** The model changed: every vector is dropped and every product becomes pending. */
  reset: boolean;
}

/** One collection in a store. */
export interface CollectionStore {
  readonly name: string;
  getMeta(key: string): Promise<string | undefined>;
  setMeta(key: string, value: string): Promise<void>;
  /** Opens or creates the vector side and brings it into agreement with the rows (see the store's header). */
  prepare(options: PrepareOptions): Promise<void>;
  count(): Promise<number>;
  pendingCount(): Promise<number>;
  vectorCount(): Promise<number>;
  /** The stored state of each of `ids` that exists. */
  stored(ids: string[]): Promise<Map<string, StoredState>>;
  /** Writes products (rows, keyword terms, vectors when given) as one batch. */
  write(items: WriteItem[]): Promise<void>;
  /** Up to `limit` pending products. */
  pending(limit: number): Promise<PendingRow[]>;
  /** Stores the vectors of pending products, or removes those the embedder refuses (a string in `results`). */
  settle(rows: PendingRow[], results: Settlement[]): Promise<void>;
  /** Removes products by id; returns how many existed. */
  delete(ids: string[]): Promise<number>;
  /** Best products first by their best vector (at most `slots` per product), `filter` applied inside. */
  recall(query: Float32Array, k: number, slots: number, filter?: FilterTerm[]): Promise<Hit[]>;
  /** The keyword index's columns (empty: none). */
  keywordColumns(): Promise<Required<KeywordColumn>[]>;
  /** Builds the keyword index when it was not built from `columns`, or when `force` says so; [] drops it. Returns whether it built. */
  syncKeywords(columns: Required<KeywordColumn>[], onProgress?: (p: KeywordBuildProgress) => void, force?: boolean): Promise<boolean>;
  /** Products in the keyword index (a scan: for checks at open). */
  keywordCount(): Promise<number>;
  keywordRecall(terms: string[], k: number, filter?: FilterTerm[]): Promise<Hit[]>;
  rows(vids: number[]): Promise<Map<number, ProductRow>>;
  /** Min and max of a numeric top-level field over the collection; (0, 0) when no product has a number there. */
  signalRange(field: string): Promise<{ min: number; max: number }>;
  /** Closes what the collection holds open (the pool of a shared store stays open). */
  close(): Promise<void>;
}

/** A store of collections. */
export interface Store {
  /** 'embedded' or 'postgres', for logs and readiness. */
  readonly kind: 'embedded' | 'postgres';
  /** Where it is, without credentials. */
  readonly location: string;
  names(): Promise<string[]>;
  exists(name: string): Promise<boolean>;
  open(name: string): Promise<CollectionStore>;
  /** Deletes a collection (closed first by the caller). */
  remove(name: string): Promise<void>;
  /** Resolves when the store answers; STORE_UNAVAILABLE otherwise (readiness). */
  ping(): Promise<void>;
  close(): Promise<void>;
}

/** Whether `location` names a Postgres server rather than a data directory. */
export function isPostgresUrl(location: string): boolean {
  return /^postgres(ql)?:\/\//i.test(location);
}
