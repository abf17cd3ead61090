/**
 * Filters over product fields: { category: 'Audio', price: { lte: 100 }, brand: { in: ['A', 'B'] } }.
 * `parseFilter` checks one and gives its terms (field, operator, values); each store renders them in
 * its own SQL, so the filter applies inside recall: `compileFilter` for SQLite (the matching
 * products' vectors become the vector index's allow-list), pg-filters.ts for Postgres. Values only
 * ever reach SQL as bound parameters; field names are checked identifiers.
 *
 * Bounds, well under SQLite's own limits (32766 bound values, expression depth 1000): at most
 * MAX_FILTER_FIELDS fields, each with some of the seven operators, MAX_IN_VALUES values in one `in`
 * and MAX_FILTER_PARAMS values in all. Values are strings (valid Unicode, at most
 * MAX_FILTER_STRING_LENGTH characters), finite numbers or booleans, never nested deeper. Field names
 * are identifiers joined by single dots (a path into the product's JSON), never `__proto__`,
 * `constructor` or `prototype`. Only own properties of the filter are read. The server checks request
 * bodies with `filterProblem`, so both layers have the same bounds and give the same messages.
 */
import { invalid } from '../errors';
import { LONE_SURROGATE } from '../validate';

export type Scalar = string | number | boolean;
export type FieldFilter = Scalar | { eq?: Scalar; ne?: Scalar; lt?: number; lte?: number; gt?: number; gte?: number; in?: Scalar[] };
export type Filter = Record<string, FieldFilter>;

export const MAX_FILTER_FIELDS = 32;
export const MAX_IN_VALUES = 1000;
export const MAX_FILTER_PARAMS = 2000;
export const MAX_FIELD_NAME_LENGTH = 128;
export const MAX_FILTER_STRING_LENGTH = 1024;

/** What is wrong with an input: where, as a path below the input, and why. */
export interface Problem {
  path: string[];
  message: string;
}

/** A filter in SQL: a WHERE clause over `products` and its bound values. */
export interface SqlFilter {
  where: string;
  params: Scalar[];
}

/** One condition of a checked filter: `field op value` ('in': any of `values`). */
export interface FilterTerm {
  field: string;
  op: '=' | '!=' | '<' | '<=' | '>' | '>=' | 'in';
  values: Scalar[];
}

const OPS = new Map<string, FilterTerm['op']>([['eq', '='], ['ne', '!='], ['lt', '<'], ['lte', '<='], ['gt', '>'], ['gte', '>=']]);
const OPERATORS = 'eq, ne, lt, lte, gt, gte, in';
const IDENTIFIER = /^[A-Za-z_]\w*$/;
const RESERVED = new Set(['__proto__', 'constructor', 'prototype']);

/** Why `name` cannot name a product field (identifiers joined by single dots), or undefined. */
export function fieldNameProblem(name: string): string | undefined {
  if (name.length > MAX_FIELD_NAME_LENGTH) return `field names are at most ${MAX_FIELD_NAME_LENGTH} characters ('${name.slice(0, 40)}...')`;
  const parts = name.split('.');
  if (!parts.every((p) => IDENTIFIER.test(p))) return `'${name}' is not a field name (letters, digits and _, not starting with a digit; parts joined by single dots)`;
  const reserved = parts.find((p) => RESERVED.has(p));
  return reserved ? `'${reserved}' cannot be a field name` : undefined;
}

/** A plain object (no array, no class instance): its own keys are all there is to read. */
export function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

/** INVALID_INPUT for `problem` in the input called `name`, worded as the server words it. */
export function invalidInput(name: string, problem: Problem) {
  return invalid(`${[name, ...problem.path].join('.')}: ${problem.message}`);
}

/** The filter's terms, or undefined when it filters nothing; INVALID_INPUT naming the part to change. */
export function parseFilter(filter: unknown): FilterTerm[] | undefined {
  const parsed = parse(filter);
  if (parsed instanceof FilterProblem) throw invalidInput('filter', parsed);
  return parsed;
}

