/**
 * The OpenAPI 3.1 document of the server, built from the same zod schemas that validate requests,
 * so the document cannot drift from what the server accepts. test/server.test.ts checks that it
 * lists exactly the routes Express serves.
 */
import { z } from 'zod';
import { RECALL_MODES } from '../search/engine';
import { collectionBody, collectionName, deleteDocumentsBody, documentsBody, embeddingsBody, rerankBody, scoreBody, searchBody, teiRerankBody } from './schemas';

type Json = Record<string, unknown>;

function schema(s: z.ZodType): Json {
  const { $schema: _ignored, ...rest } = z.toJSONSchema(s, { io: 'input', unrepresentable: 'any' }) as Json;
  return rest;
}

const errorResponse = {
  description: 'An error: the code is stable, the message says what to change',
  content: {
    'application/json': {
      schema: { $ref: '#/components/schemas/Error' },
    },
  },
};

function post(summary: string, body: Json, response: Json): Json {
  return {
    post: {
      summary,
      security: [{ bearer: [] }, {}],
      requestBody: { required: true, content: { 'application/json': { schema: body } } },
      responses: {
        200: { description: 'OK', content: { 'application/json': { schema: response } } },
        400: errorResponse,
        401: errorResponse,
        413: errorResponse,
        404: errorResponse,
        429: errorResponse,
        503: errorResponse,
        default: errorResponse,
      },
    },
  };
}

function get(summary: string, response: Json, contentType = 'application/json'): Json {
  return { get: { summary, responses: { 200: { description: 'OK', content: { [contentType]: { schema: response } } }, default: errorResponse } } };
}

const nameParam = { name: 'name', in: 'path', required: true, schema: schema(collectionName) };

// A route of the collections API: the collection name in the path, 404 when it does not exist.
// `uploads`: other request content types the route reads (streamed bodies).
function collectionOp(summary: string, body: Json | undefined, response: Json, uploads: Record<string, Json> = {}): Json {
  return {
    summary,
    parameters: [nameParam],
    security: [{ bearer: [] }, {}],
    ...(body ? { requestBody: { required: true, content: { 'application/json': { schema: body }, ...uploads } } } : {}),
    responses: { 200: { description: 'OK', content: { 'application/json': { schema: response } } }, 400: errorResponse, 401: errorResponse, 404: errorResponse, 413: errorResponse, default: errorResponse },
  };
}

const upload = { schema: { type: 'string', description: 'one product per line (NDJSON) or per row (CSV, with a header), UTF-8' } };

const collectionInfo = {
  type: 'object',
  required: ['name', 'size', 'pending', 'vectors', 'index'],
  properties: {
    name: { type: 'string' }, size: { type: 'integer' }, pending: { type: 'integer' }, vectors: { type: 'integer' }, index: { type: 'object' }, mapping: { type: 'object' }, embedder: { type: 'string' },
    keywords: { type: 'array', description: 'the keyword index: its columns and BM25 weights (empty: none)', items: { type: 'object', required: ['template', 'weight'], properties: { template: { type: 'string' }, weight: { type: 'number' } } } },
  },
};
const rank = { type: 'integer', minimum: 1 };
const recallExplain = {
  type: 'object',
  description: "where the candidate stood in each recall list (ranks from 1; absent: not in that list) and its fused (RRF) score in a hybrid recall",
  properties: { keyword_rank: rank, keyword_score: { type: 'number' }, vector_rank: rank, vector_score: { type: 'number' }, fused_score: { type: 'number' } },
};
const unopenable = {
  type: 'object',
  required: ['name', 'error'],
  additionalProperties: false,
  properties: { name: { type: 'string' }, error: { type: 'object', required: ['code', 'message'], properties: { code: { type: 'string' }, message: { type: 'string' } } } },
};
const ingestResult = {
  type: 'object',
  required: ['read', 'upserted', 'unchanged', 'embedded', 'rejected', 'errors', 'size'],
  properties: {
    read: { type: 'integer' }, upserted: { type: 'integer' }, unchanged: { type: 'integer' }, embedded: { type: 'integer' }, rejected: { type: 'integer' }, size: { type: 'integer' },
    errors: { type: 'array', items: { type: 'object', properties: { at: { type: 'integer' }, reason: { type: 'string' } } } },
  },
};
const searchResponse = {
  type: 'object',
  required: ['results', 'timings', 'candidates'],
  properties: {
    results: {
      type: 'array',
      items: {
        type: 'object',
        required: ['id', 'score', 'recall_score', 'fields'],
        properties: {
          id: { type: 'string' }, score: { type: 'number' }, rerank_score: { type: 'number' }, recall_score: { type: 'number' }, fields: { type: 'object' },
          explain: { type: 'object', required: ['relevance', 'relevance_weight', 'signals', 'recall'], properties: { relevance: { type: 'number' }, relevance_weight: { type: 'number' }, signals: { type: 'object' }, recall: recallExplain } },
        },
      },
    },
    candidates: { type: 'integer' },
    reranked: { type: 'boolean' },
    recall: { enum: [...RECALL_MODES], description: "the recall that ran: the one asked for, or 'vector' for a query without keyword terms" },
    timings: {
      type: 'object',
      description: 'embed_ms overlaps keyword_ms (the keyword index is searched while the query is embedded); recall_ms is vector recall; fetch_ms fusion and reading the rows',
      properties: { embed_ms: { type: 'number' }, keyword_ms: { type: 'number' }, recall_ms: { type: 'number' }, fetch_ms: { type: 'number' }, rerank_ms: { type: 'number' }, total_ms: { type: 'number' } },
    },
  },
};

