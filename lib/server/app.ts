/**
 * The HTTP server: drop-in rerank and embedding APIs (Cohere v1/v2, Jina, TEI, vLLM, llama.cpp
 * server, OpenAI) over the typed API, never the raw binding. Limits answer 413/429 instead of
 * queueing without bound; a client that disconnects cancels its queued work. `listen` applies the
 * header, request and keep-alive timeouts, so stalled and idle connections are let go; `drain`
 * answers 503 to what comes or is still running at its end, and never cuts a request silently.
 *
 * This module is the server's frame: request ids and the access log, CORS, health, readiness,
 * OpenAPI and metrics, the drain, and the guards every route shares (lib/server/kit.ts). The routes
 * live in model-routes.ts and search-routes.ts, keys in auth.ts, limits in limits.ts.
 */
import { isUtf8 } from 'node:buffer';
import { randomUUID } from 'node:crypto';
import { type Server, createServer } from 'node:http';
import express, { type NextFunction, type Request, type Response } from 'express';
import pino, { type Logger } from 'pino';
import type { SearchEngine } from '../search/engine';
import { authMiddleware, checkApiKeys } from './auth';
import { HttpError, errorHandler, sendError } from './http-errors';
import type { Handler, RouteKit } from './kit';
import { DEFAULT_LIMITS, type ServerLimits } from './limits';
import { ServerMetrics } from './metrics';
import { type ServedModels, modelRoutes } from './model-routes';
import { openApiDocument } from './openapi';
import { searchRoutes } from './search-routes';

export interface ServerOptions extends ServedModels {
  /** Collections and two-stage search (/v1/search, /v1/collections); needs the embedder. */
  search?: SearchEngine;
  /** Static files served at / (the web UI). */
  staticDir?: string;
  limits?: Partial<ServerLimits>;
  /** When set, every API route needs `Authorization: Bearer <one of these>` (see checkApiKeys). */
  apiKeys?: string[];
  /** Allowed CORS origins; none (the default) sends no CORS headers. */
  corsOrigins?: string[];
  logger?: Logger;
  /** Reported in the OpenAPI document. */
  version?: string;
}

/** How long a drain waits, after its grace period, for the 503s it sent to reach their clients. */
const DRAIN_ANSWER_MS = 2_000;

