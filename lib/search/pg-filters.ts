/**
 * Filters (filters.ts) as Postgres predicates over a product's `doc` (jsonb of its fields), every
 * value and every field path a bound parameter: `doc #> $path` is the field (a path into the JSON,
 * as SQLite's json_extract reads it), compared as jsonb.
 *
 * The same products match as in SQLite, with these stated differences, all at the edges of JSON:
 * - `=` / `in`: a boolean matches a boolean only (SQLite stores true as 1, so there it also matches 1);
 * - ranges (`lt lte gt gte`) compare values of the operand's type only (jsonb orders strings before
 *   numbers; SQLite orders numbers before text, so `{ gt: 5 }` there also matches every string);
 * - U+0000 in a stored or filtered string is removed before comparing (jsonb cannot hold it).
 * `ne` matches products that have the field, not null, with another value, as in SQLite.
 */
import type { FilterTerm, Scalar } from './filters';

/** The terms ANDed, their values appended to `params` (placeholders numbered after what it holds). */
export function pgFilter(terms: FilterTerm[], params: unknown[]): string {
  const bind = (v: unknown) => `$${params.push(v)}`;
  return terms
    .map(({ field, op, values }) => {
      const path = `(doc #> ${bind(field.split('.'))}::text[])`;
      if (op === 'in') return `${path} = ANY(${bind(values.map(jsonOf))}::jsonb[])`;
      const value = `${bind(jsonOf(values[0]))}::jsonb`;
      if (op === '=') return `${path} = ${value}`;
      if (op === '!=') return `(${path} <> ${value} AND jsonb_typeof${path} <> 'null')`;
      return `(${path} ${op} ${value} AND jsonb_typeof${path} = jsonb_typeof(${value}))`;
    })
    .join(' AND ');
}

function jsonOf(v: Scalar): string {
  return JSON.stringify(withoutNul(v));
}

/** A JSON value with U+0000 removed from its strings and keys (jsonb cannot hold it). */
export function withoutNul(value: unknown): unknown {
  if (typeof value === 'string') return value.includes('\0') ? value.replaceAll('\0', '') : value;
  if (Array.isArray(value)) return value.map(withoutNul);
  if (value === null || typeof value !== 'object') return value;
  const out: Record<string, unknown> = Object.create(null);
  for (const [k, v] of Object.entries(value)) out[withoutNul(k) as string] = withoutNul(v);
  return out;
}
