/**
 * The HTTP server: drop-in rerank and embedding APIs (Cohere v1/v2, Jina, TEI, vLLM, llama.cpp
 * server, OpenAI) over the typed API, never the raw binding. Limits answer 413/429 instead of
 * queueing without bound; a client that disconnects cancels its queued work. `listen` applies the
 * header, request and keep-alive timeouts, so stalled and idle connections are let go; `drain`
 * answers 503 to what comes or is still running at its end, and never cuts a request silently.
 */
import { isUtf8 } from 'node:buffer';
import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import { type Server, createServer } from 'node:http';
import { basename } from 'node:path';
import { PassThrough, type Readable, addAbortSignal } from 'node:stream';
import express, { type NextFunction, type Request, type Response } from 'express';
import pino, { type Logger } from 'pino';
import type { Embedder } from '../embedder';
import { invalid } from '../errors';
import type { ModelInfo } from '../model-handle';
import type { Reranker, RerankResult } from '../reranker';
import type { Mapping } from '../search/collection';
import { DEFAULT_RECALL_K, type SearchEngine, type SearchHit } from '../search/engine';
import type { Source } from '../search/sources';
import { HttpError, errorHandler, sendError } from './http-errors';
import { ServerMetrics } from './metrics';
import { openApiDocument } from './openapi';
import {
  collectionBody,
  deleteDocumentsBody,
  documentText,
  documentsBody,
  embeddingsBody,
  parseBody,
  pathName,
  rerankBody,
  scoreBody,
  searchBody,
  teiRerankBody,
} from './schemas';

export interface ServerLimits {
  /** Largest accepted request body (bytes). */
  maxBodyBytes: number;
  /** Most documents (or texts, or inputs) in one request. */
  maxDocuments: number;
  /**
   * Tokens per document (rerank) or input (embeddings); longer ones are cut, or refused with 413
   * when the request says `truncate: false`. Undefined: the model's context decides.
   */
  maxTokensPerDocument?: number;
  /** Requests served at once; more get 429. */
  maxConcurrent: number;
  /** Largest streamed upload of products (NDJSON or CSV body), read as it arrives. */
  maxUploadBytes: number;
  /** Time a client has to send its request line and headers (the connection is closed after it). */
  headersTimeoutMs: number;
  /**
   * Time a client has to send its whole request, body included. An upload is read as fast as it is
   * ingested, so this bounds its ingestion too: the default fits maxUploadBytes at 75 KB/s.
   */
  requestTimeoutMs: number;
  /** Time an idle kept-alive connection stays open. */
  keepAliveTimeoutMs: number;
}

export interface ServerOptions {
  reranker?: Reranker;
  embedder?: Embedder;
  /** Collections and two-stage search (/v1/search, /v1/collections); needs the embedder. */
  search?: SearchEngine;
  /** Static files served at / (the web UI). */
  staticDir?: string;
  /**
   * The model names clients send are echoed back; this is what /v1/models lists. Default: the
   * model file's base name (never its path).
   */
  rerankerName?: string;
  embedderName?: string;
  limits?: Partial<ServerLimits>;
  /** When set, every API route needs `Authorization: Bearer <one of these>` (see checkApiKeys). */
  apiKeys?: string[];
  /** Allowed CORS origins; none (the default) sends no CORS headers. */
  corsOrigins?: string[];
  logger?: Logger;
  /** Reported in the OpenAPI document. */
  version?: string;
}

export const DEFAULT_LIMITS: ServerLimits = {
  maxBodyBytes: 2 << 20,
  maxDocuments: 1000,
  maxConcurrent: 64,
  maxUploadBytes: 256 << 20,
  headersTimeoutMs: 30_000,
  requestTimeoutMs: 3_600_000,
  keepAliveTimeoutMs: 5_000,
};

/** How long a drain waits, after its grace period, for the 503s it sent to reach their clients. */
const DRAIN_ANSWER_MS = 2_000;

/** Content types of streamed product uploads and the format each is read as. */
const UPLOAD_FORMATS: Record<string, 'jsonl' | 'csv'> = {
  'application/x-ndjson': 'jsonl',
  'application/ndjson': 'jsonl',
  'application/jsonl': 'jsonl',
  'application/x-jsonlines': 'jsonl',
  'text/csv': 'csv',
};

interface Ctx {
  signal: AbortSignal;
}

