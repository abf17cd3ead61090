/**
 * The Postgres connection of the Postgres store: a node-postgres pool with bounded waits, retries,
 * the schema migrations and the translation of Postgres failures into QrankError codes.
 *
 * - Bounded: a connection is waited for at most CONNECT_TIMEOUT_MS, a statement runs at most
 *   STATEMENT_TIMEOUT_MS (the server's statement_timeout and the client's query_timeout both), so a
 *   request never hangs on a store that stopped answering.
 * - Retries: a statement or a transaction that fails on a serialization failure, a deadlock or a
 *   dropped connection is run again (RETRIES times, with a growing pause). Every write qrank makes is
 *   idempotent (upserts keyed by id, vectors replaced per product), so running one again after a
 *   connection dropped at COMMIT is safe. What still fails is STORE_UNAVAILABLE (the server's /ready
 *   and search routes answer 503 with it).
 * - Schema: qrank creates and migrates its tables itself, under an advisory lock, in one transaction
 *   per version; `qrank_schema` records each version applied. A store migrated by a newer qrank
 *   (a version this one does not know) is refused, never written. The first use of the store runs
 *   them (not the connect), so a server can start while Postgres is down and become ready when it
 *   is up.
 * - Extensions: pgvector (`vector`) is required; a server that lacks it gets an error naming it and
 *   how to install it. Keyword recall uses Postgres' built-in full-text search (no extension).
 */
import { Pool, type PoolClient, type QueryResultRow } from 'pg';
import { QrankError } from '../errors';

export const CONNECT_TIMEOUT_MS = 3000;
export const STATEMENT_TIMEOUT_MS = 15_000;
export const RETRIES = 3;
const PING_TIMEOUT_MS = 2000;
const POOL_SIZE = 10;
// one advisory lock key for qrank's DDL (any constant: it only has to be the same in every qrank)
export const DDL_LOCK = 7_265_726_174;

/** The migrations, in order: version i + 1 is MIGRATIONS[i]. Never edit one that shipped; add one. */
const MIGRATIONS: string[] = [
  `CREATE TABLE qrank_collections (id serial PRIMARY KEY, name text NOT NULL UNIQUE, created_at timestamptz NOT NULL DEFAULT now());
   CREATE TABLE qrank_meta (collection integer NOT NULL REFERENCES qrank_collections (id) ON DELETE CASCADE, key text NOT NULL, value text NOT NULL, PRIMARY KEY (collection, key));`,
];
export const SCHEMA_VERSION = MIGRATIONS.length;

const CONNECTION_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', '57P01', '57P02', '57P03', '08000', '08001', '08003', '08004', '08006']);
const RETRY_CODES = new Set(['40001', '40P01']);

type PgError = Error & { code?: string };

/** Whether `err` says the connection to the server failed or dropped (not the statement). */
function isConnectionError(err: unknown): boolean {
  const e = err as PgError;
  if (e?.code && CONNECTION_CODES.has(e.code)) return true;
  return /Connection terminated|connection error|timeout exceeded when trying to connect|Connection timeout|not queryable|ECONNREFUSED/i.test(e?.message ?? '');
}

function isRetryable(err: unknown): boolean {
  return isConnectionError(err) || RETRY_CODES.has((err as PgError)?.code ?? '');
}

/** A Postgres failure as a QrankError (see the header); QrankErrors pass through. */
export function storeError(err: unknown, where: string): QrankError {
  if (err instanceof QrankError) return err;
  const e = err as PgError;
  const message = e?.message ?? String(err);
  if (isConnectionError(err) || e?.code === '57014' || /Query read timeout/.test(message)) {
    return new QrankError('STORE_UNAVAILABLE', `the Postgres store at ${where} is unavailable (${message})`, { cause: err });
  }
  if (e?.code === '42P01') return new QrankError('COLLECTION_NOT_FOUND', `the collection's tables are gone from ${where} (dropped by another qrank)`, { cause: err });
  if (e?.code?.startsWith('22') || e?.code === '54000') return new QrankError('INVALID_INPUT', `Postgres refused a value: ${message}`, { cause: err });
  return new QrankError('ENGINE_FAILURE', `Postgres at ${where}: ${message}`, { cause: err });
}

/** The URL without its password, for messages and logs. */
export function redact(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return 'postgres://(unparsable URL)';
  }
}

export class PgDb {
  private readonly pool: Pool;
  private schema?: Promise<void>;
  private closed = false;
  /** The pgvector version on the server, once the schema is ready. */
  vectorVersion = '';

