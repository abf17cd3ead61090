/**
 * better-sqlite3, the embedded store's database, is an optional dependency: rerank, embed and the
 * vector index need no SQLite, and an install without a compiler (no prebuilt SQLite binary can be
 * downloaded) must still work. The Postgres store needs none of it.
 */
import type Database from 'better-sqlite3';
import { QrankError } from '../errors';

/** The better-sqlite3 constructor; UNSUPPORTED, saying how to install it, when it is missing. */
export function sqlite(): typeof Database {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require('better-sqlite3') as typeof Database;
  } catch (err) {
    throw new QrankError('UNSUPPORTED', `collections need the optional package better-sqlite3, which is not installed (${(err as Error).message.split('\n')[0]}); ` +
      'install it with `npm install better-sqlite3` (it compiles SQLite where no prebuilt binary can be downloaded)');
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