type Handler = (req: Request, res: Response, ctx: Ctx) => Promise<void>;

/**
 * API keys must be a non-empty list of non-empty strings without surrounding whitespace: an empty
 * list or key would turn authentication off or let an empty token in, and a key with surrounding
 * whitespace could never match (the header's token is trimmed). INVALID_INPUT otherwise.
 */
export function checkApiKeys(keys: readonly unknown[]): asserts keys is string[] {
  if (keys.length === 0) throw invalid('the list of API keys is empty, which would turn authentication off; name at least one key, or none at all to serve without authentication');
  keys.forEach((k, i) => {
    if (typeof k !== 'string' || k.trim() === '') throw invalid(`API key ${i + 1} of ${keys.length} is empty, which would let an empty token in; name non-empty keys`);
    if (k.trim() !== k) throw invalid(`API key ${i + 1} of ${keys.length} starts or ends with whitespace, so no request could send it`);
  });
}

/**
 * Whether a presented token is one of `keys`, in a time that depends on neither: SHA-256 digests
 * (equal lengths) compared with timingSafeEqual, against every key.
 */
function keyMatcher(keys: string[]): (token: string) => boolean {
  const digest = (s: string) => createHash('sha256').update(s).digest();
  const wanted = keys.map(digest);
  return (token) => {
    const got = digest(token);
    let found = false;
    for (const w of wanted) found = timingSafeEqual(w, got) || found;
    return found;
  };
}

