/**
 * Collections and two-stage search: /v1/search (recall, fusion, rerank) and /v1/collections
 * (create, list, inspect, drop; documents as JSON or streamed NDJSON/CSV uploads, and deletes).
 * Answers use the API's snake case; a server without a data directory answers 404 NO_SEARCH.
 */
import { randomUUID } from 'node:crypto';
import { PassThrough, type Readable, addAbortSignal } from 'node:stream';
import type { Express, Request } from 'express';
import type { Mapping } from '../search/collection';
import { DEFAULT_RECALL_K, type SearchEngine, type SearchHit } from '../search/engine';
import type { Source } from '../search/sources';
import { HttpError } from './http-errors';
import type { RouteKit } from './kit';
import { collectionBody, deleteDocumentsBody, documentsBody, parseBody, pathName, searchBody } from './schemas';

/** Content types of streamed product uploads and the format each is read as. */
const UPLOAD_FORMATS: Record<string, 'jsonl' | 'csv'> = {
  'application/x-ndjson': 'jsonl',
  'application/ndjson': 'jsonl',
  'application/jsonl': 'jsonl',
  'application/x-jsonlines': 'jsonl',
  'text/csv': 'csv',
};

export function searchRoutes(app: Express, kit: RouteKit, search: SearchEngine | undefined): void {
  const { auth, json, onBodyError, route, checkCount, limits } = kit;
  const needSearch = (): SearchEngine => {
    if (!search) throw new HttpError(404, 'NO_SEARCH', 'this server was started without a data directory for collections (qrank serve --data <dir>)');
    return search;
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
