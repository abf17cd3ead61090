/**
 * The Postgres store: collections in Postgres with pgvector, so several qrank processes (replicas)
 * serve one catalog. The connection, retries, timeouts and migrations are pg-db.ts.
 *
 * Schema: `qrank_collections` (name -> id) and `qrank_meta` (per collection key/value), then two
 * tables per collection, named by its id (never by its name: names only ever travel as bound
 * values, and an id keeps every identifier under Postgres' 63 bytes):
 * - `qrank_products_<id>`: vid, key (the product id as JSON: text cannot hold U+0000), fields (the
 *   record's JSON as given), doc (jsonb of the fields for filters, U+0000 removed: jsonb cannot hold
 *   it), embed_texts, rerank_text (JSON), embed_hash, indexed_hash (pending when it differs), and the
 *   keyword terms: keyword_terms (tsvector of every column's terms, GIN-indexed, for matching) and
 *   keyword_columns (one tsvector per keyword column, for ranking).
 * - `qrank_vectors_<id>`: (vid, slot) -> embedding vector(dim), one row per embed template, deleted
 *   with its product; an HNSW index (`vector_ip_ops`, the collection's m and efConstruction) unless
 *   the collection's index kind is 'flat' (exact search).
 * A table per collection rather than one with a collection column: each collection has its own
 * dimension (a `vector(dim)` column and its HNSW index take one), its own index options, and a drop
 * is a DROP TABLE, not the deletion (and vacuum) of millions of rows among the others'.
 *
 * Writes: a batch is one transaction: each product's row, its keyword terms and (when its text is
 * new) its vectors commit together, so the embedded store's reconciliation is not needed; a row is
 * pending only when another writer changed its text meanwhile, or after a model change.
 *
 * Recall: one query, the filter as SQL predicates over `doc` (pg-filters.ts) in the same statement
 * as the vector order. With pgvector >= 0.8 the HNSW scan is iterative (`hnsw.iterative_scan =
 * strict_order`), so a selective filter still returns k products; when it returns fewer than asked
 * (an older pgvector, or the scan's tuple budget spent), the same query runs exactly over the
 * filtered products. Keyword recall: the query's terms (keyword-text.ts, as in SQLite) as a
 * tsquery over keyword_terms, ranked by the columns' weights times ts_rank, at most
 * MAX_KEYWORD_POSTINGS matching products scored (the most recent). Signal ranges: two lookups on a
 * partial expression index made on first use, never cached (another replica may have written).
 */
import { createHash } from 'node:crypto';
import type { PoolClient } from 'pg';
import { QrankError, invalid } from '../errors';
import { type IndexOptions, MAX_SEARCH_K } from '../vector-index';
import type { FilterTerm } from './filters';
import { type KeywordBuildProgress, BUILD_BATCH, KEYWORD_ANALYZER_VERSION, MAX_KEYWORD_POSTINGS, type KeywordSpec } from './keyword-index';
import { keywordTerms } from './keyword-text';
import { type KeywordColumn, keywordTexts } from './mapping';
import { DDL_LOCK, PgDb } from './pg-db';
import { pgFilter, withoutNul } from './pg-filters';
import type { CollectionStore, Hit, PendingRow, PrepareOptions, ProductRow, Settlement, Store, StoredState, WriteItem } from './store';

/** Candidates one vector query returns at most (products x their vectors): the embedded store's bound. */
const MAX_VECTOR_ROWS = MAX_SEARCH_K;
/** pgvector's largest hnsw.ef_search. */
const MAX_EF_SEARCH = 1000;
/** Postgres' longest lexeme, in bytes (longer terms are left out of the keyword index). */
const MAX_LEXEME_BYTES = 2047;
/** Bytes of one keyword column's tsvector at most: 8 columns and their union stay under Postgres' 1 MB per tsvector. */
const MAX_TSVECTOR_BYTES = 96 * 1024;
/** Positions Postgres keeps per lexeme, and the largest position. */
const MAX_POSITIONS = 256;
const MAX_POSITION = 16383;

/** Collections in one Postgres database. */
export class PostgresStore implements Store {
  readonly kind = 'postgres';

  private constructor(private readonly db: PgDb) {}

  /** A store on `url` (postgres://user:password@host:port/db). Connects on first use (see pg-db.ts). */
  static async connect(url: string): Promise<PostgresStore> {
    return new PostgresStore(new PgDb(url));
  }

