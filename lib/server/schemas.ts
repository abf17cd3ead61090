/**
 * Request bodies of the drop-in APIs, described with zod. Each accepts what its reference client
 * sends (cohere-ai v1/v2, Jina, TEI, vLLM, openai) and rejects the rest with a message that names
 * the field.
 */
import { z } from 'zod';
import { COLLECTION_NAME, COLLECTION_NAME_RULE } from '../search/store';
import { MAX_FUSION_SIGNALS, MAX_RECALL_K, RECALL_MODES, signalsProblem } from '../search/engine';
import { MAX_RECALL_WEIGHT, MAX_RRF_K } from '../search/fusion';
import { MAX_FILTER_FIELDS, MAX_FILTER_STRING_LENGTH, MAX_IN_VALUES, type Problem, filterProblem } from '../search/filters';
import { mappingSchema } from '../search/mapping';
import { HttpError } from './http-errors';
import { LONE_SURROGATE } from '../validate';

const text = z.string().refine((s) => !LONE_SURROGATE.test(s), 'is not valid Unicode (lone surrogate)');
const documentItem = z.union([text, z.object({ text }).passthrough()]);
const topN = z.number().int().positive();
// llama.cpp's server, TEI and Cohere all refuse to rerank nothing
const nonEmpty = 'must not be empty: send at least one';

/** Cohere v1 and Jina share POST /v1/rerank; Cohere v2 is POST /v2/rerank; llama.cpp server uses /rerank. */
export const rerankBody = z
  .object({
    model: z.string().optional(),
    query: text.refine((s) => s.trim().length > 0, 'must not be empty'),
    documents: z.array(documentItem).min(1, `${nonEmpty} document`),
    top_n: topN.optional(),
    return_documents: z.boolean().optional(),
    max_tokens_per_doc: z.number().int().positive().optional(),
    max_chunks_per_doc: z.number().int().positive().optional(),
    rank_fields: z.array(z.string()).optional(),
    instruction: text.optional(), // qrank extension
    truncate: z.boolean().optional(), // qrank extension: false refuses documents over the token limit
  })
  .passthrough();

/** TEI's POST /rerank. */
export const teiRerankBody = z
  .object({
    query: text.refine((s) => s.trim().length > 0, 'must not be empty'),
    texts: z.array(text).min(1, `${nonEmpty} text`),
    top_n: topN.optional(), // llama.cpp's server reads it in this shape too
    raw_scores: z.boolean().optional(),
    return_text: z.boolean().optional(),
    truncate: z.boolean().optional(),
    truncation_direction: z.enum(['Right', 'Left', 'right', 'left']).optional(),
    instruction: text.optional(),
  })
  .passthrough();

/** vLLM's POST /score: one-to-one, one-to-many (text_1 a string) or pairwise lists. */
export const scoreBody = z
  .object({
    model: z.string().optional(),
    text_1: z.union([text, z.array(text)]),
    text_2: z.union([text, z.array(text)]),
    truncate_prompt_tokens: z.number().int().positive().optional(),
    instruction: text.optional(),
  })
  .passthrough();

// token ids are int32 in the engine: a larger one would wrap around to another token
const tokenIds = z.array(z.number().int().nonnegative().max(0x7fffffff));

/**
 * OpenAI's POST /v1/embeddings: one text, one list of token ids, or a list whose items are texts or
 * token-id lists, mixed as llama.cpp's server accepts. Token ids are decoded with the model's vocabulary.
 */
export const embeddingsBody = z
  .object({
    model: z.string().optional(),
    input: z.union([text, tokenIds, z.array(z.union([text, tokenIds]))]),
    encoding_format: z.enum(['float', 'base64']).optional(),
    dimensions: z.number().int().positive().optional(),
    user: z.string().optional(),
    input_type: z.enum(['query', 'document', 'search_query', 'search_document']).optional(), // qrank extension
    instruction: text.optional(),
    truncate: z.boolean().optional(), // qrank extension: false refuses inputs over the token limit
  })
  .passthrough();

export function parseBody<T extends z.ZodType>(schema: T, body: unknown): z.infer<T> {
  if (body === undefined || body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw new HttpError(400, 'INVALID_INPUT', 'the body must be a JSON object');
  }
  const r = schema.safeParse(body);
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  const field = issue.path.length ? issue.path.join('.') : 'body';
  throw new HttpError(400, 'INVALID_INPUT', `${field}: ${issue.message}`);
}