const rerankResults = {
  type: 'array',
  items: {
    type: 'object',
    required: ['index', 'relevance_score'],
    properties: { index: { type: 'integer' }, relevance_score: { type: 'number' }, document: { type: 'object', properties: { text: { type: 'string' } } } },
  },
};
const usage = { type: 'object', required: ['prompt_tokens', 'total_tokens'], properties: { prompt_tokens: { type: 'integer' }, total_tokens: { type: 'integer' } } };
const scoreResponse = {
  type: 'object',
  required: ['id', 'object', 'data', 'usage'],
  properties: {
    id: { type: 'string' }, object: { const: 'list' }, created: { type: 'integer' }, model: { type: 'string' }, usage,
    data: { type: 'array', items: { type: 'object', required: ['index', 'object', 'score'], properties: { index: { type: 'integer' }, object: { const: 'score' }, score: { type: 'number' } } } },
  },
};
const embeddingsResponse = {
  type: 'object',
  required: ['object', 'data', 'model', 'usage'],
  properties: {
    object: { const: 'list' }, model: { type: 'string' }, usage,
    data: {
      type: 'array',
      items: {
        type: 'object',
        required: ['object', 'index', 'embedding'],
        properties: { object: { const: 'embedding' }, index: { type: 'integer' }, embedding: { anyOf: [{ type: 'array', items: { type: 'number' } }, { type: 'string', contentEncoding: 'base64' }] } },
      },
    },
  },
};
const cohereResponse = { type: 'object', required: ['id', 'results'], properties: { id: { type: 'string' }, results: rerankResults, meta: { type: 'object' }, usage: { type: 'object' }, model: { type: 'string' } } };

export function openApiDocument(version: string): Json {
  const rerank = schema(rerankBody);
  return {
    openapi: '3.1.0',
    info: { title: 'qrank', version, description: 'Multilingual reranking and embeddings: Cohere, Jina, TEI, vLLM and OpenAI compatible routes' },
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
      schemas: {
        Error: {
          type: 'object',
          required: ['error'],
          properties: { error: { type: 'object', required: ['code', 'message'], properties: { code: { type: 'string' }, message: { type: 'string' } } } },
        },
      },
    },
    paths: {
      '/v1/rerank': post('Rerank (Cohere v1, Jina)', rerank, cohereResponse),
      '/v2/rerank': post('Rerank (Cohere v2)', rerank, cohereResponse),
      '/rerank': post('Rerank (TEI when the body has texts, else llama.cpp server / Jina)', { anyOf: [schema(teiRerankBody), rerank] }, {
        anyOf: [
          { type: 'array', items: { type: 'object', required: ['index', 'score'], properties: { index: { type: 'integer' }, score: { type: 'number' }, text: { type: 'string' } } } },
          cohereResponse,
        ],
      }),
      '/score': post('Score pairs (vLLM)', schema(scoreBody), scoreResponse),
      '/v1/score': post('Score pairs (vLLM)', schema(scoreBody), scoreResponse),
      '/v1/embeddings': post('Embeddings (OpenAI)', schema(embeddingsBody), embeddingsResponse),
      '/embeddings': post('Embeddings (OpenAI, without /v1)', schema(embeddingsBody), embeddingsResponse),
      '/v1/search': post('Two-stage search: keyword (BM25) and embedding recall fused by RRF, the filter inside both, then reranking, optional signal fusion and explain', schema(searchBody), searchResponse),
      '/v1/collections': {
        ...get('Collections in the data directory (one that cannot be opened is listed with its error, and can be deleted)', {
          type: 'object',
          properties: { data: { type: 'array', items: { oneOf: [collectionInfo, unopenable] } } },
        }),
        post: { ...(post('Create a collection (409 if it exists)', schema(collectionBody), collectionInfo).post as Json), responses: { 201: { description: 'Created', content: { 'application/json': { schema: collectionInfo } } }, 400: errorResponse, 401: errorResponse, 409: errorResponse, default: errorResponse } },
      },
      '/v1/collections/{name}': {
        get: collectionOp('A collection: size, pending products, index and mapping', undefined, collectionInfo),
        delete: collectionOp('Delete a collection and its files', undefined, { type: 'object', properties: { name: { type: 'string' }, deleted: { type: 'boolean' } } }),
      },
      '/v1/collections/{name}/documents': {
        post: collectionOp(
          'Upsert products: JSON records, or a streamed NDJSON or CSV upload read with the stored mapping; only changed texts are embedded again',
          schema(documentsBody),
          ingestResult,
          { 'application/x-ndjson': upload, 'text/csv': upload },
        ),
        delete: collectionOp('Delete products by id', schema(deleteDocumentsBody), { type: 'object', properties: { deleted: { type: 'integer' }, size: { type: 'integer' } } }),
      },
      '/v1/models': get('Models served', {
        type: 'object',
        required: ['object', 'data'],
        properties: {
          object: { const: 'list' },
          data: { type: 'array', items: { type: 'object', required: ['id', 'object', 'task', 'info'], properties: { id: { type: 'string' }, object: { const: 'model' }, task: { enum: ['rerank', 'embed'] }, info: { type: 'object' } } } },
        },
      }),
      '/health': get('Liveness', { type: 'object', properties: { status: { type: 'string' } } }),
      '/ready': get('Readiness: models loaded, not draining, and the collections store reachable (503 otherwise, with the reason)', { type: 'object', properties: { status: { type: 'string' }, reason: { type: 'string' } } }),
      '/metrics': get('Prometheus metrics', { type: 'string' }, 'text/plain'),
      '/openapi.json': get('This document', { type: 'object' }),
    },
  };
}
