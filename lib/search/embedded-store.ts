/**
 * The embedded store: a collection is one SQLite database (better-sqlite3, WAL, synchronous=FULL)
 * and one VectorIndex file in a data directory, kept consistent through crashes. A product's
 * embedding text is hashed; rows whose vectors in the saved index are not of their current text are
 * "pending". Vectors are written to the index, the index is saved atomically, and only then are the
 * rows marked indexed, in one SQLite transaction. `prepare` (at open) reconciles: vectors of unknown
 * or pending products are removed and products whose vectors are missing become pending (the
 * collection then embeds them). A product is never lost (SQLite holds it) nor duplicated (ids are
 * unique, vectors are keyed by the row: vector id = vid x SLOTS + slot).
 *
 * Keyword index (keyword-index.ts): an FTS5 table in the same database, written in the same SQLite
 * transactions as the products, so after any crash it holds exactly the stored products.
 *
 * One process owns a collection's files: reads are SQLite's (synchronous, wrapped in promises for
 * the Store interface), and signal ranges are cached until the next write through this process.
 */
import { existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type Database from 'better-sqlite3';
import { type IndexOptions, MAX_SEARCH_K, VectorIndex } from '../vector-index';
import { type FilterTerm, sqliteFilter } from './filters';
import { type KeywordBuildProgress, KeywordIndex } from './keyword-index';
import { type KeywordColumn, MAPPING_LIMITS } from './mapping';
import { sqlite } from './sqlite';
import { COLLECTION_NAME, type CollectionStore, type Hit, type PendingRow, type PrepareOptions, type ProductRow, type Settlement, type Store, type StoredState, type WriteItem } from './store';

/** Vectors per product at most: vector id = vid * SLOTS + slot. */
export const SLOTS = MAPPING_LIMITS.maxEmbedTemplates;
const FILES = ['.sqlite', '.sqlite-wal', '.sqlite-shm', '.qrix'];
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

/** Collections as files in a data directory. */
export class EmbeddedStore implements Store {
  readonly kind = 'embedded';

  constructor(readonly location: string) {}

  async names(): Promise<string[]> {
    if (!existsSync(this.location)) return [];
    return readdirSync(this.location)
      .filter((f) => f.endsWith('.sqlite'))
      .map((f) => f.slice(0, -'.sqlite'.length))
      .filter((name) => COLLECTION_NAME.test(name))
      .sort();
  }

  async exists(name: string): Promise<boolean> {
    return existsSync(join(this.location, `${name}.sqlite`));
  }

  async open(name: string): Promise<CollectionStore> {
    return EmbeddedCollectionStore.open(this.location, name);
  }

  async remove(name: string): Promise<void> {
    for (const suffix of FILES) rmSync(join(this.location, name + suffix), { force: true });
  }

  async ping(): Promise<void> {}

  async close(): Promise<void> {}
}

export class EmbeddedCollectionStore implements CollectionStore {
  private index!: VectorIndex;
  private readonly keywords: KeywordIndex;
  private held = new Set<bigint>(); // ids in the in-memory index
  private signalRanges?: Map<string, { min: number; max: number }>;
  // statements on the search path, prepared once
  private readonly byVid: Database.Statement;
  private readonly countAll: Database.Statement;
  private readonly countPending: Database.Statement;

  private constructor(
    readonly name: string,
    private readonly db: Database.Database,
    private readonly indexPath: string,
  ) {
    this.byVid = db.prepare('SELECT vid, id, fields, rerank_text FROM products WHERE vid = ?');
    this.countAll = db.prepare('SELECT count(*) AS n FROM products');
    this.countPending = db.prepare('SELECT count(*) AS n FROM products WHERE indexed_hash IS NOT embed_hash');
    this.keywords = new KeywordIndex(db, { get: (k) => this.meta(k), set: (k, v) => this.putMeta(k, v) });
  }

  /** Opens (creating) the database; a failure closes it. */
  static open(dir: string, name: string): EmbeddedCollectionStore {
    mkdirSync(dir, { recursive: true });
    const db = new (sqlite())(join(dir, `${name}.sqlite`));
    try {
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = FULL');
      db.exec(SCHEMA);
      return new EmbeddedCollectionStore(name, db, join(dir, `${name}.qrix`));
    } catch (err) {
      db.close();
      throw err;
    }
  }

  private meta(key: string): string | undefined {
    return (this.db.prepare('SELECT value FROM meta WHERE key = ?').get(key) as { value: string } | undefined)?.value;
  }

  private putMeta(key: string, value: string): void {
    this.db.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value').run(key, value);
  }

  async getMeta(key: string): Promise<string | undefined> {
    return this.meta(key);
  }

  async setMeta(key: string, value: string): Promise<void> {
    this.putMeta(key, value);
  }

  async prepare(options: PrepareOptions): Promise<void> {
    if (!this.meta('index')) this.putMeta('index', JSON.stringify({ metric: 'ip', kind: 'hnsw', ...options.index, dim: options.dim }));
    const spec = JSON.parse(this.meta('index')!) as IndexOptions;
    if (options.reset || !existsSync(this.indexPath)) {
      spec.dim = options.dim;
      this.putMeta('index', JSON.stringify(spec));
      this.index = VectorIndex.create(spec);
      this.db.prepare('UPDATE products SET indexed_hash = NULL').run();
    } else {
      this.index = await VectorIndex.load(this.indexPath);
    }
    this.held = new Set(this.index.ids());
    await this.reconcile();
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
      await this.removeVectors(stray);
      await this.index.save(this.indexPath);
    }
  }

  async count(): Promise<number> {
    return (this.countAll.get() as { n: number }).n;
  }

  async pendingCount(): Promise<number> {
    return (this.countPending.get() as { n: number }).n;
  }

  async vectorCount(): Promise<number> {
    return this.index.size;
  }

  async stored(ids: string[]): Promise<Map<string, StoredState>> {
    const current = this.db.prepare('SELECT embed_hash, fields, rerank_text, indexed_hash FROM products WHERE id = ?');
    const out = new Map<string, StoredState>();
    for (const id of ids) {
      const r = current.get(id) as { embed_hash: string; fields: string; rerank_text: string; indexed_hash: string | null } | undefined;
      if (r) out.set(id, { embedHash: r.embed_hash, fields: r.fields, rerankText: r.rerank_text, indexed: r.indexed_hash === r.embed_hash });
    }
    return out;
  }

  /** The rows in one transaction (a changed text leaves its row pending), then the vectors given, by the protocol of the header. */
  async write(items: WriteItem[]): Promise<void> {
    const upsert = this.db.prepare(`INSERT INTO products (id, fields, embed_texts, rerank_text, embed_hash) VALUES (@id, @fields, @embed, @rerank, @hash)
      ON CONFLICT(id) DO UPDATE SET fields = excluded.fields, embed_texts = excluded.embed_texts, rerank_text = excluded.rerank_text, embed_hash = excluded.embed_hash
      RETURNING vid`);
    const embedded: { vid: number; hash: string; vectors: Float32Array[] }[] = [];
    this.db.transaction(() => {
      for (const { product, vectors } of items) {
        const { vid } = upsert.get(product) as { vid: number };
        this.keywords.put(vid, product.keywords);
        if (vectors) embedded.push({ vid, hash: product.hash, vectors });
      }
    })();
    this.signalRanges = undefined;
    if (embedded.length) await this.storeVectors(embedded);
  }

  async pending(limit: number): Promise<PendingRow[]> {
    const rows = this.db.prepare('SELECT vid, id, embed_texts, embed_hash FROM products WHERE indexed_hash IS NOT embed_hash LIMIT ?').all(limit) as { vid: number; id: string; embed_texts: string; embed_hash: string }[];
    return rows.map((r) => ({ vid: r.vid, id: r.id, embedTexts: r.embed_texts, embedHash: r.embed_hash }));
  }

  async settle(rows: PendingRow[], results: Settlement[]): Promise<void> {
    const refused = rows.filter((_, i) => typeof results[i] === 'string');
    const embedded = rows.flatMap((r, i) => (typeof results[i] === 'string' ? [] : [{ vid: r.vid, hash: r.embedHash, vectors: results[i] as Float32Array[] }]));
    await this.storeVectors(embedded, refused.map((r) => r.vid));
  }

  /**
   * Replaces the vectors of the rows, saves the index, then marks them indexed (only while their
   * text is still that hash) and deletes the `refused` rows, in one transaction.
   */
  private async storeVectors(rows: { vid: number; hash: string; vectors: Float32Array[] }[], refused: number[] = []): Promise<void> {
    const stale = [...rows.map((r) => r.vid), ...refused].flatMap((vid) => vectorIds(vid, SLOTS)).filter((id) => this.held.has(id));
    if (stale.length) await this.removeVectors(stale);
    const ids = rows.flatMap((r) => vectorIds(r.vid, r.vectors.length));
    if (ids.length) {
      await this.index.add(ids, rows.flatMap((r) => r.vectors));
      ids.forEach((id) => this.held.add(id));
    }
    await this.index.save(this.indexPath);
    const mark = this.db.prepare('UPDATE products SET indexed_hash = ? WHERE vid = ? AND embed_hash = ?');
    const remove = this.db.prepare('DELETE FROM products WHERE vid = ?');
    this.db.transaction(() => {
      for (const r of rows) mark.run(r.hash, r.vid, r.hash);
      for (const vid of refused) {
        remove.run(vid);
        this.keywords.remove(vid);
      }
    })();
  }

  private async removeVectors(ids: bigint[]): Promise<void> {
    await this.index.remove(ids);
    ids.forEach((id) => this.held.delete(id));
  }

  async delete(ids: string[]): Promise<number> {
    const find = this.db.prepare('SELECT vid FROM products WHERE id = ?');
    const vids = ids.map((id) => (find.get(id) as { vid: number } | undefined)?.vid).filter((v): v is number => v !== undefined);
    const del = this.db.prepare('DELETE FROM products WHERE vid = ?');
    this.db.transaction(() => vids.forEach((v) => {
      del.run(v);
      this.keywords.remove(v);
    }))();
    const gone = vids.flatMap((v) => vectorIds(v, SLOTS)).filter((id) => this.held.has(id));
    if (gone.length) {
      await this.removeVectors(gone);
      await this.index.save(this.indexPath);
    }
    this.signalRanges = undefined;
    return vids.length;
  }

  /**
   * The filter's products (read from SQLite before the first await, so a close that has begun does
   * not stop it) become the index's allow-list.
   */
  async recall(query: Float32Array, k: number, slots: number, filter?: FilterTerm[]): Promise<Hit[]> {
    const sql = sqliteFilter(filter);
    let allow: bigint[] | undefined;
    if (sql) {
      const rows = this.db.prepare(`SELECT vid, embed_texts FROM products WHERE ${sql.where}`).all(...sql.params) as { vid: number; embed_texts: string }[];
      allow = rows.flatMap((r) => vectorIds(r.vid, JSON.parse(r.embed_texts).length));
      if (allow.length === 0) return [];
    }
    const [hits] = await this.index.search(query, Math.min(k * slots, MAX_SEARCH_K), { filter: allow, efSearch: Math.max(64, k * slots) });
    const best = new Map<number, number>();
    hits.ids.forEach((id, i) => {
      const vid = productOf(id);
      if (!best.has(vid)) best.set(vid, hits.scores[i]);
    });
    return [...best.entries()].slice(0, k).map(([vid, score]) => ({ vid, score }));
  }

  async keywordColumns(): Promise<Required<KeywordColumn>[]> {
    return this.keywords.columns;
  }

  async syncKeywords(columns: Required<KeywordColumn>[], onProgress?: (p: KeywordBuildProgress) => void, force = false): Promise<boolean> {
    return this.keywords.sync(columns, onProgress, force);
  }

  async keywordCount(): Promise<number> {
    return this.keywords.count();
  }

  async keywordRecall(terms: string[], k: number, filter?: FilterTerm[]): Promise<Hit[]> {
    return this.keywords.search(terms, k, sqliteFilter(filter));
  }

  async rows(vids: number[]): Promise<Map<number, ProductRow>> {
    const out = new Map<number, ProductRow>();
    for (const vid of vids) {
      const r = this.byVid.get(vid) as { vid: number; id: string; fields: string; rerank_text: string } | undefined;
      if (r) out.set(vid, { vid: r.vid, id: r.id, fields: JSON.parse(r.fields), rerankText: r.rerank_text });
    }
    return out;
  }

  /**
   * Read from an index on the field (made on first use; SQLite keeps it through every write): two
   * lookups, never a scan, and cached until the next write. Values stored as text (an empty CSV
   * cell) are not numbers and do not count. `field` is a checked field name (the collection checks it).
   */
  async signalRange(field: string): Promise<{ min: number; max: number }> {
    const cached = this.signalRanges?.get(field);
    if (cached) return cached;
    // the field is a top-level key (as the mapping stores it), quoted since it may hold dots;
    // identifiers and dots only, so safe in the SQL text. Numbers sort before text in SQLite.
    const value = `json_extract(fields, '$."${field}"')`;
    this.db.exec(`CREATE INDEX IF NOT EXISTS "signal:${field}" ON products (${value})`);
    const bound = (fn: 'min' | 'max') => (this.db.prepare(`SELECT ${fn}(${value}) AS v FROM products WHERE ${value} < ''`).get() as { v: number | null }).v ?? 0;
    const range = { min: bound('min'), max: bound('max') };
    (this.signalRanges ??= new Map()).set(field, range);
    return range;
  }

  async close(): Promise<void> {
    this.db.close();
  }
}

/** The ids of a product's first `n` vectors (the encoding vid * SLOTS + slot; productOf inverts it). */
function vectorIds(vid: number, n: number): bigint[] {
  return Array.from({ length: n }, (_, slot) => BigInt(vid) * BigInt(SLOTS) + BigInt(slot));
}

/** The product (row vid) a vector id belongs to. */
function productOf(id: bigint): number {
  return Number(id / BigInt(SLOTS));
}