  get location(): string {
    return this.db.where;
  }

  async names(): Promise<string[]> {
    return (await this.db.query<{ name: string }>('SELECT name FROM qrank_collections ORDER BY name')).map((r) => r.name);
  }

  async exists(name: string): Promise<boolean> {
    return (await this.db.query('SELECT 1 FROM qrank_collections WHERE name = $1', [name])).length > 0;
  }

  /** Registers the collection and creates its products table if it is new (under the DDL lock). */
  async open(name: string): Promise<CollectionStore> {
    const id = await this.db.tx(async (c) => {
      await c.query('SELECT pg_advisory_xact_lock($1)', [DDL_LOCK]);
      await c.query('INSERT INTO qrank_collections (name) VALUES ($1) ON CONFLICT (name) DO NOTHING', [name]);
      const { rows } = await c.query<{ id: number }>('SELECT id FROM qrank_collections WHERE name = $1', [name]);
      const t = tables(rows[0].id);
      await c.query(`CREATE TABLE IF NOT EXISTS ${t.products} (
        vid bigserial PRIMARY KEY,
        key text NOT NULL UNIQUE,
        fields text NOT NULL,
        doc jsonb NOT NULL,
        embed_texts text NOT NULL,
        rerank_text text NOT NULL,
        embed_hash text NOT NULL,
        indexed_hash text,
        keyword_terms tsvector,
        keyword_columns tsvector[])`);
      await c.query(`CREATE INDEX IF NOT EXISTS ${t.name('pending')} ON ${t.products} (vid) WHERE indexed_hash IS DISTINCT FROM embed_hash`);
      await c.query(`CREATE INDEX IF NOT EXISTS ${t.name('terms')} ON ${t.products} USING gin (keyword_terms)`);
      return rows[0].id;
    });
    return new PostgresCollectionStore(this.db, name, id);
  }

  async remove(name: string): Promise<void> {
    await this.db.tx(async (c) => {
      await c.query('SELECT pg_advisory_xact_lock($1)', [DDL_LOCK]);
      const { rows } = await c.query<{ id: number }>('DELETE FROM qrank_collections WHERE name = $1 RETURNING id', [name]);
      if (rows.length === 0) return;
      const t = tables(rows[0].id);
      await c.query(`DROP TABLE IF EXISTS ${t.vectors}, ${t.products}`);
    });
  }

  ping(): Promise<void> {
    return this.db.ping();
  }

  close(): Promise<void> {
    return this.db.close();
  }
}

/** The identifiers of collection `id`'s tables (digits only: safe, and quoted anyway). */
function tables(id: number) {
  if (!Number.isSafeInteger(id)) throw new QrankError('ENGINE_FAILURE', `unexpected collection id ${id}`);
  return {
    products: `"qrank_products_${id}"`,
    vectors: `"qrank_vectors_${id}"`,
    name: (what: string) => `"qrank_${id}_${what}"`,
  };
}

interface ProductRecord {
  vid: string;
  key: string;
  fields: string;
  rerank_text: string;
  embed_texts: string;
  embed_hash: string;
  indexed_hash: string | null;
}

class PostgresCollectionStore implements CollectionStore {
  private readonly t: ReturnType<typeof tables>;
  private exact = false;
  private efSearch = 64;

  constructor(
    private readonly db: PgDb,
    readonly name: string,
    private readonly id: number,
  ) {
    this.t = tables(id);
  }

  async getMeta(key: string): Promise<string | undefined> {
    return (await this.db.query<{ value: string }>('SELECT value FROM qrank_meta WHERE collection = $1 AND key = $2', [this.id, key]))[0]?.value;
  }

  async setMeta(key: string, value: string): Promise<void> {
    await this.db.query('INSERT INTO qrank_meta (collection, key, value) VALUES ($1, $2, $3) ON CONFLICT (collection, key) DO UPDATE SET value = excluded.value', [this.id, key, value]);
  }

