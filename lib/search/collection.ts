/**
 * A collection: products in SQLite (better-sqlite3) and their vectors in a VectorIndex, kept
 * consistent through crashes. A product's embedding text is hashed; rows whose vectors in the saved
 * index are not of their current text are "pending". Vectors are written to the index, the index is
 * saved atomically, and only then are the rows marked indexed, in one SQLite transaction. Opening a
 * collection reconciles: vectors of unknown or pending products are removed, products whose vectors
 * are missing become pending, and pending products are embedded again. A product is never lost
 * (SQLite holds it) nor duplicated (ids are unique, vectors are keyed by the row), with one
 * exception: a stored product whose text the embedder refuses (an older qrank stored lone
 * surrogates, which `toProduct` now rejects) could never be searched and would stop every later
 * batch, so the batch that meets it removes it, and an ingestion reports it among its errors.
 * A failed open closes what it opened; a mapping is validated when it is given and when it is
 * read back from the meta (see mapping.ts).
 *
 * Keyword index (keyword-index.ts): written in the same SQLite transactions as the products (an
 * upsert writes the product's keyword row, a delete or a removal removes it), so after any crash it
 * holds exactly the stored products. Opening a collection builds it, once, when it was not built
 * from the mapping's keyword columns (a collection made before keyword indexes, or a changed
 * mapping), or when it does not hold as many products as the store; an ingestion with a changed
 * mapping builds it again before its first batch.
 *
 * Lifecycle: searches, ingests and deletes run under a lease. `close` refuses new leases at once,
 * waits for the running ones, then closes the store; from then on every call fails with the reason
 * given to close (COLLECTION_NOT_FOUND for a dropped collection, CLOSED otherwise), never with
 * SQLite's "database connection is not open".
 */
import { createHash } from 'node:crypto';
import { closeSync, existsSync, fstatSync, mkdirSync, openSync, readSync } from 'node:fs';
import { join } from 'node:path';
import type Database from 'better-sqlite3';
import type { Embedder } from '../embedder';
import { QrankError, type QrankErrorCode, invalid } from '../errors';
import { type IndexOptions, VectorIndex } from '../vector-index';
import { type Filter, compileFilter, fieldNameProblem } from './filters';
import { type KeywordBuildProgress, KeywordIndex } from './keyword-index';
import { type KeywordColumn, MAPPING_LIMITS, type Mapping, type Product, keywordColumns, parseMapping, toProduct } from './mapping';
import { type Source, readSource } from './sources';

export type { Mapping } from './mapping';
export type { KeywordBuildProgress } from './keyword-index';

export interface IngestProgress {
  read: number;
  upserted: number;
  unchanged: number;
  embedded: number;
  rejected: number;
}

export interface IngestResult extends IngestProgress {
  /** The first 100 rejections: `at` is the record's line or element, 0 for a stored product (see the header). */
  errors: { at: number; reason: string }[];
}

export interface IngestOptions {
  mapping?: Mapping;
  onProgress?: (p: IngestProgress) => void;
  signal?: AbortSignal;
  /** Records per batch (default 64). */
  batchSize?: number;
  /** Progress of a keyword index build that a changed mapping starts (see the header). */
  onKeywordIndexProgress?: (p: KeywordBuildProgress) => void;
}

/** How a collection is opened: index and mapping of a new one, `reindex` after a model change. */
export interface OpenOptions {
  index?: Partial<IndexOptions>;
  mapping?: Mapping;
  reindex?: boolean;
  /** Progress of the keyword index build that an open may do, once (see the header). */
  onKeywordIndexProgress?: (p: KeywordBuildProgress) => void;
}

/** A collection in the data directory that cannot be opened, and why. */
export interface UnopenableCollection {
  name: string;
  error: { code: string; message: string };
}

export interface CollectionInfo {
  name: string;
  /** Products in the store. */
  size: number;
  /** Products whose vectors are not yet in the saved index. */
  pending: number;
  /** Vectors in the index (one per product, or one per embed template). */
  vectors: number;
  index: IndexOptions;
  mapping?: Mapping;
  /** The embedding model the vectors come from. */
  embedder?: string;
  /** The keyword index's columns and BM25 weights; empty when the collection has none. */
  keywords: Required<KeywordColumn>[];
}

export interface ProductRow {
  vid: number;
  id: string;
  fields: Record<string, unknown>;
  rerankText: string;
}

/** Why a closed collection refuses calls: the code and message of the error they get. */
export interface CloseReason {
  code: QrankErrorCode;
  message: string;
}

