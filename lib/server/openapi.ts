/**
 * The OpenAPI 3.1 document of the server, built from the same zod schemas that validate requests,
 * so the document cannot drift from what the server accepts. test/server.test.ts checks that it
 * lists exactly the routes Express serves.
 */
import { z } from 'zod';
import { embeddingsBody, rerankBody, scoreBody, teiRerankBody } from './schemas';

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
        429: errorResponse,
        503: errorResponse,
      },
    },
  };
}

function get(summary: string, response: Json, contentType = 'application/json'): Json {
  return { get: { summary, responses: { 200: { description: 'OK', content: { [contentType]: { schema: response } } } } } };
}

const rerankResults = {
  type: 'array',
  items: {
    type: 'object',
    required: ['index', 'relevance_score'],
    properties: { index: { type: 'integer' }, relevance_score: { type: 'number' }, document: { type: 'object', properties: { text: { type: 'string' } } } },
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
      '/score': post('Score pairs (vLLM)', schema(scoreBody), { type: 'object', required: ['data'], properties: { data: { type: 'array' }, usage: { type: 'object' } } }),
      '/v1/score': post('Score pairs (vLLM)', schema(scoreBody), { type: 'object', required: ['data'], properties: { data: { type: 'array' }, usage: { type: 'object' } } }),
      '/v1/embeddings': post('Embeddings (OpenAI)', schema(embeddingsBody), { type: 'object', required: ['data', 'usage'], properties: { data: { type: 'array' }, model: { type: 'string' }, usage: { type: 'object' } } }),
      '/embeddings': post('Embeddings (OpenAI, without /v1)', schema(embeddingsBody), { type: 'object', required: ['data'], properties: { data: { type: 'array' } } }),
      '/v1/models': get('Models served', { type: 'object', properties: { data: { type: 'array' } } }),
      '/health': get('Liveness', { type: 'object', properties: { status: { type: 'string' } } }),
      '/ready': get('Readiness: models loaded and not draining (503 otherwise)', { type: 'object', properties: { status: { type: 'string' } } }),
      '/metrics': get('Prometheus metrics', { type: 'string' }, 'text/plain'),
      '/openapi.json': get('This document', { type: 'object' }),
    },
  };
}