export function createApp(options: ServerOptions) {
  if (options.apiKeys) checkApiKeys(options.apiKeys);
  const limits = { ...DEFAULT_LIMITS, ...options.limits };
  const log = options.logger ?? pino({ level: process.env.QRANK_LOG_LEVEL ?? 'info' });
  const metrics = new ServerMetrics({ reranker: options.reranker, embedder: options.embedder }, options.search);
  const rerankerName = options.rerankerName ?? fileName(options.reranker?.info, 'qrank-reranker');
  const embedderName = options.embedderName ?? fileName(options.embedder?.info, 'qrank-embedder');
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

  const isKey = options.apiKeys && keyMatcher(options.apiKeys);
  const auth = (req: Request, _res: Response, next: NextFunction) => {
    if (!isKey) return next();
    const token = /^Bearer\s+(.*)$/i.exec(req.get('authorization') ?? '')?.[1].trim();
    if (!token || !isKey(token)) return next(new HttpError(401, 'UNAUTHORIZED', 'send a valid API key as "Authorization: Bearer <key>"'));
    next();
  };
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

  const needReranker = (): Reranker => {
    if (!options.reranker) throw new HttpError(404, 'NO_RERANKER', 'this server was started without a reranker model');
    return options.reranker;
  };
  const needEmbedder = (): Embedder => {
    if (!options.embedder) throw new HttpError(404, 'NO_EMBEDDER', 'this server was started without an embedding model');
    return options.embedder;
  };
  const checkCount = (n: number, what: string) => {
    if (n > limits.maxDocuments) {
      metrics.rejected.inc({ reason: 'documents' });
      throw new HttpError(413, 'TOO_MANY_DOCUMENTS', `${n} ${what} is more than this server's limit of ${limits.maxDocuments} per request`);
    }
  };

  /**
   * Applies the token limit to each text: the server's maxTokensPerDocument and the request's own
   * (Cohere's max_tokens_per_doc), whichever is lower. Longer texts are cut token-exactly, or
   * refused (413 INPUT_TOO_LONG) when the request says truncate: false. A text of no more bytes
   * than the limit cannot have more tokens (each token covers at least one byte), so only longer
   * ones are tokenised.
   */
  const limitTokens = (model: Reranker | Embedder, texts: string[], what: string, requested: number | undefined, truncate: boolean | undefined): string[] => {
    const limit = Math.min(limits.maxTokensPerDocument ?? Infinity, requested ?? Infinity);
    if (!Number.isFinite(limit)) return texts;
    return texts.map((t, i) => {
      if (Buffer.byteLength(t) <= limit) return t;
      const ids = model.tokenize(t);
      if (ids.length <= limit) return t;
      if (truncate === false) {
        metrics.rejected.inc({ reason: 'tokens' });
        throw new HttpError(413, 'INPUT_TOO_LONG', `${what}[${i}] is ${ids.length} tokens, more than the limit of ${limit}; shorten it or send truncate: true`);
      }
      return model.detokenize(ids.slice(0, limit));
    });
  };

  const rerankCommon = async (body: ReturnType<typeof parseRerank>, signal: AbortSignal) => {
    const rr = needReranker();
    const docs = body.documents.map(documentText);
    checkCount(docs.length, 'documents');
    const texts = limitTokens(rr, docs, 'documents', body.max_tokens_per_doc, body.truncate);
    const { results, usage } = await rr.rerankWithUsage(body.query, texts, { topN: body.top_n, instruction: body.instruction, signal });
    metrics.tokens.inc({ model: 'reranker' }, usage.tokens);
    return { docs, results, usage };
  };
  const parseRerank = (b: unknown) => parseBody(rerankBody, b);
  const cohereResults = (results: RerankResult[], docs: string[], withDocs: boolean) =>
    results.map((r) => ({ index: r.index, relevance_score: r.score, ...(withDocs ? { document: { text: docs[r.index] } } : {}) }));

  // Cohere v1, Jina and llama.cpp's server: one response that all their clients parse.
  const rerankV1: Handler = async (req, res, ctx) => {
    const body = parseRerank(req.body);
    const { docs, results, usage } = await rerankCommon(body, ctx.signal);
    res.json({
      id: randomUUID(),
      model: body.model ?? rerankerName,
      results: cohereResults(results, docs, body.return_documents ?? false),
      meta: { api_version: { version: '1' }, billed_units: { search_units: 1 } },
      usage: { total_tokens: usage.tokens, prompt_tokens: usage.tokens },
    });
  };
  app.post('/v1/rerank', auth, json, onBodyError, route(rerankV1));

  app.post('/v2/rerank', auth, json, onBodyError, route(async (req, res, ctx) => {
    const body = parseRerank(req.body);
    const { docs, results } = await rerankCommon(body, ctx.signal);
    res.json({
      id: randomUUID(),
      results: cohereResults(results, docs, body.return_documents ?? false),
      meta: { api_version: { version: '2' }, billed_units: { search_units: 1 } },
    });
  }));

  // /rerank: TEI's shape when the body has `texts`, else llama.cpp server's / Jina's.
  app.post('/rerank', auth, json, onBodyError, route(async (req, res, ctx) => {
    if (req.body && typeof req.body === 'object' && 'texts' in req.body) {
      const body = parseBody(teiRerankBody, req.body);
      const rr = needReranker();
      checkCount(body.texts.length, 'texts');
      const texts = limitTokens(rr, body.texts, 'texts', undefined, body.truncate);
      if (body.truncate === false) {
        const limit = rr.info.maxLength;
        const long = body.texts.findIndex((t) => rr.formatPair(body.query, t).tokens.length >= limit);
        if (long >= 0) throw new HttpError(413, 'INPUT_TOO_LONG', `texts[${long}] is longer than ${limit} tokens; send truncate: true`);
      }
      const results = await rr.rerank(body.query, texts, { topN: body.top_n, instruction: body.instruction, signal: ctx.signal });
      res.json(
        results.map((r) => ({
          index: r.index,
          score: body.raw_scores ? r.logit : r.score, // TEI's raw score is the logit, kept from the engine (P(yes) saturates)
          ...(body.return_text ? { text: body.texts[r.index] } : {}),
        })),
      );
      return;
    }
    await rerankV1(req, res, ctx);
  }));

  // vLLM's /score: text_1 one or many, text_2 many; pairs in order.
  app.post(['/score', '/v1/score'], auth, json, onBodyError, route(async (req, res, ctx) => {
    const body = parseBody(scoreBody, req.body);
    const rr = needReranker();
    const left = Array.isArray(body.text_1) ? body.text_1 : [body.text_1];
    const right = Array.isArray(body.text_2) ? body.text_2 : [body.text_2];
    if (left.length !== 1 && left.length !== right.length) {
      throw new HttpError(400, 'INVALID_INPUT', 'text_1 must be one text or as many texts as text_2');
    }
    checkCount(right.length, 'texts');
    const pairs = right.map((document, i) => ({ query: left.length === 1 ? left[0] : left[i], document }));
    const { scores, usage } = await rr.scoreWithUsage(pairs, { instruction: body.instruction, signal: ctx.signal });
    const tokens = usage.tokens;
    metrics.tokens.inc({ model: 'reranker' }, tokens);
    res.json({
      id: `score-${randomUUID()}`,
      object: 'list',
      created: Math.floor(Date.now() / 1000),
      model: body.model ?? rerankerName,
      data: scores.map((score, index) => ({ index, object: 'score', score })),
      usage: { prompt_tokens: tokens, total_tokens: tokens },
    });
  }));

  // OpenAI's /v1/embeddings, base64 included (the official client asks for base64 by default).
  app.post(['/v1/embeddings', '/embeddings'], auth, json, onBodyError, route(async (req, res, ctx) => {
    const body = parseBody(embeddingsBody, req.body);
    const em = needEmbedder();
    const raw = normaliseInput(body.input, em);
    checkCount(raw.length, 'inputs');
    const inputs = limitTokens(em, raw, 'input', undefined, body.truncate);
    const kind = body.input_type === 'query' || body.input_type === 'search_query' ? 'query' : 'document';
    const { embeddings, usage } = await em.embedWithUsage(inputs, { kind, dimensions: body.dimensions, instruction: body.instruction, signal: ctx.signal });
    metrics.tokens.inc({ model: 'embedder' }, usage.tokens);
    res.json({
      object: 'list',
      model: body.model ?? embedderName,
      data: embeddings.map((v, index) => ({
        object: 'embedding',
        index,
        embedding: body.encoding_format === 'base64' ? Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64') : Array.from(v),
      })),
      usage: { prompt_tokens: usage.tokens, total_tokens: usage.tokens },
    });
  }));

  app.get('/v1/models', auth, (_req, res) => {
    const created = Math.floor(Date.now() / 1000);
    const data = [
      options.reranker && { id: rerankerName, object: 'model', created, owned_by: 'qrank', task: 'rerank', info: publicInfo(options.reranker.info) },
      options.embedder && { id: embedderName, object: 'model', created, owned_by: 'qrank', task: 'embed', info: publicInfo(options.embedder.info) },
    ].filter(Boolean);
    res.json({ object: 'list', data });
  });

  // --- collections and two-stage search ---
  const needSearch = (): SearchEngine => {
    if (!options.search) throw new HttpError(404, 'NO_SEARCH', 'this server was started without a data directory for collections (qrank serve --data <dir>)');
    return options.search;
  };
  const snakeHit = (h: SearchHit) => ({
    id: h.id,
    score: h.score,
    ...(h.rerankScore !== undefined ? { rerank_score: h.rerankScore } : {}),
    recall_score: h.recallScore,
    fields: h.fields,
    ...(h.explain ? { explain: snakeExplain(h.explain) } : {}),
  });

  app.post('/v1/search', auth, json, onBodyError, route(async (req, res, ctx) => {
    const body = parseBody(searchBody, req.body);
    const se = needSearch();
    if (body.top_n !== undefined) checkCount(body.top_n, 'results (top_n)');
    // the recalled candidates are what gets reranked: the rerank routes' limit holds for them
    if (body.recall_k !== undefined) checkCount(body.recall_k, 'candidates (recall_k)');
    const f = body.fusion;
    const r = await se.search(body.collection, body.query, {
      recall: body.recall,
      // a server allowing fewer documents per request than the default reranks no more than that
      recallK: body.recall_k ?? Math.min(DEFAULT_RECALL_K, limits.maxDocuments),
      keywordK: body.keyword_k,
      topN: body.top_n,
      filter: body.filter,
      instruction: body.instruction,
      rerank: body.rerank,
      fusion: f && { signals: f.signals, rrfK: f.rrf_k, keywordWeight: f.keyword_weight, vectorWeight: f.vector_weight },
      explain: body.explain,
      signal: ctx.signal,
    });
    const t = r.timings;
    res.json({
      id: randomUUID(),
      collection: body.collection,
      results: r.results.map(snakeHit),
      candidates: r.candidates,
      reranked: r.reranked,
      recall: r.recall,
      timings: { embed_ms: t.embedMs, keyword_ms: t.keywordMs, recall_ms: t.recallMs, fetch_ms: t.fetchMs, rerank_ms: t.rerankMs, total_ms: t.totalMs },
    });
  }));

  app.get('/v1/collections', auth, route(async (_req, res) => {
    res.json({ object: 'list', data: await needSearch().list() });
  }));

  app.post('/v1/collections', auth, json, onBodyError, route(async (req, res) => {
    const body = parseBody(collectionBody, req.body);
    const c = await needSearch().create(body.name, { index: body.index, mapping: body.mapping });
    res.status(201).json(await c.info());
  }));

  app.get('/v1/collections/:name', auth, route(async (req, res) => {
    res.json(await (await needSearch().existing(pathName(req.params.name))).info());
  }));

  app.delete('/v1/collections/:name', auth, route(async (req, res) => {
    const name = pathName(req.params.name);
    await needSearch().drop(name);
    res.json({ name, deleted: true });
  }));

  app.post('/v1/collections/:name/documents', auth, json, onBodyError, route(async (req, res, ctx) => {
    // NDJSON and CSV bodies are streamed into the collection as they arrive: no JSON body limit and
    // no documents-per-request limit, only maxUploadBytes; the collection's stored mapping applies
    const [type, ...params] = (req.get('content-type') ?? '').split(';').map((x) => x.trim().toLowerCase());
    const format = UPLOAD_FORMATS[type];
    let source: Source;
    let mapping: Mapping | undefined;
    if (format) {
      const charset = params.find((p) => p.startsWith('charset='))?.slice(8).replace(/"/g, '');
      if (charset && charset !== 'utf-8' && charset !== 'utf8') throw new HttpError(415, 'UNSUPPORTED_ENCODING', 'send the upload as UTF-8');
      source = { stream: abortableBody(req, ctx.signal), format, limitBytes: limits.maxUploadBytes };
    } else {
      const body = parseBody(documentsBody, req.body);
      checkCount(body.documents.length, 'documents');
      source = body.documents;
      mapping = body.mapping;
    }
    const c = await needSearch().existing(pathName(req.params.name));
    if (!mapping && !(await c.mapping())) throw new HttpError(400, 'INVALID_INPUT', 'mapping: this collection has none yet; create it with one, or send one (id, embed, rerank templates) with the first documents as JSON');
    const r = await c.ingest(source, { mapping, signal: ctx.signal });
    res.json({ ...r, size: await c.count() });
  }));

  app.delete('/v1/collections/:name/documents', auth, json, onBodyError, route(async (req, res) => {
    const body = parseBody(deleteDocumentsBody, req.body);
    checkCount(body.ids.length, 'ids');
    const c = await needSearch().existing(pathName(req.params.name));
    const deleted = await c.delete(body.ids);
    res.json({ deleted, size: await c.count() });
  }));

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

/** A model's file name without its directory: where the server's files lie is nobody's business. */
function fileName(info: ModelInfo | undefined, fallback: string): string {
  return info ? basename(info.path) : fallback;
}

/** A model's info as /v1/models shows it: `file` (the base name) instead of the path. */
function publicInfo(info: ModelInfo) {
  const { path: _path, ...rest } = info;
  return { ...rest, file: basename(info.path) };
}

/** Resolves once `done()` holds, or after `ms`. */
async function until(done: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!done() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
}

/**
 * The request body as a stream that fails when `signal` aborts, without destroying the socket (the
 * answer can still be sent): an upload that stalls mid-body still notices a drain or a disconnect.
 */
function abortableBody(req: Request, signal: AbortSignal): Readable {
  const body = addAbortSignal(signal, new PassThrough());
  req.on('error', (err) => body.destroy(err));
  return req.pipe(body);
}

/** The texts of an embeddings `input`: one text, one token-id list, or a list of either (validated by embeddingsBody). */
function normaliseInput(input: string | number[] | (string | number[])[], em: Embedder): string[] {
  if (typeof input === 'string') return [input];
  if (typeof input[0] === 'number') return [em.detokenize(input as number[])];
  return (input as (string | number[])[]).map((item) => (typeof item === 'string' ? item : em.detokenize(item)));
}

/** A hit's explain in the API's snake case. */
function snakeExplain(e: NonNullable<SearchHit['explain']>) {
  const r = e.recall;
  return {
    relevance: e.relevance,
    relevance_weight: e.relevanceWeight,
    signals: e.signals,
    recall: { keyword_rank: r.keywordRank, keyword_score: r.keywordScore, vector_rank: r.vectorRank, vector_score: r.vectorScore, fused_score: r.fusedScore },
  };
}
