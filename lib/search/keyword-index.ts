/**
 * The keyword index of a collection: an FTS5 table in the collection's SQLite database, one row per
 * product (rowid = the product's vid), one column per keyword column of the mapping, holding the
 * terms that keyword-text.ts makes of the column's text. It is contentless (the text is in the
 * products already; `contentless_delete` lets rows be replaced and deleted).
 *
 * Consistency: `put` and `remove` run inside the caller's transaction, the one that writes or
 * deletes the product, so a crash leaves the products and the keyword index in agreement. The
 * index remembers what it was built from (meta `keywords`: analyzer version, column templates and
 * weights). `sync` builds it when that differs from the mapping (a collection made before keyword
 * indexes, a changed mapping, a new analyzer): into a second table, in batches of BUILD_BATCH
 * products (with progress), then dropped over the old one and recorded in one transaction, so a
 * crash during a build leaves the old index and its record, and the next `sync` starts again.
 * Searches during a build (a mapping changed by an ingestion) read the old index.
 *
 * Search: the query's terms (never its text: see keyword-text.ts) joined by OR, ranked by FTS5's
 * bm25 with the columns' weights; a filter joins the products and applies inside the search, so a
 * filtered keyword recall still returns k products when k products match.
 *
 * Bounded work: a search scores every product that holds one of its terms, so when the terms'
 * document frequencies add up to more than MAX_KEYWORD_POSTINGS, the most common terms (the lowest
 * IDF, the least said about a product) are left out until they fit, the rarest always kept; terms
 * no product holds are left out too (they change no score). When the rarest alone is held by more
 * products than that, the products scored are the MAX_KEYWORD_POSTINGS most recently added of those
 * holding it. Below the budget the ranking is FTS5's bm25 over every term. Frequencies come from
 * FTS5's vocabulary (fts5vocab), cached until the next write.
 */
import type Database from 'better-sqlite3';
import { type KeywordColumn, keywordTexts } from './mapping';
import type { SqlFilter } from './filters';
import { keywordTerms, matchExpression } from './keyword-text';

/** Bumped when keyword-text.ts makes other terms of the same text: every index is built again. */
export const KEYWORD_ANALYZER_VERSION = 1;
/** Products written per transaction while an index is built. */
export const BUILD_BATCH = 2000;
/** Postings (products holding a term, summed over the terms) one keyword search reads at most, but for its rarest term. */
export const MAX_KEYWORD_POSTINGS = 100_000;
// document frequencies cached between writes, at most this many terms
const DF_CACHE_TERMS = 10_000;

const TABLE = 'keywords';
const BUILDING = 'keywords_build';
const VOCABULARY = 'temp.keywords_vocabulary';
const META_KEY = 'keywords';
// letters, digits and marks are term characters, so the terms of keyword-text.ts stay whole
const TOKENIZER = `unicode61 remove_diacritics 2 categories 'L* N* Co M*'`;

export interface KeywordSpec {
  analyzer: number;
  columns: Required<KeywordColumn>[];
}

/** Progress of a build: products indexed so far, of `total`. */
export interface KeywordBuildProgress {
  done: number;
  total: number;
}

/** The meta table of the collection, read and written by the collection's own accessors. */
export interface MetaAccess {
  get(key: string): string | undefined;
  set(key: string, value: string): void;
}

export class KeywordIndex {
  private spec?: KeywordSpec;
  private insert?: Database.Statement;
  private remover?: Database.Statement;
  private docFrequency?: Database.Statement;
  private readonly dfCache = new Map<string, number>();

  constructor(
    private readonly db: Database.Database,
    private readonly meta: MetaAccess,
  ) {
    const stored = meta.get(META_KEY);
    this.spec = stored === undefined ? undefined : (JSON.parse(stored) as KeywordSpec);
    this.prepare();
  }

  /** Whether searches can use the index: it was built and has columns. */
  get enabled(): boolean {
    return (this.spec?.columns.length ?? 0) > 0;
  }

  /** The columns the index was built with (empty when it is off or not built). */
  get columns(): Required<KeywordColumn>[] {
    return this.spec?.columns ?? [];
  }

  /**
   * Builds the index when it was not built from `columns` (see the header), or when `force` says
   * so; [] drops it. Returns whether it built.
   */
  async sync(columns: Required<KeywordColumn>[], onProgress?: (p: KeywordBuildProgress) => void, force = false): Promise<boolean> {
    const wanted: KeywordSpec = { analyzer: KEYWORD_ANALYZER_VERSION, columns };
    if (!force && this.spec && JSON.stringify(this.spec) === JSON.stringify(wanted)) return false;
    if (columns.length > 0) await this.build(columns, onProgress);
    this.db.transaction(() => {
      this.db.exec(`DROP TABLE IF EXISTS ${TABLE}`);
      if (columns.length > 0) this.db.exec(`ALTER TABLE ${BUILDING} RENAME TO ${TABLE}`);
      this.meta.set(META_KEY, JSON.stringify(wanted));
    })();
    this.spec = wanted;
    this.prepare();
    return true;
  }