/** The filter in SQLite's SQL over `products` (json_extract of its fields), or undefined when it filters nothing. */
export function compileFilter(filter: unknown): SqlFilter | undefined {
  return sqliteFilter(parseFilter(filter));
}

/** Checked terms in SQLite's SQL over `products`, or undefined for none. */
export function sqliteFilter(terms: FilterTerm[] | undefined): SqlFilter | undefined {
  if (!terms) return undefined;
  const params: Scalar[] = [];
  const clauses = terms.map(({ field, op, values }) => {
    const column = `json_extract(fields, '$.${field}')`; // field names are checked identifiers: safe inside the SQL text
    params.push(...values.map((v) => (typeof v === 'boolean' ? (v ? 1 : 0) : v)));
    return op === 'in' ? `${column} IN (${values.map(() => '?').join(', ')})` : `${column} ${op} ?`;
  });
  return { where: clauses.join(' AND '), params };
}

/** What is wrong with `filter` (the checks of parseFilter), or undefined. */
export function filterProblem(filter: unknown): Problem | undefined {
  const parsed = parse(filter);
  return parsed instanceof FilterProblem ? parsed : undefined;
}

class FilterProblem implements Problem {
  constructor(
    readonly path: string[],
    readonly message: string,
  ) {}
}

function parse(filter: unknown): FilterTerm[] | undefined | FilterProblem {
  try {
    return parseChecked(filter);
  } catch (err) {
    if (err instanceof FilterProblem) return err;
    throw err;
  }
}

function parseChecked(filter: unknown): FilterTerm[] | undefined {
  if (filter === undefined) return undefined;
  if (!isPlainObject(filter)) throw new FilterProblem([], 'must be an object of field: value or field: { operator: value }');
  const fields = Object.keys(filter);
  if (fields.length > MAX_FILTER_FIELDS) throw new FilterProblem([], `at most ${MAX_FILTER_FIELDS} fields, got ${fields.length}`);
  if (fields.length === 0) return undefined;
  const terms: FilterTerm[] = [];
  let params = 0;
  for (const field of fields) {
    const bad = fieldNameProblem(field);
    if (bad) throw new FilterProblem([], bad);
    for (const term of fieldTerms(field, filter[field])) {
      terms.push(term);
      params += term.values.length;
    }
    if (params > MAX_FILTER_PARAMS) throw new FilterProblem([], `at most ${MAX_FILTER_PARAMS} values in all`);
  }
  return terms;
}

function fieldTerms(field: string, cond: unknown): FilterTerm[] {
  if (!isPlainObject(cond)) return [{ field, op: '=', values: [scalar(cond, [field])] }];
  const ops = Object.keys(cond);
  if (ops.length === 0) throw new FilterProblem([field], `needs an operator (${OPERATORS})`);
  return ops.map((op): FilterTerm => {
    const value = cond[op];
    const sql = OPS.get(op);
    if (sql) return { field, op: sql, values: [scalar(value, [field, op])] };
    if (op !== 'in') throw new FilterProblem([field], `unknown operator '${op.slice(0, 40)}' (${OPERATORS})`);
    if (!Array.isArray(value) || value.length === 0) throw new FilterProblem([field, op], 'must be a non-empty array');
    if (value.length > MAX_IN_VALUES) throw new FilterProblem([field, op], `at most ${MAX_IN_VALUES} values, got ${value.length}`);
    return { field, op: 'in', values: value.map((v, i) => scalar(v, [field, op, String(i)])) };
  });
}

function scalar(v: unknown, path: string[]): Scalar {
  if (typeof v === 'boolean') return v;
  if (typeof v === 'number' && Number.isFinite(v)) return v;
  if (typeof v !== 'string') throw new FilterProblem(path, 'values must be strings, finite numbers or booleans');
  if (v.length > MAX_FILTER_STRING_LENGTH) throw new FilterProblem(path, `strings are at most ${MAX_FILTER_STRING_LENGTH} characters`);
  if (LONE_SURROGATE.test(v)) throw new FilterProblem(path, 'is not valid Unicode: it contains a lone surrogate');
  return v;
}
