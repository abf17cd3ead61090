/**
 * Postgres for the tests: a PGlite server process (test/setup/pglite-server.mjs) on a loopback port,
 * and a TCP relay in front of it that a test can cut and restore (an outage of the store as its
 * clients see it: refused connections and dropped sockets, while the data stays).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { type Server, type Socket, createConnection, createServer } from 'node:net';
import { join } from 'node:path';
import { ROOT } from './helpers';

export interface PgliteServer {
  port: number;
  url: string;
  child: ChildProcess;
  stop(): Promise<void>;
}

/** Starts a PGlite server; `url` reaches it through `pg` (user postgres, database postgres). */
export async function startPglite(options: { dataDir?: string; vector?: boolean } = {}): Promise<PgliteServer> {
  const args = [join(ROOT, 'test', 'setup', 'pglite-server.mjs'), '0', ...(options.dataDir ? [options.dataDir] : [])];
  const child = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, PGLITE_NO_VECTOR: options.vector === false ? '1' : '0' } });
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      const m = /listening (\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    child.once('exit', (code) => reject(new Error(`the PGlite server exited (${code}) before listening: ${out}`)));
  });
  return {
    port,
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    child,
    async stop() {
      if (child.exitCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    },
  };
}

export interface Relay {
  port: number;
  url: string;
  /** Refuses new connections and drops the open ones. */
  cut(): Promise<void>;
  /** Accepts connections again, on the same port. */
  restore(): Promise<void>;
  close(): Promise<void>;
}

/** A relay on a loopback port to `target`'s port. */
export async function startRelay(target: number): Promise<Relay> {
  const sockets = new Set<Socket>();
  let server: Server | undefined;
  let port = 0;
  const listen = async () => {
    const s = createServer((client) => {
      const upstream = createConnection({ host: '127.0.0.1', port: target });
      for (const sock of [client, upstream]) {
        sockets.add(sock);
        sock.on('close', () => sockets.delete(sock));
        sock.on('error', () => undefined);
      }
      client.pipe(upstream).pipe(client);
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
    });
    await new Promise<void>((resolve) => s.listen(port, '127.0.0.1', resolve));
    port = (s.address() as { port: number }).port;
    server = s;
  };
  const cut = async () => {
    const s = server;
    server = undefined;
    for (const sock of sockets) sock.destroy();
    if (s) await new Promise((resolve) => s.close(resolve));
  };
  await listen();
  return {
    port,
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    cut,
    restore: async () => {
      if (!server) await listen();
    },
    close: cut,
  };
}