  // Fills a fresh BUILDING table from every product, a batch per transaction, yielding between them.
  private async build(columns: Required<KeywordColumn>[], onProgress?: (p: KeywordBuildProgress) => void): Promise<void> {
    this.db.exec(`DROP TABLE IF EXISTS ${BUILDING}`);
    this.db.exec(createTable(BUILDING, columns.length));
    const insert = this.db.prepare(insertSql(BUILDING, columns.length));
    const page = this.db.prepare('SELECT vid, fields FROM products WHERE vid > ? ORDER BY vid LIMIT ?');
    const total = (this.db.prepare('SELECT count(*) AS n FROM products').get() as { n: number }).n;
    const write = this.db.transaction((rows: { vid: number; fields: string }[]) => {
      for (const r of rows) insert.run(r.vid, ...termColumns(keywordTexts(columns, JSON.parse(r.fields))));
    });
    let done = 0;
    let after = 0;
    onProgress?.({ done, total });
    for (;;) {
      const rows = page.all(after, BUILD_BATCH) as { vid: number; fields: string }[];
      if (rows.length === 0) break;
      write(rows);
      done += rows.length;
      after = rows[rows.length - 1].vid;
      onProgress?.({ done, total });
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  private prepare(): void {
    const n = this.columns.length;
    this.dfCache.clear();
    this.insert = n ? this.db.prepare(insertSql(TABLE, n)) : undefined;
    this.remover = n ? this.db.prepare(`DELETE FROM ${TABLE} WHERE rowid = ?`) : undefined;
    if (n) this.db.exec(`CREATE VIRTUAL TABLE IF NOT EXISTS ${VOCABULARY} USING fts5vocab(main, ${TABLE}, 'row')`);
    this.docFrequency = n ? this.db.prepare(`SELECT doc FROM ${VOCABULARY} WHERE term = ?`) : undefined;
  }

  /** Writes a product's keyword texts (one per column); inside the transaction that writes the product. */
  put(vid: number, texts: string[]): void {
    this.insert?.run(vid, ...termColumns(texts));
    this.dfCache.clear();
  }

  /** Removes a product; inside the transaction that deletes it. */
  remove(vid: number): void {
    this.remover?.run(vid);
    this.dfCache.clear();
  }

  // Products holding `term` (cached until the next write).
  private df(term: string): number {
    let n = this.dfCache.get(term);
    if (n === undefined) {
      n = (this.docFrequency!.get(term) as { doc: number } | undefined)?.doc ?? 0;
      if (this.dfCache.size >= DF_CACHE_TERMS) this.dfCache.clear();
      this.dfCache.set(term, n);
    }
    return n;
  }

  /**
   * The terms a search reads (see the header): those some product holds, rarest first, within
   * MAX_KEYWORD_POSTINGS, and their postings.
   */
  plan(terms: string[]): { terms: string[]; postings: number } {
    if (!this.enabled) return { terms: [], postings: 0 };
    const held = terms.map((t) => ({ t, df: this.df(t) })).filter((x) => x.df > 0).sort((a, b) => a.df - b.df);
    let postings = 0;
    const kept = held.filter((x, i) => (i === 0 || postings + x.df <= MAX_KEYWORD_POSTINGS) && (postings += x.df) > 0);
    return { terms: kept.map((x) => x.t), postings };
  }

  /** Products indexed (a scan of the index: for checks, not for every search). */
  count(): number {
    return this.enabled ? (this.db.prepare(`SELECT count(*) AS n FROM ${TABLE}`).get() as { n: number }).n : 0;
  }

  /**
   * The best k products for the terms, best first, with their BM25 score (higher is better);
   * `filter` restricts the search to the products it matches. [] for no terms or no index.
   */
  search(terms: string[], k: number, filter?: SqlFilter): { vid: number; score: number }[] {
    const plan = this.plan(terms);
    const match = matchExpression(plan.terms);
    if (!match) return [];
    const weights = this.columns.map((c) => String(c.weight)).join(', ');
    const join = filter ? `JOIN products ON products.vid = ${TABLE}.rowid` : '';
    const where = filter ? `AND (${filter.where})` : '';
    let sql = `SELECT ${TABLE}.rowid AS vid, bm25(${TABLE}, ${weights}) AS rank FROM ${TABLE} ${join} WHERE ${TABLE} MATCH ? ${where}`;
    // one term held by more products than the budget: score the most recent MAX_KEYWORD_POSTINGS of them
    const bounded = plan.postings > MAX_KEYWORD_POSTINGS;
    if (bounded) sql = `SELECT vid, rank FROM (${sql} ORDER BY ${TABLE}.rowid DESC LIMIT ${MAX_KEYWORD_POSTINGS})`;
    const rows = this.db.prepare(`${sql} ORDER BY rank LIMIT ?`).all(match, ...(filter?.params ?? []), k) as { vid: number; rank: number }[];
    return rows.map((r) => ({ vid: r.vid, score: -r.rank }));
  }
}

function createTable(name: string, columns: number): string {
  const cols = Array.from({ length: columns }, (_, i) => `c${i}`).join(', ');
  return `CREATE VIRTUAL TABLE ${name} USING fts5(${cols}, content='', contentless_delete=1, tokenize="${TOKENIZER}")`;
}

function insertSql(name: string, columns: number): string {
  const cols = Array.from({ length: columns }, (_, i) => `c${i}`).join(', ');
  return `INSERT OR REPLACE INTO ${name} (rowid, ${cols}) VALUES (?, ${Array(columns).fill('?').join(', ')})`;
}

// The terms of each text, as FTS5 reads them: separated by spaces.
function termColumns(texts: string[]): string[] {
  return texts.map((t) => keywordTerms(t).join(' '));
}
