/**
 * Filters over product fields, compiled to SQL on the catalog: { category: 'Audio',
 * price: { lte: 100 }, brand: { in: ['A', 'B'] } }. The matching products' vectors become the
 * vector index's allow-list, so the filter applies inside recall.
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

const OPS = new Map([['eq', '='], ['ne', '!='], ['lt', '<'], ['lte', '<='], ['gt', '>'], ['gte', '>=']]);
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

/** The filter in SQL, or undefined when it filters nothing; INVALID_INPUT naming the part to change. */
export function compileFilter(filter: unknown): SqlFilter | undefined {
  const compiled = compile(filter);
  if (compiled instanceof FilterProblem) throw invalidInput('filter', compiled);
  return compiled;
}

/** What is wrong with `filter` (the checks of compileFilter), or undefined. */
export function filterProblem(filter: unknown): Problem | undefined {
  const compiled = compile(filter);
  return compiled instanceof FilterProblem ? compiled : undefined;
}

class FilterProblem implements Problem {
  constructor(
    readonly path: string[],
    readonly message: string,
  ) {}
}

function compile(filter: unknown): SqlFilter | undefined | FilterProblem {
  try {
    return compileChecked(filter);
  } catch (err) {
    if (err instanceof FilterProblem) return err;
    throw err;
  }
}

function compileChecked(filter: unknown): SqlFilter | undefined {
  if (filter === undefined) return undefined;
  if (!isPlainObject(filter)) throw new FilterProblem([], 'must be an object of field: value or field: { operator: value }');
  const fields = Object.keys(filter);
  if (fields.length > MAX_FILTER_FIELDS) throw new FilterProblem([], `at most ${MAX_FILTER_FIELDS} fields, got ${fields.length}`);
  if (fields.length === 0) return undefined;
  const clauses: string[] = [];
  const params: Scalar[] = [];
  for (const field of fields) {
    const bad = fieldNameProblem(field);
    if (bad) throw new FilterProblem([], bad);
    fieldClauses(field, filter[field], clauses, params);
    if (params.length > MAX_FILTER_PARAMS) throw new FilterProblem([], `at most ${MAX_FILTER_PARAMS} values in all`);
  }
  return { where: clauses.join(' AND '), params };
}

// field names are checked identifiers: safe inside the SQL text
function fieldClauses(field: string, cond: unknown, clauses: string[], params: Scalar[]): void {
  const column = `json_extract(fields, '$.${field}')`;
  if (!isPlainObject(cond)) {
    clauses.push(`${column} = ?`);
    params.push(sqlValue(cond, [field]));
    return;
  }
  const ops = Object.keys(cond);
  if (ops.length === 0) throw new FilterProblem([field], `needs an operator (${OPERATORS})`);
  for (const op of ops) {
    const value = cond[op];
    const sql = OPS.get(op);
    if (sql) {
      clauses.push(`${column} ${sql} ?`);
      params.push(sqlValue(value, [field, op]));
    } else if (op === 'in') {
      if (!Array.isArray(value) || value.length === 0) throw new FilterProblem([field, op], 'must be a non-empty array');
      if (value.length > MAX_IN_VALUES) throw new FilterProblem([field, op], `at most ${MAX_IN_VALUES} values, got ${value.length}`);
      clauses.push(`${column} IN (${value.map(() => '?').join(', ')})`);
      value.forEach((v, i) => params.push(sqlValue(v, [field, op, String(i)])));
    } else {
      throw new FilterProblem([field], `unknown operator '${op.slice(0, 40)}' (${OPERATORS})`);
    }
  }
}

function sqlValue(v: unknown, path: string[]): Scalar {
  if (typeof v === 'boolean') return v ? 1 : 0;
  if (typeof v === 'number' && Number.isFinite(v)) return v;
  if (typeof v !== 'string') throw new FilterProblem(path, 'values must be strings, finite numbers or booleans');
  if (v.length > MAX_FILTER_STRING_LENGTH) throw new FilterProblem(path, `strings are at most ${MAX_FILTER_STRING_LENGTH} characters`);
  if (LONE_SURROGATE.test(v)) throw new FilterProblem(path, 'is not valid Unicode: it contains a lone surrogate');
  return v;
}