/** What a collection may be called: it names files in the data directory, so it never leaves it. */
export const COLLECTION_NAME = /^[\w-]{1,64}$/;

/** `name` when it can name a collection; INVALID_INPUT otherwise. */
export function checkCollectionName(name: unknown): string {
  if (typeof name !== 'string' || !COLLECTION_NAME.test(name)) throw invalid(`collection name '${String(name).slice(0, 80)}' must be 1-64 letters, digits, _ or -`);
  return name;
}

const SLOTS = MAPPING_LIMITS.maxEmbedTemplates; // vectors per product at most: vector id = vid * SLOTS + slot
const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS products (
  vid INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  fields TEXT NOT NULL,
  embed_texts TEXT NOT NULL,
  rerank_text TEXT NOT NULL,
  embed_hash TEXT NOT NULL,
  indexed_hash TEXT
);
CREATE INDEX IF NOT EXISTS products_pending ON products (vid) WHERE indexed_hash IS NOT embed_hash;
`;

const fingerprints = new WeakMap<Embedder, string>();

/**
 * Identifies an embedding model by what it is and by its weights: a hash of 16 samples of 64 KiB
 * spread over the file (hashing gigabytes at every open would be slow; two models that share shape
 * and name still differ in those bytes).
 */
export function fingerprint(embedder: Embedder): string {
  let fp = fingerprints.get(embedder);
  if (fp) return fp;
  const i = embedder.info;
  const h = createHash('sha256');
  const fd = openSync(i.path, 'r');
  try {
    const size = fstatSync(fd).size;
    const chunk = Buffer.alloc(Math.min(65536, size));
    for (let k = 0; k < 16; k++) {
      const at = Math.floor(((size - chunk.length) * k) / 15);
      h.update(chunk.subarray(0, readSync(fd, chunk, 0, chunk.length, at)));
    }
    h.update(String(size));
  } finally {
    closeSync(fd);
  }
  fp = JSON.stringify({ description: i.description, dim: i.embeddingLength, weights: h.digest('hex').slice(0, 32) });
  fingerprints.set(embedder, fp);
  return fp;
}

/**
 * Whether two fingerprints name the same model: the same dimension and sampled weights. The
 * description is for messages only: how it is worded changed (llama.cpp's, then qrank's own from the
 * GGUF metadata) and must not make a collection of the same file a MODEL_MISMATCH.
 */
export function sameModel(a: string, b: string): boolean {
  if (a === b) return true;
  try {
    const x = JSON.parse(a) as { dim?: unknown; weights?: unknown };
    const y = JSON.parse(b) as { dim?: unknown; weights?: unknown };
    return typeof x.weights === 'string' && x.weights === y.weights && x.dim === y.dim;
  } catch {
    return false;
  }
}

export class Collection {
  readonly name: string;
  private readonly db: Database.Database;
  private readonly indexPath: string;
  private index!: VectorIndex;
  private readonly keywords: KeywordIndex;
  private held = new Set<bigint>(); // ids in the in-memory index
  private signalRanges?: Map<string, { min: number; max: number }>;
  // ingest and delete run one at a time per collection (searches go on beside them)
  private writes: Promise<unknown> = Promise.resolve();
  // lifecycle (see the header): running leases, what close waits on, why calls now fail
  private leases = 0;
  private released?: () => void;
  private closing?: Promise<void>;
  private closedBy?: CloseReason;
  private closed = false;
  // statements on the search path, prepared once
  private readonly byVid: Database.Statement;
  private readonly countAll: Database.Statement;
  private readonly countPending: Database.Statement;

  private constructor(name: string, db: Database.Database, indexPath: string, private readonly embedder: Embedder) {
    this.name = name;
    this.db = db;
    this.indexPath = indexPath;
    this.byVid = db.prepare('SELECT vid, id, fields, rerank_text FROM products WHERE vid = ?');
    this.countAll = db.prepare('SELECT count(*) AS n FROM products');
    this.countPending = db.prepare('SELECT count(*) AS n FROM products WHERE indexed_hash IS NOT embed_hash');
    this.keywords = new KeywordIndex(db, { get: (k) => this.meta(k), set: (k, v) => this.setMeta(k, v) });
  }

  static async open(dir: string, name: string, embedder: Embedder, options: OpenOptions = {}): Promise<Collection> {
    checkCollectionName(name);
    const mapping = options.mapping === undefined ? undefined : parseMapping(options.mapping);
    mkdirSync(dir, { recursive: true });
    const db = new (sqlite())(join(dir, `${name}.sqlite`));
    try {
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = FULL');
      db.exec(SCHEMA);
      const c = new Collection(name, db, join(dir, `${name}.qrix`), embedder);
      await c.init({ ...options, mapping });
      return c;
    } catch (err) {
      db.close();
      throw err;
    }
  }

  private meta(key: string): string | undefined {
    return (this.db.prepare('SELECT value FROM meta WHERE key = ?').get(key) as { value: string } | undefined)?.value;
  }

  private setMeta(key: string, value: string): void {
    this.db.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value').run(key, value);
  }

  private async init(options: OpenOptions): Promise<void> {
    const fp = fingerprint(this.embedder);
    const stored = this.meta('embedder');
    const count = this.size;
    const changed = stored !== undefined && !sameModel(stored, fp);
    if (changed && count > 0 && !options.reindex) {
      throw new QrankError('MODEL_MISMATCH', `collection '${this.name}' was embedded with another model (${JSON.parse(stored).description}); ` +
        'vectors of two models never mix: reopen it with { reindex: true } to embed every product again');
    }
    if (options.mapping) this.setMeta('mapping', JSON.stringify(options.mapping));
    if (!this.meta('index')) this.setMeta('index', JSON.stringify({ metric: 'ip', kind: 'hnsw', ...options.index, dim: this.embedder.info.embeddingLength }));
    const spec = JSON.parse(this.meta('index')!) as IndexOptions;
    if (changed || !existsSync(this.indexPath)) {
      spec.dim = this.embedder.info.embeddingLength;
      this.setMeta('index', JSON.stringify(spec));
      this.index = VectorIndex.create(spec);
      this.db.prepare('UPDATE products SET indexed_hash = NULL').run();
    } else {
      this.index = await VectorIndex.load(this.indexPath);
    }
    this.setMeta('embedder', fp);
    this.held = new Set(this.index.ids());
    await this.syncKeywords(options.onKeywordIndexProgress);
    await this.reconcile();
  }

  // Builds the keyword index if it was not built from the mapping, or lost products (see the header).
  private async syncKeywords(onProgress?: (p: KeywordBuildProgress) => void): Promise<void> {
    const mapping = this.mapping;
    if (!mapping) return;
    const built = await this.keywords.sync(keywordColumns(mapping), onProgress);
    if (!built && this.keywords.enabled && this.keywords.count() !== this.size) await this.keywords.sync(keywordColumns(mapping), onProgress, true);
  }

  get size(): number {
    this.checkOpen();
    return (this.countAll.get() as { n: number }).n;
  }

  /** The stored mapping; one that is invalid (written by an older qrank) counts as none here, and ingest says why. */
  get mapping(): Mapping | undefined {
    this.checkOpen();
    try {
      return this.storedMapping();
    } catch {
      return undefined;
    }
  }

  private storedMapping(): Mapping | undefined {
    const stored = this.meta('mapping');
    if (stored === undefined) return undefined;
    try {
      return parseMapping(JSON.parse(stored));
    } catch (err) {
      throw invalid(`the stored mapping of collection '${this.name}' is invalid (${(err as Error).message}); send a valid mapping with the next documents`);
    }
  }

  /** Products whose vectors in the saved index are not those of their current text. */
  pendingCount(): number {
    this.checkOpen();
    return (this.countPending.get() as { n: number }).n;
  }

  // Brings store and index into agreement after whatever happened last (see the header).
  private async reconcile(): Promise<void> {
    const rows = this.db.prepare('SELECT vid, embed_texts, embed_hash, indexed_hash FROM products').all() as {
      vid: number; embed_texts: string; embed_hash: string; indexed_hash: string | null;
    }[];
    const expected = new Set<bigint>();
    const missing: number[] = [];
    for (const r of rows) {
      if (r.indexed_hash !== r.embed_hash) continue;
      const ids = vectorIds(r.vid, JSON.parse(r.embed_texts).length);
      if (ids.every((id) => this.held.has(id))) ids.forEach((id) => expected.add(id));
      else missing.push(r.vid);
    }
    const stray = [...this.held].filter((id) => !expected.has(id));
    if (missing.length) {
      const mark = this.db.prepare('UPDATE products SET indexed_hash = NULL WHERE vid = ?');
      this.db.transaction(() => missing.forEach((vid) => mark.run(vid)))();
    }
    if (stray.length) {
      await this.index.remove(stray);
      stray.forEach((id) => this.held.delete(id));
      await this.index.save(this.indexPath);
    }
    if (this.pendingCount() > 0) await this.embedPending();
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
  info(): CollectionInfo {
    this.checkOpen();
    return {
      name: this.name,
      size: this.size,
      pending: this.pendingCount(),
      vectors: this.index.size,
      index: JSON.parse(this.meta('index') ?? '{}') as IndexOptions,
      mapping: this.mapping,
      embedder: JSON.parse(this.meta('embedder') ?? 'null')?.description,
      keywords: this.keywords.columns,
    };
  }

  /** Adds or updates products. Unchanged texts are not embedded again. Writes to one collection run one at a time. */
  ingest(source: Source, options: IngestOptions = {}): Promise<IngestResult> {
    return this.lease(() => this.exclusive(() => this.ingestNow(source, options)));
  }

  private async ingestNow(source: Source, options: IngestOptions): Promise<IngestResult> {
    const mapping = options.mapping === undefined ? this.storedMapping() : parseMapping(options.mapping);
    if (!mapping) throw invalid('ingest needs a mapping (id field, embed and rerank templates) the first time');
    const batchSize = options.batchSize ?? 64;
    if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > 10_000) throw invalid(`options.batchSize must be an integer from 1 to 10000, got ${batchSize}`);
    if (options.mapping !== undefined) this.setMeta('mapping', JSON.stringify(mapping));
    await this.keywords.sync(keywordColumns(mapping), options.onKeywordIndexProgress);
    const result: IngestResult = { read: 0, upserted: 0, unchanged: 0, embedded: 0, rejected: 0, errors: [] };
    const reject = (at: number, reason: string) => {
      result.rejected++;
      if (result.errors.length < 100) result.errors.push({ at, reason });
    };
    const upsert = this.db.prepare(`INSERT INTO products (id, fields, embed_texts, rerank_text, embed_hash) VALUES (@id, @fields, @embed, @rerank, @hash)
      ON CONFLICT(id) DO UPDATE SET fields = excluded.fields, embed_texts = excluded.embed_texts, rerank_text = excluded.rerank_text, embed_hash = excluded.embed_hash
      RETURNING vid`);
    const current = this.db.prepare('SELECT embed_hash, fields, rerank_text FROM products WHERE id = ?');
    let batch: Product[] = [];
    const flush = async () => {
      const write = this.db.transaction((items: typeof batch) => {
        for (const p of items) {
          const before = current.get(p.id) as { embed_hash: string; fields: string; rerank_text: string } | undefined;
          if (before && before.embed_hash === p.hash && before.fields === p.fields && before.rerank_text === p.rerank) {
            result.unchanged++;
            continue;
          }
          const { vid } = upsert.get(p) as { vid: number };
          this.keywords.put(vid, p.keywords);
          result.upserted++;
        }
      });
      write(batch);
      batch = [];
      this.signalRanges = undefined;
      const { embedded, removed } = await this.embedPending(options.signal);
      result.embedded += embedded;
      for (const r of removed) reject(0, `stored product '${r.id}' was removed: the embedder refuses its text (${r.reason})`);
      options.onProgress?.({ ...result, errors: undefined } as unknown as IngestProgress);
    };
    for await (const item of readSource(source)) {
      if (options.signal?.aborted) throw new QrankError('ABORTED', 'ingestion aborted; what was written so far is consistent');
      result.read++;
      const product = item.record ? toProduct(item.record, mapping) : { error: item.error ?? 'unreadable' };
      if ('error' in product) {
        reject(item.at, product.error);
        continue;
      }
      batch.push(product);
      if (batch.length >= batchSize) await flush();
    }
    if (batch.length) await flush();
    return result;
  }

  /**
   * Embeds every pending product, in batches; each batch ends with an atomic index save. A product
   * whose text the embedder refuses is removed in that batch's transaction (see the header).
   */
  private async embedPending(signal?: AbortSignal): Promise<{ embedded: number; removed: { id: string; reason: string }[] }> {
    const select = this.db.prepare('SELECT vid, id, embed_texts, embed_hash FROM products WHERE indexed_hash IS NOT embed_hash LIMIT 256');
    const mark = this.db.prepare('UPDATE products SET indexed_hash = ? WHERE vid = ?');
    const remove = this.db.prepare('DELETE FROM products WHERE vid = ?');
    let embedded = 0;
    const removed: { id: string; reason: string }[] = [];
    for (;;) {
      const rows = select.all() as PendingRow[];
      if (rows.length === 0) return { embedded, removed };
      const vectors = await this.embedRows(rows, signal);
      const stale = rows.flatMap((r) => vectorIds(r.vid, SLOTS)).filter((id) => this.held.has(id));
      if (stale.length) {
        await this.index.remove(stale);
        stale.forEach((id) => this.held.delete(id));
      }
      const ids = rows.flatMap((r, i) => (typeof vectors[i] === 'string' ? [] : vectorIds(r.vid, vectors[i].length)));
      if (ids.length) {
        await this.index.add(ids, vectors.filter((v): v is Float32Array[] => typeof v !== 'string').flat());
        ids.forEach((id) => this.held.add(id));
      }
      await this.index.save(this.indexPath);
      this.db.transaction(() => rows.forEach((r, i) => {
        const refusal = vectors[i];
        if (typeof refusal === 'string') {
          remove.run(r.vid);
          this.keywords.remove(r.vid);
          removed.push({ id: r.id, reason: refusal });
        } else {
          mark.run(r.embed_hash, r.vid);
          embedded++;
        }
      }))();
    }
  }

  /**
   * The vectors of each row's texts, or the reason the embedder refuses them (INVALID_INPUT). The
   * rows are embedded together; only when that is refused is each row embedded alone, to tell the
   * rows it refuses from the others. Other failures (aborted, closed) are thrown.
   */
  private async embedRows(rows: PendingRow[], signal?: AbortSignal): Promise<(Float32Array[] | string)[]> {
    const texts = rows.map((r) => JSON.parse(r.embed_texts) as string[]);
    try {
      const flat = await this.embedder.embed(texts.flat(), { kind: 'document', signal });
      let at = 0;
      return texts.map((t) => flat.slice(at, (at += t.length)));
    } catch (err) {
      if (!isRefusal(err)) throw err;
    }
    const each = await Promise.allSettled(texts.map((t) => this.embedder.embed(t, { kind: 'document', signal })));
    return each.map((r) => {
      if (r.status === 'fulfilled') return r.value;
      if (isRefusal(r.reason)) return r.reason.message;
      throw r.reason;
    });
  }

  /** Removes products from the store and their vectors from the index; returns how many existed. */
  delete(ids: string[]): Promise<number> {
    return this.lease(() => this.exclusive(() => this.deleteNow(ids)));
  }

  private async deleteNow(ids: string[]): Promise<number> {
    const find = this.db.prepare('SELECT vid FROM products WHERE id = ?');
    const vids = ids.map((id) => (find.get(id) as { vid: number } | undefined)?.vid).filter((v): v is number => v !== undefined);
    const del = this.db.prepare('DELETE FROM products WHERE vid = ?');
    this.db.transaction(() => vids.forEach((v) => {
      del.run(v);
      this.keywords.remove(v);
    }))();
    const gone = vids.flatMap((v) => vectorIds(v, SLOTS)).filter((id) => this.held.has(id));
    if (gone.length) {
      await this.index.remove(gone);
      gone.forEach((id) => this.held.delete(id));
      await this.index.save(this.indexPath);
    }
    this.signalRanges = undefined;
    return vids.length;
  }

  /**
   * Vector recall: best products first, by their best vector; `filter` applies inside the search.
   * The store is read before the first await only, so a close that has begun does not stop it.
   */
  async recall(query: Float32Array, k: number, filter?: Filter): Promise<{ vid: number; score: number }[]> {
    this.checkOpen();
    const sql = compileFilter(filter);
    let allow: bigint[] | undefined;
    if (sql) {
      const rows = this.db.prepare(`SELECT vid, embed_texts FROM products WHERE ${sql.where}`).all(...sql.params) as { vid: number; embed_texts: string }[];
      allow = rows.flatMap((r) => vectorIds(r.vid, JSON.parse(r.embed_texts).length));
      if (allow.length === 0) return [];
    }
    const slots = this.maxSlots();
    const [hits] = await this.index.search(query, Math.min(k * slots, 100_000), { filter: allow, efSearch: Math.max(64, k * slots) });
    const best = new Map<number, number>();
    hits.ids.forEach((id, i) => {
      const vid = Number(id / BigInt(SLOTS));
      if (!best.has(vid)) best.set(vid, hits.scores[i]);
    });
    return [...best.entries()].slice(0, k).map(([vid, score]) => ({ vid, score }));
  }

  /** Whether the collection has a keyword index to recall from. */
  get hasKeywordIndex(): boolean {
    this.checkOpen();
    return this.keywords.enabled;
  }

  /**
   * Keyword recall: the best k products for the query's terms (keyword-text.ts) by BM25, best first;
   * `filter` applies inside the search. Synchronous (SQLite), like every read of the store.
   */
  keywordRecall(terms: string[], k: number, filter?: Filter): { vid: number; score: number }[] {
    this.checkOpen();
    return this.keywords.search(terms, k, compileFilter(filter));
  }

  private maxSlots(): number {
    const m = this.mapping;
    return m && Array.isArray(m.embed) ? m.embed.length : 1;
  }

  rows(vids: number[]): Map<number, ProductRow> {
    this.checkOpen();
    const out = new Map<number, ProductRow>();
    for (const vid of vids) {
      const r = this.byVid.get(vid) as { vid: number; id: string; fields: string; rerank_text: string } | undefined;
      if (r) out.set(vid, { vid: r.vid, id: r.id, fields: JSON.parse(r.fields), rerankText: r.rerank_text });
    }
    return out;
  }

  /**
   * Min and max of a numeric field of the mapping over the collection (fusion normalises signals
   * with them). Read from an index on the field (made on first use; SQLite keeps it through every
   * write): two lookups, never a scan, and cached until the next write. Values stored as text (an
   * empty CSV cell) are not numbers and do not count; (0, 0) when no product has a number there.
   */
  signalRange(field: string): { min: number; max: number } {
    this.checkOpen();
    const cached = this.signalRanges?.get(field);
    if (cached) return cached;
    const numeric = this.mapping?.numeric ?? [];
    const problem = fieldNameProblem(field) ?? (numeric.includes(field) ? undefined : `not a numeric field of collection '${this.name}' (mapping.numeric: ${numeric.join(', ') || 'none'})`);
    if (problem) throw invalid(`fusion.signals.${field}: ${problem}`);
    // the field is a top-level key (as the mapping stores it), quoted since it may hold dots;
    // identifiers and dots only, so safe in the SQL text. Numbers sort before text in SQLite.
    const value = `json_extract(fields, '$."${field}"')`;
    this.db.exec(`CREATE INDEX IF NOT EXISTS "signal:${field}" ON products (${value})`);
    const bound = (fn: 'min' | 'max') => (this.db.prepare(`SELECT ${fn}(${value}) AS v FROM products WHERE ${value} < ''`).get() as { v: number | null }).v ?? 0;
    const range = { min: bound('min'), max: bound('max') };
    (this.signalRanges ??= new Map()).set(field, range);
    return range;
  }

  get vectorCount(): number {
    return this.index.size;
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
   * right after (reading `size`, say) still works. Calling it again returns the same promise.
   */
  close(reason: CloseReason = { code: 'CLOSED', message: `collection '${this.name}' is closed` }): Promise<void> {
    this.closing ??= this.closeWhenReleased(reason);
    return this.closing;
  }

  private async closeWhenReleased(reason: CloseReason): Promise<void> {
    this.closedBy = reason;
    if (this.leases > 0) await new Promise<void>((resolve) => (this.released = resolve));
    await new Promise((resolve) => setImmediate(resolve));
    this.db.close();
    this.closed = true;
  }

  // `forLease`: refused as soon as close has begun; otherwise only once the store is closed
  private checkOpen(forLease = false): void {
    if (this.closedBy && (forLease || this.closed)) throw new QrankError(this.closedBy.code, this.closedBy.message);
  }
}

/** Why collections cannot work here (better-sqlite3 missing), or undefined when they can. */
export function collectionsUnsupported(): string | undefined {
  try {
    sqlite();
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}

// better-sqlite3 is an optional dependency: rerank, embed and the vector index need no SQLite, and an
// install without a compiler (no prebuilt SQLite binary can be downloaded) must still work.
function sqlite(): typeof Database {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require('better-sqlite3') as typeof Database;
  } catch (err) {
    throw new QrankError('UNSUPPORTED', `collections need the optional package better-sqlite3, which is not installed (${(err as Error).message.split('\n')[0]}); ` +
      'install it with `npm install better-sqlite3` (it compiles SQLite where no prebuilt binary can be downloaded)');
  }
}

function vectorIds(vid: number, n: number): bigint[] {
  return Array.from({ length: n }, (_, slot) => BigInt(vid) * BigInt(SLOTS) + BigInt(slot));
}

interface PendingRow {
  vid: number;
  id: string;
  embed_texts: string;
  embed_hash: string;
}

function isRefusal(err: unknown): err is QrankError {
  return err instanceof QrankError && err.code === 'INVALID_INPUT';
}
