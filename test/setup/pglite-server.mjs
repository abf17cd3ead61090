// A Postgres server for the tests: PGlite (Postgres in WebAssembly) with pgvector, served over the
// wire protocol by pglite-socket on a loopback port, in its own process (PGlite runs one query at a
// time on its thread; clients reach it through `pg` exactly as they would a real server).
// Usage: node pglite-server.mjs [port] [data-dir]; prints "listening <port>"; SIGTERM stops it cleanly.
// PGLITE_NO_VECTOR=1: without pgvector (a server that lacks the extension).
import { PGlite } from '@electric-sql/pglite';
import { vector } from '@electric-sql/pglite-pgvector';
import { PGLiteSocketServer } from '@electric-sql/pglite-socket';

const [port = '0', dataDir] = process.argv.slice(2);
const db = await PGlite.create(dataDir || undefined, { extensions: process.env.PGLITE_NO_VECTOR === '1' ? {} : { vector } });
const server = new PGLiteSocketServer({ db, port: Number(port), host: '127.0.0.1', maxConnections: 200 });
await server.start();
console.log(`listening ${server.getServerConn().split(':').pop()}`);
const stop = async () => {
  await server.stop();
  await db.close();
  process.exit(0);
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
