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
keepExtendedQueriesWhole(server);
await server.start();
console.log(`listening ${server.getServerConn().split(':').pop()}`);
const stop = async () => {
  await server.stop();
  await db.close();
  process.exit(0);
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);

// pglite-socket 0.2.17 runs its clients' messages one at a time on the one PGlite backend, keeping a
// client's turn only inside a transaction. node-postgres sends a parameterised query as Parse, Bind,
// Describe, Execute, Sync: interleaved with another client's, they clobber each other's unnamed
// statement and portal ("portal \"\" does not exist"). Here a client keeps its turn from its first
// extended-protocol message to its Sync, as a real server's separate backends would behave.
function keepExtendedQueriesWhole(server) {
  const queue = server.queryQueue;
  let holder = null; // the handler whose extended query is under way
  queue.processQueue = async function () {
    if (this.processing || this.queue.length === 0) return;
    this.processing = true;
    while (this.queue.length > 0) {
      const owner = holder ?? (this.db.isInTransaction() ? this.lastHandlerId : null);
      const at = owner === null ? 0 : this.queue.findIndex((q) => q.handlerId === owner);
      if (at === -1) break; // wait for the owner's next message
      const item = this.queue.splice(at, 1)[0];
      const type = String.fromCharCode(item.message[0]);
      holder = 'PBDEHCF'.includes(type) ? item.handlerId : type === 'S' ? null : holder;
      try {
        await this.db.runExclusive(() => this.db.execProtocolRawStream(item.message, { onRawData: (d) => item.onData(d) }));
      } catch (err) {
        item.reject(err);
        holder = null;
        continue;
      }
      this.lastHandlerId = item.handlerId;
      item.resolve(0);
    }
    this.processing = false;
  };
  // a client that disconnects mid-query gives its turn back
  const clear = queue.clearQueueForHandler.bind(queue);
  queue.clearQueueForHandler = (id) => {
    if (holder === id) holder = null;
    clear(id);
    setImmediate(() => queue.processQueue());
  };
}