  constructor(url: string, readonly where = redact(url)) {
    this.pool = new Pool({
      connectionString: url,
      max: POOL_SIZE,
      connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
      query_timeout: STATEMENT_TIMEOUT_MS,
      statement_timeout: STATEMENT_TIMEOUT_MS,
      idleTimeoutMillis: 10_000,
      application_name: 'qrank',
    });
    // an idle connection the server drops must not crash the process; the next query reconnects
    this.pool.on('error', () => undefined);
  }

  /** Runs `sql` (retried, see the header) once the schema is ready. */
  async query<R extends QueryResultRow = QueryResultRow>(sql: string, params: unknown[] = []): Promise<R[]> {
    await this.ready();
    return this.retrying(async () => (await this.pool.query<R>(sql, params)).rows);
  }

  /** Runs `fn` in one transaction (retried as a whole, see the header) once the schema is ready. */
  async tx<T>(fn: (c: PoolClient) => Promise<T>): Promise<T> {
    await this.ready();
    return this.transaction(fn);
  }

  private async transaction<T>(fn: (c: PoolClient) => Promise<T>): Promise<T> {
    return this.retrying(async () => {
      const client = await this.pool.connect();
      let broken: unknown;
      try {
        await client.query('BEGIN');
        const out = await fn(client);
        await client.query('COMMIT');
        return out;
      } catch (err) {
        broken = isConnectionError(err) ? err : undefined;
        if (!broken) await client.query('ROLLBACK').catch((e: unknown) => (broken = e));
        throw err;
      } finally {
        client.release(broken as Error | undefined); // a broken connection is not given back to the pool
      }
    });
  }

  private async retrying<T>(fn: () => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      this.checkOpen();
      try {
        return await fn();
      } catch (err) {
        if (attempt >= RETRIES || !isRetryable(err) || this.closed) throw storeError(err, this.where);
        await new Promise((resolve) => setTimeout(resolve, 50 * 2 ** attempt));
      }
    }
  }

  /** Resolves when the server answers within PING_TIMEOUT_MS and the schema is ready; STORE_UNAVAILABLE otherwise. */
  async ping(): Promise<void> {
    await this.ready();
    try {
      await this.pool.query({ text: 'SELECT 1', query_timeout: PING_TIMEOUT_MS } as never);
    } catch (err) {
      throw storeError(err, this.where);
    }
  }

  /** The schema, migrated once per process (again after a failure: the server may be back). */
  ready(): Promise<void> {
    this.checkOpen();
    this.schema ??= this.migrate().catch((err: unknown) => {
      this.schema = undefined;
      throw storeError(err, this.where);
    });
    return this.schema;
  }

  private async migrate(): Promise<void> {
    await this.transaction(async (c) => {
      await c.query('SELECT pg_advisory_xact_lock($1)', [DDL_LOCK]);
      const available = await c.query<{ installed_version: string | null }>("SELECT installed_version FROM pg_available_extensions WHERE name = 'vector'");
      if (available.rows.length === 0) {
        throw new QrankError('UNSUPPORTED', `the Postgres server at ${this.where} lacks the extension 'vector' (pgvector), which the Postgres store needs: ` +
          'install it on the server (Debian: apt-get install postgresql-<version>-pgvector; managed services: enable pgvector), then restart qrank');
      }
      if (available.rows[0].installed_version === null) {
        try {
          await c.query('CREATE EXTENSION IF NOT EXISTS vector');
        } catch (err) {
          throw new QrankError('UNSUPPORTED', `the extension 'vector' (pgvector) is not created in this database and qrank may not create it (${(err as Error).message}): ` +
            "run CREATE EXTENSION vector as the database's owner once", { cause: err });
        }
      }
      await c.query('CREATE TABLE IF NOT EXISTS qrank_schema (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())');
      const at = Number((await c.query<{ v: number | null }>('SELECT max(version) AS v FROM qrank_schema')).rows[0].v ?? 0);
      if (at > SCHEMA_VERSION) {
        throw new QrankError('UNSUPPORTED', `the Postgres store at ${this.where} has schema version ${at}, made by a newer qrank; this one knows up to ${SCHEMA_VERSION}: upgrade qrank`);
      }
      for (let v = at + 1; v <= SCHEMA_VERSION; v++) {
        await c.query(MIGRATIONS[v - 1]);
        await c.query('INSERT INTO qrank_schema (version) VALUES ($1)', [v]);
      }
      this.vectorVersion = (await c.query<{ v: string }>("SELECT extversion AS v FROM pg_extension WHERE extname = 'vector'")).rows[0]?.v ?? '';
    });
  }

  /** Whether pgvector has iterative index scans (0.8.0 and later). */
  get iterativeScans(): boolean {
    const [major, minor] = this.vectorVersion.split('.').map(Number);
    return major > 0 || minor >= 8;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.pool.end();
  }

  private checkOpen(): void {
    if (this.closed) throw new QrankError('CLOSED', 'the Postgres store is closed');
  }
}
