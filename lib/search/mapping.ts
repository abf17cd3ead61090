/**
 * How records become products. A mapping names the id field, the template(s) of the text embedded,
 * the template of the text the reranker reads, the fields stored as numbers, and the columns of the
 * keyword index (weighted templates; the rerank template when it does not say, none with `false`). It is validated
 * here and nowhere else, wherever it comes from: `ingest` and `Collection.open` in the library,
 * the server's request bodies (they embed `mappingSchema`), and the meta of a collection, which an
 * older qrank wrote unchecked.
 *
 * A record becomes a product only when it is plain JSON data (strings, finite numbers, booleans,
 * null, arrays, plain objects) within RECORD_LIMITS, and every string in it, keys included, is
 * well-formed Unicode; otherwise `toProduct` gives the reason, naming the field or the limit, and
 * the caller rejects that record alone. Fields are read as own properties only, so a record's
 * `__proto__`, `constructor` or `prototype` key is data like any other and nothing is inherited.
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { LONE_SURROGATE, parseOptions } from '../validate';
import { ownField, renderTemplate, templateFields } from './templates';

export interface Mapping {
  /** Field holding the product id (default 'id'). */
  id?: string;
  /** Template(s) of the text embedded: one string = one vector per product; several = one vector each (e.g. one per language). */
  embed: string | string[];
  /** Template of the text the reranker reads. */
  rerank: string;
  /** Fields stored as numbers (CSV gives strings), for filters and fusion signals. */
  numeric?: string[];
  /**
   * Columns of the keyword index (BM25): one template, or templates with their BM25 weights
   * (e.g. codes and brand above titles, titles above descriptions); default: the rerank template;
   * `false`: no keyword index (vector recall only).
   */
  keyword?: false | string | KeywordColumn[];
}

/** A column of the keyword index: the template of its text and its weight in BM25 (default 1). */
export interface KeywordColumn {
  template: string;
  weight?: number;
}

/** What one record may hold; a shop catalog never comes near these. */
export const RECORD_LIMITS = {
  /** Nesting of objects and arrays: a flat record is 1, { "a": { "b": 1 } } is 2. */
  maxDepth: 32,
  /** UTF-8 bytes of a record serialised as JSON, of one JSONL line or CSV row, and of each text rendered from a record. */
  maxBytes: 1 << 20,
  /** Keys of a record, counted at every depth (CSV: columns). */
  maxFields: 1000,
} as const;

/** What one mapping may hold. */
export const MAPPING_LIMITS = {
  /** Embed templates, so vectors per product. Part of the stored format: a collection numbers its vectors vid x 16 + slot. */
  maxEmbedTemplates: 16,
  /** Characters of one template. */
  maxTemplateLength: 4096,
  /** Placeholders in one template (each renders a field of up to RECORD_LIMITS.maxBytes). */
  maxPlaceholders: 64,
  /** Characters of a field name (id, numeric). */
  maxFieldNameLength: 256,
  /** Columns of the keyword index. */
  maxKeywordColumns: 8,
  /** BM25 weight of a keyword column at most (weights are positive). */
  maxKeywordWeight: 100,
} as const;

export function describeBytes(n: number): string {
  return n % (1 << 20) === 0 ? `${n / (1 << 20)} MiB` : `${n} bytes`;
}

const wellFormed = (what: string, maxLength: number) =>
  z
    .string({ error: (issue) => (issue.code === 'invalid_type' ? `must be ${what}` : undefined) })
    .min(1, 'must not be empty')
    .max(maxLength, `is longer than ${maxLength} characters (the limit)`)
    .refine((s) => !LONE_SURROGATE.test(s), 'is not valid Unicode (a lone surrogate)');
const fieldName = wellFormed('a field name', MAPPING_LIMITS.maxFieldNameLength);
const template = wellFormed('a template: a string like "{title} | {brand}"', MAPPING_LIMITS.maxTemplateLength)
  .refine((t) => templateFields(t).length > 0, 'names no field: put field names in braces, like "{title} | {brand}"')
  .refine((t) => templateFields(t).length <= MAPPING_LIMITS.maxPlaceholders, `has more than ${MAPPING_LIMITS.maxPlaceholders} placeholders (the limit)`);
const keywordColumn = z
  .object({
    template,
    weight: z
      .number({ error: 'must be a number' })
      .positive('must be positive')
      .max(MAPPING_LIMITS.maxKeywordWeight, `must be at most ${MAPPING_LIMITS.maxKeywordWeight}`)
      .optional(),
  })
  .strict();

/** A mapping as the server's request bodies and the library accept it. */
export const mappingSchema = z
  .object({
    id: fieldName.optional(),
    embed: z.union([template, z.array(template).min(1).max(MAPPING_LIMITS.maxEmbedTemplates)], {
      error: `must be a template (a string like "{title} | {brand}") or an array of 1 to ${MAPPING_LIMITS.maxEmbedTemplates} of them`,
    }),
    rerank: template,
    numeric: z.array(fieldName, { error: 'must be an array of field names' }).max(RECORD_LIMITS.maxFields, `names more than ${RECORD_LIMITS.maxFields} fields (the limit)`).optional(),
    keyword: z
      .union([z.literal(false), template, z.array(keywordColumn).min(1).max(MAPPING_LIMITS.maxKeywordColumns)], {
        error: `must be false, a template, or an array of 1 to ${MAPPING_LIMITS.maxKeywordColumns} { template, weight } columns`,
      })
      .optional(),
  })
  .strict();

/** The keyword columns of a mapping with their weights (none for `keyword: false`). */
export function keywordColumns(m: Mapping): Required<KeywordColumn>[] {
  if (m.keyword === false) return [];
  const columns = m.keyword === undefined ? m.rerank : m.keyword;
  return typeof columns === 'string' ? [{ template: columns, weight: 1 }] : columns.map((c) => ({ template: c.template, weight: c.weight ?? 1 }));
}