export function documentText(d: z.infer<typeof documentItem>): string {
  return typeof d === 'string' ? d : d.text;
}

/**
 * A value the library checks itself: the same bounds and messages as a library call gets, on the
 * body as parsed (zod's records drop a `__proto__` key, which must be refused, not ignored).
 * `shape` types it and documents it in the OpenAPI document.
 */
function checkedBy<T extends z.ZodType>(problem: (v: unknown) => Problem | undefined, shape: T) {
  const check = z.custom<z.infer<T>>().superRefine((v, ctx) => {
    const p = problem(v);
    if (p) ctx.addIssue({ code: 'custom', path: p.path, message: p.message });
  });
  return check.and(shape);
}

/** A collection name (a body's `name` or `collection`, or the path's). */
export const collectionName = z.string().regex(COLLECTION_NAME, COLLECTION_NAME_RULE);
const scalar = z.union([text.max(MAX_FILTER_STRING_LENGTH), z.number(), z.boolean()]);
const fieldFilter = z.union([
  scalar,
  z
    .object({ eq: scalar, ne: scalar, lt: z.number(), lte: z.number(), gt: z.number(), gte: z.number(), in: z.array(scalar).min(1).max(MAX_IN_VALUES) })
    .partial()
    .strict(),
]);

/**
 * A collection name in a URL path, checked as in a body: a name like '../x' would otherwise reach
 * the data directory's file names.
 */
export function pathName(value: unknown): string {
  const r = collectionName.safeParse(value);
  if (!r.success) throw new HttpError(400, 'INVALID_INPUT', `name (in the path): ${r.error.issues[0].message}`);
  return r.data;
}

const upTo = (max: number) => z.number().int().positive().max(max);

/** POST /v1/collections */
export const collectionBody = z
  .object({
    name: collectionName,
    // bounded by what one request may make the server allocate (an HNSW graph with m = 1e8 takes
    // gigabytes per vector); the library checks the rest (m >= 2, pqBits <= 16, pqM divides dim)
    index: z
      .object({
        kind: z.enum(['flat', 'hnsw', 'ivf', 'ivfpq']),
        metric: z.enum(['ip', 'l2']),
        m: upTo(256),
        efConstruction: upTo(4096),
        efSearch: upTo(4096),
        nlist: upTo(65_536),
        nprobe: upTo(65_536),
        pqM: upTo(1024),
        pqBits: z.number().int().positive(),
      })
      .partial()
      .strict()
      .optional(),
    mapping: mappingSchema.optional(),
  })
  .strict();

/** POST /v1/collections/:name/documents: products as JSON records (the mapping says which fields). */
export const documentsBody = z
  .object({
    // records as parsed, not through z.record, which drops a `__proto__` key: the library decides
    // what a hostile key means, as for NDJSON uploads
    documents: z.array(
      z.custom<Record<string, unknown>>((v) => typeof v === 'object' && v !== null && !Array.isArray(v), 'must be an object (a product record)').meta({ type: 'object' }),
    ),
    mapping: mappingSchema.optional(),
  })
  .strict();

/** DELETE /v1/collections/:name/documents */
export const deleteDocumentsBody = z.object({ ids: z.array(z.string().min(1)).min(1) }).strict();

/** POST /v1/search */
export const searchBody = z
  .object({
    collection: collectionName,
    query: text.refine((s) => s.trim().length > 0, 'must not be empty'),
    recall: z.enum(RECALL_MODES).optional(),
    recall_k: z.number().int().positive().max(MAX_RECALL_K).optional(),
    keyword_k: z.number().int().positive().max(MAX_RECALL_K).optional(),
    top_n: z.number().int().positive().optional(),
    filter: checkedBy(filterProblem, z.record(z.string(), fieldFilter).meta({ maxProperties: MAX_FILTER_FIELDS })).optional(),
    instruction: text.optional(),
    rerank: z.boolean().optional(),
    fusion: z
      .object({
        rrf_k: z.number().min(0).max(MAX_RRF_K).optional(),
        keyword_weight: z.number().min(0).max(MAX_RECALL_WEIGHT).optional(),
        vector_weight: z.number().min(0).max(MAX_RECALL_WEIGHT).optional(),
        signals: checkedBy(signalsProblem, z.record(z.string(), z.number().min(0).max(1)).meta({ maxProperties: MAX_FUSION_SIGNALS })).optional(),
      })
      .strict()
      .optional(),
    explain: z.boolean().optional(),
  })
  .strict();
