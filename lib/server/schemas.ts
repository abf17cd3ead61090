/**
 * Request bodies of the drop-in APIs, described with zod. Each accepts what its reference client
 * sends (cohere-ai v1/v2, Jina, TEI, vLLM, openai) and rejects the rest with a message that names
 * the field.
 */
import { z } from 'zod';
import { HttpError } from './http-errors';

const text = z.string().refine((s) => !/\p{Cs}/u.test(s), 'is not valid Unicode (lone surrogate)');
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

/** A collection name (a body's `name` or `collection`, or the path's). */
export const collectionName = z.string().regex(/^[\w-]{1,64}$/, 'must be 1-64 letters, digits, _ or -');
const scalar = z.union([z.string(), z.number(), z.boolean()]);
const fieldFilter = z.union([
  scalar,
  z
    .object({ eq: scalar, ne: scalar, lt: z.number(), lte: z.number(), gt: z.number(), gte: z.number(), in: z.array(scalar).min(1) })
    .partial()
    .strict(),
]);
const mapping = z
  .object({
    id: z.string().optional(),
    embed: z.union([z.string().min(1), z.array(z.string().min(1)).min(1).max(16)]),
    rerank: z.string().min(1),
    numeric: z.array(z.string()).optional(),
  })
  .strict();

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
    mapping: mapping.optional(),
  })
  .strict();

/** POST /v1/collections/:name/documents: products as JSON records (the mapping says which fields). */
export const documentsBody = z
  .object({
    documents: z.array(z.record(z.string(), z.unknown())),
    mapping: mapping.optional(),
  })
  .strict();

/** DELETE /v1/collections/:name/documents */
export const deleteDocumentsBody = z.object({ ids: z.array(z.string().min(1)).min(1) }).strict();

/** POST /v1/search */
export const searchBody = z
  .object({
    collection: collectionName,
    query: text.refine((s) => s.trim().length > 0, 'must not be empty'),
    recall_k: z.number().int().positive().max(10_000).optional(),
    top_n: z.number().int().positive().optional(),
    filter: z.record(z.string(), fieldFilter).optional(),
    instruction: text.optional(),
    rerank: z.boolean().optional(),
    fusion: z.object({ signals: z.record(z.string(), z.number().min(0).max(1)) }).strict().optional(),
    explain: z.boolean().optional(),
  })
  .strict();