/** The text of each keyword column for a product's fields. */
export function keywordTexts(columns: Required<KeywordColumn>[], fields: Record<string, unknown>): string[] {
  return columns.map((c) => renderTemplate(c.template, fields));
}

/** `value` as a Mapping, or INVALID_INPUT naming the field to change ("mapping.embed: ..."). */
export function parseMapping(value: unknown): Mapping {
  return parseOptions(mappingSchema, value, 'mapping');
}

/** A record as the collection stores it: the SQL parameters of its row. */
export interface Product {
  id: string;
  /** The record's fields as JSON (numeric fields as numbers). */
  fields: string;
  /** The texts embedded, as a JSON array (one per embed template). */
  embed: string;
  rerank: string;
  /** Hash of the texts embedded: a changed hash means new vectors. */
  hash: string;
  /** The text of each keyword column (see keywordColumns). */
  keywords: string[];
}

/** The product of `record` under `m` (a mapping from parseMapping), or why the record is rejected. */
export function toProduct(record: Record<string, unknown>, m: Mapping): Product | { error: string } {
  const problem = jsonProblem(record);
  if (problem) return { error: problem };
  const idField = m.id ?? 'id';
  const idValue = ownField(record, idField);
  if (idValue === undefined || idValue === null || String(idValue).trim() === '') return { error: `missing id field '${idField}'` };
  if (typeof idValue !== 'string' && typeof idValue !== 'number') return { error: `id field '${idField}' must be a string or a number` };
  // no prototype: a field named __proto__ is set like any other
  const fields = Object.assign(Object.create(null) as Record<string, unknown>, record);
  for (const f of m.numeric ?? []) {
    const v = fields[f];
    if (v === undefined || v === null || v === '') continue;
    const n = typeof v === 'number' || typeof v === 'string' ? Number(v) : Number.NaN;
    if (!Number.isFinite(n)) return { error: `field '${f}' is not a number: ${JSON.stringify(v).slice(0, 40)}` };
    fields[f] = n;
  }
  const fieldsJson = JSON.stringify(fields);
  const bytes = Buffer.byteLength(fieldsJson);
  if (bytes > RECORD_LIMITS.maxBytes) return { error: `the record is ${bytes} bytes as JSON, over the limit of ${describeBytes(RECORD_LIMITS.maxBytes)}` };
  const embed = (Array.isArray(m.embed) ? m.embed : [m.embed]).map((t) => renderTemplate(t, fields));
  if (embed.every((t) => t === '')) return { error: 'no text to embed: every field of the embed template is missing' };
  const texts = embed.map((t) => t || embed.find((x) => x !== '')!); // a missing language falls back to another
  const rerank = renderTemplate(m.rerank, fields);
  const keywords = keywordTexts(keywordColumns(m), fields);
  const long = [...texts, rerank, ...keywords].find((t) => Buffer.byteLength(t) > RECORD_LIMITS.maxBytes);
  if (long !== undefined) return { error: `a text rendered from the templates is ${Buffer.byteLength(long)} bytes, over the limit of ${describeBytes(RECORD_LIMITS.maxBytes)}` };
  const embedJson = JSON.stringify(texts);
  return { id: String(idValue), fields: fieldsJson, embed: embedJson, rerank, hash: createHash('sha256').update(embedJson).digest('hex'), keywords };
}

/**
 * Why `record` is not plain JSON data within RECORD_LIMITS with well-formed strings (the first
 * problem met, naming the field), or undefined when it is. Recursion stops at maxDepth + 1, so a
 * cycle or a deep nest costs no more than 33 frames.
 */
function jsonProblem(record: Record<string, unknown>): string | undefined {
  const path: (string | number)[] = [];
  let fields = 0;
  const where = () => (path.length ? `field '${formatPath(path)}'` : 'the record');
  const visit = (value: unknown, depth: number): string | undefined => {
    switch (typeof value) {
      case 'string':
        return LONE_SURROGATE.test(value) ? `${where()} is not valid Unicode: it holds a lone surrogate (a broken UTF-16 pair)` : undefined;
      case 'number':
        return Number.isFinite(value) ? undefined : `${where()} is ${value}, not a finite number`;
      case 'boolean':
      case 'undefined': // left out, as JSON.stringify does
        return undefined;
      case 'object':
        break;
      default:
        return `${where()} is a ${typeof value}, not a JSON value`;
    }
    if (value === null) return undefined;
    if (depth > RECORD_LIMITS.maxDepth) return `the record is nested deeper than ${RECORD_LIMITS.maxDepth} levels (the limit)`;
    const isArray = Array.isArray(value);
    const proto = Object.getPrototypeOf(value);
    if (!isArray && proto !== Object.prototype && proto !== null) return `${where()} is a ${proto?.constructor?.name ?? 'object'}, not a plain object`;
    for (const [key, v] of Object.entries(value)) {
      if (!isArray) {
        if (++fields > RECORD_LIMITS.maxFields) return `the record has more than ${RECORD_LIMITS.maxFields} fields (the limit, counted at every depth)`;
        if (LONE_SURROGATE.test(key)) return `a field name in ${where()} is not valid Unicode: it holds a lone surrogate`;
      }
      path.push(isArray ? Number(key) : key);
      const problem = visit(v, depth + 1);
      path.pop();
      if (problem) return problem;
    }
    return undefined;
  };
  return visit(record, 1);
}

function formatPath(path: (string | number)[]): string {
  const text = path.map((p, i) => (typeof p === 'number' ? `[${p}]` : (i > 0 ? '.' : '') + JSON.stringify(p).slice(1, -1))).join('');
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}