export function createApp(options: ServerOptions) {
  if (options.apiKeys) checkApiKeys(options.apiKeys);
  const limits = { ...DEFAULT_LIMITS, ...options.limits };
  const log = options.logger ?? pino({ level: process.env.QRANK_LOG_LEVEL ?? 'info' });
  const metrics = new ServerMetrics({ reranker: options.reranker, embedder: options.embedder }, options.search);
  /** The requests being served, by the controller that aborts their work. */
  const inFlight = new Set<AbortController>();
  let draining = false;
  const shuttingDown = new HttpError(503, 'SHUTTING_DOWN', 'the server is shutting down; retry on another instance (re-sending an upload is safe: upserts are idempotent)');
  const clientGone = new HttpError(499, 'ABORTED', 'the client closed the connection');
  /** Refuses a request during a drain, and closes its connection after the answer. */
  const refuse = (res: Response) => {
    res.setHeader('connection', 'close');
    sendError(res, shuttingDown);
  };

  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);

  // request id, structured access log and latency histogram
  app.use((req, res, next) => {
    const id = (req.get('x-request-id') ?? '').slice(0, 128) || randomUUID();
    res.setHeader('x-request-id', id);
    res.locals.log = log.child({ id }); // sendError logs a 500's cause through it
    const started = process.hrtime.bigint();
    res.on('finish', () => {
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      // API routes by their pattern; the web page's files as one label (not one series per file)
      const route = (req.route?.path as string | undefined) ?? (options.staticDir && req.method === 'GET' && res.statusCode < 400 ? 'static' : 'unmatched');
      metrics.requestSeconds.observe({ route, method: req.method, status: String(res.statusCode) }, seconds);
      log.info({ id, method: req.method, route, status: res.statusCode, ms: Math.round(seconds * 1000) }, 'request');
    });
    next();
  });

  if (options.corsOrigins?.length) {
    const allowed = new Set(options.corsOrigins);
    app.use((req, res, next) => {
      const origin = req.get('origin');
      if (origin && (allowed.has(origin) || allowed.has('*'))) {
        res.setHeader('access-control-allow-origin', allowed.has('*') ? '*' : origin);
        res.setHeader('access-control-allow-headers', 'authorization, content-type, x-request-id');
        res.setHeader('access-control-allow-methods', 'GET, POST, DELETE, OPTIONS');
        res.setHeader('vary', 'origin');
      }
      if (req.method === 'OPTIONS') return void res.status(204).end();
      next();
    });
  }

  app.get('/health', (_req, res) => void res.json({ status: 'ok' }));
  // ready: not draining, a model loaded, and the collections' store answering (a shared Postgres
  // can go away while the process lives: a load balancer then sends traffic to other replicas)
  app.get('/ready', async (_req, res) => {
    const up = !draining && [options.reranker, options.embedder].some((m) => m && !m.closed);
    const store = up && options.search ? await options.search.ready().then(() => true, () => false) : true;
    const ready = up && store;
    res.status(ready ? 200 : 503).json({ status: ready ? 'ready' : 'not ready', ...(store ? {} : { reason: 'the collections store is unreachable' }) });
  });
  const openapi = openApiDocument(options.version ?? '0.0.0');
  app.get('/openapi.json', (_req, res) => void res.json(openapi));
  app.get('/metrics', async (_req, res) => {
    res.setHeader('content-type', metrics.registry.contentType);
    res.end(await metrics.registry.metrics());
  });

  // from here on (the API, the page), a drain refuses new requests, also on connections kept alive
  app.use((_req, res, next) => (draining ? refuse(res) : next()));

  const auth = authMiddleware(options.apiKeys);
  // invalid UTF-8 is refused: body-parser would otherwise turn it into U+FFFD and score mangled text
  const json = express.json({
    limit: limits.maxBodyBytes,
    strict: false,
    verify: (_req, _res, buf) => {
      if (!isUtf8(buf)) throw new HttpError(400, 'INVALID_UTF8', 'the body is not valid UTF-8; send JSON encoded as UTF-8');
    },
  });
  const onBodyError = (err: unknown, _req: Request, res: Response, next: NextFunction) => {
    if ((err as { type?: string })?.type === 'entity.too.large') metrics.rejected.inc({ reason: 'body' });
    next(err);
  };

  // Wraps a route: concurrency limit (429), abort on client disconnect or at the end of a drain
  // (answered 503), one error shape.
  const route = (handler: Handler) => async (req: Request, res: Response) => {
    if (inFlight.size >= limits.maxConcurrent) {
      metrics.rejected.inc({ reason: 'concurrency' });
      res.setHeader('retry-after', '1');
      return sendError(res, new HttpError(429, 'TOO_MANY_REQUESTS', `more than ${limits.maxConcurrent} requests at once; retry shortly`));
    }
    const abort = new AbortController();
    inFlight.add(abort);
    metrics.inFlight.inc();
    const onClose = () => {
      if (!res.writableFinished) abort.abort(clientGone);
    };
    res.on('close', onClose);
    try {
      await handler(req, res, { signal: abort.signal });
    } catch (err) {
      const reason = abort.signal.aborted ? abort.signal.reason : err;
      if (reason === shuttingDown) refuse(res);
      else if (reason !== clientGone) sendError(res, reason);
    } finally {
      inFlight.delete(abort);
      metrics.inFlight.dec();
      res.off('close', onClose);
    }
  };

  const checkCount = (n: number, what: string) => {
    if (n > limits.maxDocuments) {
      metrics.rejected.inc({ reason: 'documents' });
      throw new HttpError(413, 'TOO_MANY_DOCUMENTS', `${n} ${what} is more than this server's limit of ${limits.maxDocuments} per request`);
    }
  };

  const kit: RouteKit = { limits, metrics, auth, json, onBodyError, route, checkCount };
  modelRoutes(app, kit, options);
  searchRoutes(app, kit, options.search);

  // the web UI: static files, no framework (GET / is index.html)
  if (options.staticDir) app.use(express.static(options.staticDir, { index: 'index.html', maxAge: 0 }));

  app.use((_req, res) => sendError(res, new HttpError(404, 'NOT_FOUND', 'no such route; see GET /v1/models and the README')));
  app.use(errorHandler);

  return {
    app,
    metrics,
    /** Listens on `port` with the limits' header, request and keep-alive timeouts. */
    listen(port: number, host?: string): Server {
      const server = createServer(
        {
          headersTimeout: limits.headersTimeoutMs,
          requestTimeout: limits.requestTimeoutMs,
          // how often Node looks for expired connections: often enough that none outlives its timeout by much
          connectionsCheckingInterval: Math.min(30_000, Math.ceil(Math.min(limits.headersTimeoutMs, limits.requestTimeoutMs) / 4)),
        },
        app,
      );
      server.keepAliveTimeout = limits.keepAliveTimeoutMs;
      return server.listen(port, host);
    },
    /**
     * Stops accepting connections and refuses new requests (503), lets the requests in flight finish
     * for up to `graceMs`, then aborts what still runs (an upload stops between batches, consistent)
     * and answers it 503 instead of cutting it; closes every connection after that.
     */
    async drain(server: Server, graceMs = 10_000): Promise<void> {
      draining = true;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      await until(() => inFlight.size === 0, graceMs);
      for (const abort of inFlight) abort.abort(shuttingDown);
      await until(() => inFlight.size === 0, DRAIN_ANSWER_MS);
      server.closeIdleConnections();
      await Promise.race([closed, new Promise((r) => setTimeout(r, DRAIN_ANSWER_MS))]);
      server.closeAllConnections();
      await closed;
    },
  };
}

/** Resolves once `done()` holds, or after `ms`. */
async function until(done: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!done() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
}
