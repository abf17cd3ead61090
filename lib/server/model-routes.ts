/**
 * The model routes, drop-in for the APIs clients already speak: Cohere v1/v2 and Jina
 * (/v1/rerank, /v2/rerank), TEI and llama.cpp's server (/rerank), vLLM (/score), OpenAI
 * (/v1/embeddings), and /v1/models. Each validates its body, applies the server's limits (the
 * token limit is passed down: the core cuts as it tokenises) and answers in the API's own shape.
 */
import { randomUUID } from 'node:crypto';
import { basename } from 'node:path';
import type { Express } from 'express';
import type { Embedder } from '../embedder';
import type { ModelInfo } from '../model-handle';
import type { Reranker, RerankResult } from '../reranker';
import { HttpError } from './http-errors';
import type { Handler, RouteKit } from './kit';
import { documentText, embeddingsBody, parseBody, rerankBody, scoreBody, teiRerankBody } from './schemas';

export interface ServedModels {
  reranker?: Reranker;
  embedder?: Embedder;
  /**
   * The model names clients send are echoed back; this is what /v1/models lists. Default: the
   * model file's base name (never its path).
   */
  rerankerName?: string;
  embedderName?: string;
}

export function modelRoutes(app: Express, kit: RouteKit, models: ServedModels): void {
  const { auth, json, onBodyError, route, checkCount, limits, metrics } = kit;
  const names = {
    reranker: models.rerankerName ?? fileName(models.reranker?.info, 'qrank-reranker'),
    embedder: models.embedderName ?? fileName(models.embedder?.info, 'qrank-embedder'),
  };
  const needReranker = (): Reranker => {
    if (!models.reranker) throw new HttpError(404, 'NO_RERANKER', 'this server was started without a reranker model');
    return models.reranker;
  };
  const needEmbedder = (): Embedder => {
    if (!models.embedder) throw new HttpError(404, 'NO_EMBEDDER', 'this server was started without an embedding model');
    return models.embedder;
  };
  /**
   * The token limit of each text: the server's maxTokensPerDocument and the request's own (Cohere's
   * max_tokens_per_doc), whichever is lower, with the request's truncate. The core applies it as it
   * tokenises (off the JS thread, once): longer texts are cut token-exactly, or refused with 413
   * INPUT_TOO_LONG when the request says truncate: false, as is a text the model's context would cut.
   */
  const inputLimit = (requested: number | undefined, truncate: boolean | undefined) => {
    const limit = Math.min(limits.maxTokensPerDocument ?? Infinity, requested ?? Infinity);
    return { maxInputTokens: Number.isFinite(limit) ? limit : undefined, truncate };
  };
  /** Counts a refusal of the token limit in the metrics, and passes every error on. */
  const countRefusals = <T>(work: Promise<T>): Promise<T> =>
    work.catch((e: unknown) => {
      if ((e as { code?: string })?.code === 'INPUT_TOO_LONG') metrics.rejected.inc({ reason: 'tokens' });
      throw e;
    });

  const rerankCommon = async (body: ReturnType<typeof parseRerank>, signal: AbortSignal) => {
    const rr = needReranker();
    const docs = body.documents.map(documentText);
    checkCount(docs.length, 'documents');
    const { results, usage } = await countRefusals(
      rr.rerankWithUsage(body.query, docs, { topN: body.top_n, instruction: body.instruction, signal, ...inputLimit(body.max_tokens_per_doc, body.truncate) }),
    );
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
      model: body.model ?? names.reranker,
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
      const results = await countRefusals(
        rr.rerank(body.query, body.texts, { topN: body.top_n, instruction: body.instruction, signal: ctx.signal, ...inputLimit(undefined, body.truncate) }),
      );
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
    const { scores, usage } = await countRefusals(rr.scoreWithUsage(pairs, { instruction: body.instruction, signal: ctx.signal, ...inputLimit(undefined, undefined) }));
    const tokens = usage.tokens;
    metrics.tokens.inc({ model: 'reranker' }, tokens);
    res.json({
      id: `score-${randomUUID()}`,
      object: 'list',
      created: Math.floor(Date.now() / 1000),
      model: body.model ?? names.reranker,
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
    const kind = body.input_type === 'query' || body.input_type === 'search_query' ? 'query' : 'document';
    const { embeddings, usage } = await countRefusals(
      em.embedWithUsage(raw, { kind, dimensions: body.dimensions, instruction: body.instruction, signal: ctx.signal, ...inputLimit(undefined, body.truncate) }),
    );
    metrics.tokens.inc({ model: 'embedder' }, usage.tokens);
    res.json({
      object: 'list',
      model: body.model ?? names.embedder,
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
      models.reranker && { id: names.reranker, object: 'model', created, owned_by: 'qrank', task: 'rerank', info: publicInfo(models.reranker.info) },
      models.embedder && { id: names.embedder, object: 'model', created, owned_by: 'qrank', task: 'embed', info: publicInfo(models.embedder.info) },
    ].filter(Boolean);
    res.json({ object: 'list', data });
  });
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

/** The texts of an embeddings `input`: one text, one token-id list, or a list of either (validated by embeddingsBody). */
function normaliseInput(input: string | number[] | (string | number[])[], em: Embedder): string[] {
  if (typeof input === 'string') return [input];
  if (typeof input[0] === 'number') return [em.detokenize(input as number[])];
  return (input as (string | number[])[]).map((item) => (typeof item === 'string' ? item : em.detokenize(item)));
}
