/**
 * The server's connections, driven with raw sockets (node:net): the header, request and keep-alive
 * timeouts let go of stalled and idle clients, and a drain (what SIGTERM runs) answers 503 to new
 * requests on connections kept alive and to a long upload still in flight, instead of cutting it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { type AddressInfo, type Server, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Embedder, Reranker } from '../lib/index';
import { SearchEngine } from '../lib/search/engine';
import { createApp } from '../lib/server/app';
import type { ServerLimits } from '../lib/server/limits';
import { MAPPING, MODELS, makeDocs, products } from './helpers';

const dir = mkdtempSync(join(tmpdir(), 'qrank-server-connections-'));
let rr: Reranker;
let em: Embedder;
let se: SearchEngine;

beforeAll(async () => {
  [rr, em] = await Promise.all([Reranker.load({ model: MODELS.reranker, threads: 1 }), Embedder.load({ model: MODELS.embedder, threads: 1 })]);
  se = await SearchEngine.open({ dir, embedder: em, reranker: rr });
});
afterAll(async () => {
  se?.close();
  await Promise.all([rr?.close(), em?.close()]);
  rmSync(dir, { recursive: true, force: true });
});

async function start(limits: Partial<ServerLimits>) {
  const server = createApp({ reranker: rr, embedder: em, search: se, logger: pino({ level: 'silent' }), limits });
  const http = server.listen(0, '127.0.0.1');
  await new Promise((r) => http.once('listening', r));
  return { server, http: http as Server, port: (http.address() as AddressInfo).port };
}

interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** One raw TCP connection: write bytes, read the responses one by one, see when the server closes it. */
function raw(port: number) {
  const socket = connect(port, '127.0.0.1');
  const opened = Date.now();
  let buffer = '';
  let wake = () => {};
  socket.on('data', (d: Buffer) => {
    buffer += d.toString('latin1');
    wake();
  });
  const closed = new Promise<number>((resolve) => socket.on('close', () => (wake(), resolve(Date.now() - opened))));
  socket.on('error', () => undefined);
  /** The next complete response (Content-Length framed, else up to the close). */
  const next = async (): Promise<RawResponse> => {
    for (;;) {
      const end = buffer.indexOf('\r\n\r\n');
      if (end >= 0) {
        const [statusLine, ...lines] = buffer.slice(0, end).split('\r\n');
        const headers = Object.fromEntries(lines.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]));
        const length = headers['content-length'] === undefined ? undefined : Number(headers['content-length']);
        const have = buffer.length - end - 4;
        if (length !== undefined ? have >= length : socket.destroyed) {
          const body = buffer.slice(end + 4, end + 4 + (length ?? have));
          buffer = buffer.slice(end + 4 + (length ?? have));
          return { status: Number(statusLine.split(' ')[1]), headers, body: Buffer.from(body, 'latin1').toString('utf8') };
        }
      }
      if (socket.destroyed) throw new Error(`closed without a complete response: ${JSON.stringify(buffer)}`);
      await new Promise<void>((r) => (wake = r));
    }
  };
  return { socket, closed, next, write: (s: string) => socket.write(s) };
}

const post = (path: string, body: string, type = 'application/json') =>
  `POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: ${type}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
const chunk = (s: string) => `${Buffer.byteLength(s).toString(16)}\r\n${s}\r\n`;
const ndjson = (rows: object[]) => rows.map((x) => JSON.stringify(x)).join('\n') + '\n';

describe('timeouts', () => {
  it('disconnects a client that sends half a header, or nothing, after the header timeout', async () => {
    const { http, port } = await start({ headersTimeoutMs: 300 });
    try {
      const half = raw(port);
      half.write('POST /v1/rerank HTTP/1.1\r\nHost: x\r\nContent-Ty');
      const silent = raw(port);
      const [a, b] = await Promise.all([half.closed, silent.closed]);
      for (const ms of [a, b]) {
        expect(ms).toBeGreaterThanOrEqual(250);
        expect(ms).toBeLessThan(2000);
      }
      expect((await half.next()).status).toBe(408);
    } finally {
      http.close();
    }
  });

  it('disconnects a client that stalls in its body after the request timeout', async () => {
    const { http, port } = await start({ headersTimeoutMs: 200, requestTimeoutMs: 400 });
    try {
      const c = raw(port);
      c.write(`POST /v1/rerank HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"query":`);
      const ms = await c.closed;
      expect(ms).toBeGreaterThanOrEqual(350);
      expect(ms).toBeLessThan(2500);
    } finally {
      http.close();
    }
  });

  it('closes an idle keep-alive connection after the keep-alive timeout', async () => {
    const { http, port } = await start({ keepAliveTimeoutMs: 200 });
    try {
      const c = raw(port);
      c.write('GET /health HTTP/1.1\r\nHost: x\r\n\r\n');
      const r = await c.next();
      expect(r.status).toBe(200);
      expect(await c.closed).toBeLessThan(3000);
    } finally {
      http.close();
    }
  });
});

describe('drain (SIGTERM)', () => {
  it('answers 503 to a new request on a kept-alive connection and to a long upload, which stays consistent', async () => {
    await se.create('uploads', { index: { kind: 'flat' }, mapping: MAPPING });
    const { server, http, port } = await start({});
    const inFlight = async () => (await server.metrics.inFlight.get()).values[0]?.value ?? 0;
    // a streamed upload that sends 100 products, then stalls without ending its body
    const upload = raw(port);
    upload.write(`POST /v1/collections/uploads/documents HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n`);
    upload.write(chunk(ndjson(products(100))));
    // a rerank in flight on a connection that the client keeps alive
    const kept = raw(port);
    kept.write(post('/v1/rerank', JSON.stringify({ query: 'auriculares', documents: makeDocs(40, 30, 2) })));
    while ((await inFlight()) < 2) await new Promise((r) => setTimeout(r, 10));

    const drained = server.drain(http, 1500);
    const first = await kept.next();
    expect(first.status).toBe(200);
    expect(JSON.parse(first.body).results).toHaveLength(40);
    kept.write('GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n');
    const second = await kept.next();
    expect(second.status).toBe(503);
    expect(JSON.parse(second.body)).toMatchObject({ error: { code: 'SHUTTING_DOWN' } });
    expect(second.headers.connection).toBe('close');
    await kept.closed;

    const answer = await upload.next();
    expect(answer.status).toBe(503);
    expect(JSON.parse(answer.body).error).toMatchObject({ code: 'SHUTTING_DOWN', message: expect.stringMatching(/upload/) });
    await drained;
    // what was stored before the shutdown is consistent: every product has its vector
    const info = await (await se.existing('uploads')).info();
    expect(info.pending).toBe(0);
    expect(info.vectors).toBe(info.size);
    expect(info.size).toBeLessThanOrEqual(100);
  });
});