  /** The vectors table of the stored dimension (made again, every product pending, on a model change). */
  async prepare(options: PrepareOptions): Promise<void> {
    const stored = await this.getMeta('index');
    const spec = checkIndex(stored ? (JSON.parse(stored) as IndexOptions) : { metric: 'ip', kind: 'hnsw', ...options.index, dim: options.dim });
    spec.dim = options.dim;
    await this.db.tx(async (c) => {
      await c.query('SELECT pg_advisory_xact_lock($1)', [DDL_LOCK]);
      const exists = (await c.query('SELECT to_regclass($1) AS r', [this.t.vectors.replace(/"/g, '')])).rows[0].r !== null;
      if (options.reset && exists) {
        await c.query(`DROP TABLE ${this.t.vectors}`);
        await c.query(`UPDATE ${this.t.products} SET indexed_hash = NULL`);
      }
      if (options.reset || !exists) {
        await c.query(`CREATE TABLE ${this.t.vectors} (vid bigint NOT NULL REFERENCES ${this.t.products} (vid) ON DELETE CASCADE, slot smallint NOT NULL, embedding vector(${spec.dim}) NOT NULL, PRIMARY KEY (vid, slot))`);
        if (spec.kind !== 'flat') {
          await c.query(`CREATE INDEX ${this.t.name('hnsw')} ON ${this.t.vectors} USING hnsw (embedding vector_ip_ops) WITH (m = ${spec.m ?? 16}, ef_construction = ${spec.efConstruction ?? 128})`);
        }
      }
      await c.query('INSERT INTO qrank_meta (collection, key, value) VALUES ($1, $2, $3) ON CONFLICT (collection, key) DO UPDATE SET value = excluded.value', [this.id, 'index', JSON.stringify(spec)]);
    });
    this.exact = spec.kind === 'flat';
    this.efSearch = spec.efSearch ?? 64;
  }

  async count(): Promise<number> {
    return Number((await this.db.query<{ n: string }>(`SELECT count(*) AS n FROM ${this.t.products}`))[0].n);
  }

  async pendingCount(): Promise<number> {
    return Number((await this.db.query<{ n: string }>(`SELECT count(*) AS n FROM ${this.t.products} WHERE indexed_hash IS DISTINCT FROM embed_hash`))[0].n);
  }

  async vectorCount(): Promise<number> {
    return Number((await this.db.query<{ n: string }>(`SELECT count(*) AS n FROM ${this.t.vectors}`))[0].n);
  }

  async stored(ids: string[]): Promise<Map<string, StoredState>> {
    const rows = await this.db.query<ProductRecord>(`SELECT key, fields, rerank_text, embed_hash, indexed_hash FROM ${this.t.products} WHERE key = ANY($1::text[])`, [ids.map(keyOf)]);
    return new Map(rows.map((r) => [JSON.parse(r.key) as string, { embedHash: r.embed_hash, fields: r.fields, rerankText: JSON.parse(r.rerank_text) as string, indexed: r.indexed_hash === r.embed_hash }]));
  }

  /** One transaction: every row and its keyword terms, and the vectors given (see the header). */
  async write(items: WriteItem[]): Promise<void> {
    const spec = await this.keywordSpec();
    await this.db.tx(async (c) => {
      const embedded: { vid: string; vectors: Float32Array[] }[] = [];
      for (const { product: p, vectors } of items) {
        const kw = keywordValues(spec.columns, p.keywords);
        const { rows } = await c.query<{ vid: string }>(
          `INSERT INTO ${this.t.products} AS p (key, fields, doc, embed_texts, rerank_text, embed_hash, indexed_hash, keyword_terms, keyword_columns)
           VALUES ($1, $2, $3::jsonb, $4, $5, $6, $7, $8::tsvector, $9::tsvector[])
           ON CONFLICT (key) DO UPDATE SET fields = excluded.fields, doc = excluded.doc, embed_texts = excluded.embed_texts, rerank_text = excluded.rerank_text,
             embed_hash = excluded.embed_hash, keyword_terms = excluded.keyword_terms, keyword_columns = excluded.keyword_columns,
             indexed_hash = CASE WHEN $7::text IS NOT NULL THEN $7::text WHEN p.embed_hash = excluded.embed_hash THEN p.indexed_hash END
           RETURNING vid`,
          [keyOf(p.id), p.fields, docOf(p.fields), p.embed, JSON.stringify(p.rerank), p.hash, vectors ? p.hash : null, kw.terms, kw.columns],
        );
        if (vectors) embedded.push({ vid: rows[0].vid, vectors });
      }
      await this.replaceVectors(c, embedded);
    });
  }

  private async replaceVectors(c: PoolClient, rows: { vid: string; vectors: Float32Array[] }[]): Promise<void> {
    if (rows.length === 0) return;
    await c.query(`DELETE FROM ${this.t.vectors} WHERE vid = ANY($1::bigint[])`, [rows.map((r) => r.vid)]);
    const vids = rows.flatMap((r) => r.vectors.map(() => r.vid));
    const slots = rows.flatMap((r) => r.vectors.map((_, slot) => slot));
    const values = rows.flatMap((r) => r.vectors.map(vectorLiteral));
    await c.query(`INSERT INTO ${this.t.vectors} (vid, slot, embedding) SELECT * FROM unnest($1::bigint[], $2::smallint[], $3::text[]::vector[])`, [vids, slots, values]);
  }

  async pending(limit: number): Promise<PendingRow[]> {
    const rows = await this.db.query<ProductRecord>(`SELECT vid, key, embed_texts, embed_hash FROM ${this.t.products} WHERE indexed_hash IS DISTINCT FROM embed_hash ORDER BY vid LIMIT $1`, [limit]);
    return rows.map((r) => ({ vid: Number(r.vid), id: JSON.parse(r.key) as string, embedTexts: r.embed_texts, embedHash: r.embed_hash }));
  }

  /** One transaction: refused products deleted; the others marked indexed (while their text is that hash) with their vectors. */
  async settle(rows: PendingRow[], results: Settlement[]): Promise<void> {
    const refused = rows.filter((_, i) => typeof results[i] === 'string').map((r) => r.vid);
    const given = rows.flatMap((r, i) => (typeof results[i] === 'string' ? [] : [{ row: r, vectors: results[i] as Float32Array[] }]));
    await this.db.tx(async (c) => {
      if (refused.length) await c.query(`DELETE FROM ${this.t.products} WHERE vid = ANY($1::bigint[])`, [refused]);
      const marked = await c.query<{ vid: string }>(
        `UPDATE ${this.t.products} AS p SET indexed_hash = u.hash FROM unnest($1::bigint[], $2::text[]) AS u(vid, hash) WHERE p.vid = u.vid AND p.embed_hash = u.hash RETURNING p.vid`,
        [given.map((g) => g.row.vid), given.map((g) => g.row.embedHash)],
      );
      const still = new Set(marked.rows.map((r) => Number(r.vid)));
      await this.replaceVectors(c, given.filter((g) => still.has(g.row.vid)).map((g) => ({ vid: String(g.row.vid), vectors: g.vectors })));
    });
  }

  async delete(ids: string[]): Promise<number> {
    return (await this.db.query(`DELETE FROM ${this.t.products} WHERE key = ANY($1::text[]) RETURNING vid`, [ids.map(keyOf)])).length;
  }

  /**
   * One statement, the filter inside (see the header); exact over the filtered products when the
   * index scan returns fewer than asked.
   */
  async recall(query: Float32Array, k: number, slots: number, filter?: FilterTerm[]): Promise<Hit[]> {
    const wanted = Math.min(k * slots, MAX_VECTOR_ROWS);
    const params: unknown[] = [vectorLiteral(query), wanted];
    const where = filter ? `WHERE v.vid IN (SELECT vid FROM ${this.t.products} WHERE ${pgFilter(filter, params)})` : '';
    const select = `SELECT v.vid, (v.embedding <#> $1::vector) AS distance FROM ${this.t.vectors} v ${where}`;
    const exact = `WITH c AS MATERIALIZED (${select}) SELECT vid, distance FROM c ORDER BY distance LIMIT $2`;
    let rows: { vid: string; distance: number }[];
    if (this.exact) {
      rows = await this.db.query(exact, params);
    } else {
      rows = await this.db.tx(async (c) => {
        await c.query(`SET LOCAL hnsw.ef_search = ${Math.min(MAX_EF_SEARCH, Math.max(this.efSearch, wanted))}`);
        if (this.db.iterativeScans) await c.query("SET LOCAL hnsw.iterative_scan = 'strict_order'");
        return (await c.query(`${select} ORDER BY distance LIMIT $2`, params)).rows;
      });
      if (rows.length < wanted && filter) rows = await this.db.query(exact, params);
    }
    const best = new Map<number, number>();
    for (const r of rows) {
      const vid = Number(r.vid);
      if (!best.has(vid)) best.set(vid, -r.distance);
    }
    return [...best.entries()].slice(0, k).map(([vid, score]) => ({ vid, score }));
  }

  private async keywordSpec(): Promise<KeywordSpec> {
    const stored = await this.getMeta('keywords');
    return stored === undefined ? { analyzer: KEYWORD_ANALYZER_VERSION, columns: [] } : (JSON.parse(stored) as KeywordSpec);
  }

  async keywordColumns(): Promise<Required<KeywordColumn>[]> {
    return (await this.keywordSpec()).columns;
  }

  /** Rewrites every product's keyword terms, BUILD_BATCH per transaction, then records the spec. */
  async syncKeywords(columns: Required<KeywordColumn>[], onProgress?: (p: KeywordBuildProgress) => void, force = false): Promise<boolean> {
    const wanted: KeywordSpec = { analyzer: KEYWORD_ANALYZER_VERSION, columns };
    const stored = await this.getMeta('keywords');
    if (!force && stored !== undefined && stored === JSON.stringify(wanted)) return false;
    const total = await this.count();
    let done = 0;
    let after = 0;
    onProgress?.({ done, total });
    for (;;) {
      const rows = await this.db.query<ProductRecord>(`SELECT vid, fields FROM ${this.t.products} WHERE vid > $1 ORDER BY vid LIMIT $2`, [after, BUILD_BATCH]);
      if (rows.length === 0) break;
      const values = rows.map((r) => keywordValues(columns, keywordTexts(columns, JSON.parse(r.fields))));
      await this.db.query(
        `UPDATE ${this.t.products} AS p SET keyword_terms = u.terms::tsvector, keyword_columns = u.columns::tsvector[] FROM unnest($1::bigint[], $2::text[], $3::text[]) AS u(vid, terms, columns) WHERE p.vid = u.vid`,
        [rows.map((r) => r.vid), values.map((v) => v.terms), values.map((v) => (v.columns === null ? null : arrayLiteral(v.columns)))],
      );
      done += rows.length;
      after = Number(rows[rows.length - 1].vid);
      onProgress?.({ done, total });
    }
    await this.setMeta('keywords', JSON.stringify(wanted));
    return true;
  }

  async keywordCount(): Promise<number> {
    return Number((await this.db.query<{ n: string }>(`SELECT count(*) AS n FROM ${this.t.products} WHERE keyword_columns IS NOT NULL`))[0].n);
  }

  async keywordRecall(terms: string[], k: number, filter?: FilterTerm[]): Promise<Hit[]> {
    const spec = await this.keywordSpec();
    const lexemes = terms.filter(fitsLexeme);
    if (spec.columns.length === 0 || lexemes.length === 0) return [];
    const params: unknown[] = [lexemes.map((t) => `'${t}'`).join(' | '), spec.columns.map((c) => c.weight), k, MAX_KEYWORD_POSTINGS];
    const where = filter ? `AND ${pgFilter(filter, params)}` : '';
    const rows = await this.db.query<{ vid: string; score: number }>(
      `WITH m AS (SELECT vid, keyword_columns FROM ${this.t.products} WHERE keyword_terms @@ $1::tsquery ${where} ORDER BY vid DESC LIMIT $4)
       SELECT vid, (SELECT sum(u.w * ts_rank(u.c, $1::tsquery)) FROM unnest(m.keyword_columns, $2::float8[]) AS u(c, w)) AS score
       FROM m ORDER BY score DESC, vid DESC LIMIT $3`,
      params,
    );
    return rows.map((r) => ({ vid: Number(r.vid), score: Number(r.score) }));
  }

  async rows(vids: number[]): Promise<Map<number, ProductRow>> {
    if (vids.length === 0) return new Map();
    const rows = await this.db.query<ProductRecord>(`SELECT vid, key, fields, rerank_text FROM ${this.t.products} WHERE vid = ANY($1::bigint[])`, [vids]);
    return new Map(rows.map((r) => [Number(r.vid), { vid: Number(r.vid), id: JSON.parse(r.key) as string, fields: JSON.parse(r.fields) as Record<string, unknown>, rerankText: JSON.parse(r.rerank_text) as string }]));
  }

  /** `field` is a checked field name (the collection checks it): identifiers and dots, safe as a quoted literal in the index expression. */
  async signalRange(field: string): Promise<{ min: number; max: number }> {
    const value = `(doc -> '${field}')`;
    const index = this.t.name(`signal_${createHash('sha256').update(field).digest('hex').slice(0, 16)}`);
    await this.db.query(`CREATE INDEX IF NOT EXISTS ${index} ON ${this.t.products} (${value}) WHERE jsonb_typeof${value} = 'number'`);
    const bound = (order: 'ASC' | 'DESC') => `(SELECT ${value}::text::float8 FROM ${this.t.products} WHERE jsonb_typeof${value} = 'number' ORDER BY ${value} ${order} LIMIT 1)`;
    const [r] = await this.db.query<{ min: number | null; max: number | null }>(`SELECT ${bound('ASC')} AS min, ${bound('DESC')} AS max`);
    return { min: r.min ?? 0, max: r.max ?? 0 };
  }

  async close(): Promise<void> {}
}

/** The index options Postgres can serve: flat (exact) or HNSW, inner product, f32. */
function checkIndex(spec: IndexOptions): IndexOptions {
  const kind = spec.kind ?? 'hnsw';
  if (kind !== 'hnsw' && kind !== 'flat') throw new QrankError('UNSUPPORTED', `index kind '${String(kind)}' is not served by the Postgres store: use 'hnsw' (pgvector's HNSW) or 'flat' (exact search)`);
  if ((spec.metric ?? 'ip') !== 'ip') throw new QrankError('UNSUPPORTED', `metric '${String(spec.metric)}' is not served by the Postgres store: qrank's embeddings are unit vectors, use 'ip'`);
  if ((spec.storage ?? 'f32') !== 'f32') throw new QrankError('UNSUPPORTED', `storage '${String(spec.storage)}' is not served by the Postgres store (vector(dim) holds f32)`);
  const bounded = (name: 'm' | 'efConstruction' | 'efSearch', min: number, max: number) => {
    const v = spec[name];
    if (v !== undefined && !(Number.isInteger(v) && v >= min && v <= max)) throw invalid(`index.${name} must be an integer from ${min} to ${max} in the Postgres store, got ${String(v)}`);
  };
  bounded('m', 2, 100);
  bounded('efConstruction', 4, 1000);
  bounded('efSearch', 1, MAX_EF_SEARCH);
  if ((spec.efConstruction ?? 128) < 2 * (spec.m ?? 16)) throw invalid('index.efConstruction must be at least twice index.m in the Postgres store (pgvector)');
  return { ...spec, kind, metric: 'ip' };
}

/** The product id as stored (JSON: a text column cannot hold U+0000). */
function keyOf(id: string): string {
  return JSON.stringify(id);
}

/** The fields as jsonb text for filters: jsonb cannot hold U+0000, so it is removed there (pg-filters.ts does the same to filter values). */
function docOf(fieldsJson: string): string {
  return JSON.stringify(withoutNul(JSON.parse(fieldsJson)));
}

/** pgvector's text form of a vector: the shortest decimal of each float32, read back exactly. */
function vectorLiteral(v: Float32Array): string {
  return `[${Array.from(v).join(',')}]`;
}

function fitsLexeme(term: string): boolean {
  return Buffer.byteLength(term) <= MAX_LEXEME_BYTES;
}

/**
 * A product's keyword columns as tsvector text, and the union of their lexemes (no positions) for
 * matching; nulls when the collection has no keyword index. Terms are letters, digits and marks only
 * (keyword-text.ts), so quoting them is enough; each column is cut at MAX_TSVECTOR_BYTES.
 */
function keywordValues(columns: Required<KeywordColumn>[], texts: string[]): { terms: string | null; columns: string[] | null } {
  if (columns.length === 0) return { terms: null, columns: null };
  const all = new Set<string>();
  const perColumn = texts.map((text) => {
    const positions = new Map<string, number[]>();
    let bytes = 0;
    keywordTerms(text).forEach((term, i) => {
      if (!fitsLexeme(term)) return;
      let at = positions.get(term);
      if (!at) {
        bytes += Buffer.byteLength(term) + 8;
        if (bytes > MAX_TSVECTOR_BYTES) return;
        positions.set(term, (at = []));
      }
      if (at.length < MAX_POSITIONS) {
        at.push(Math.min(i + 1, MAX_POSITION));
        bytes += 2;
      }
      all.add(term);
    });
    return [...positions].map(([term, at]) => `'${term}':${[...new Set(at)].join(',')}`).join(' ');
  });
  return { terms: [...all].map((t) => `'${t}'`).join(' '), columns: perColumn };
}

/** A Postgres array literal of strings (for one value of an unnest over rows). */
function arrayLiteral(values: string[]): string {
  return `{${values.map((v) => `"${v.replace(/["\\]/g, (c) => `\\${c}`)}"`).join(',')}}`;
}
