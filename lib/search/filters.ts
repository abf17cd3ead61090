/**
 * Filters over product fields, compiled to SQL on the catalog: { category: 'Audio',
 * price: { lte: 100 }, brand: { in: ['A', 'B'] } }. The matching products' vectors become the
 * vector index's allow-list, so the filter applies inside recall.
 */
import { invalid } from '../errors';

export type Scalar = string | number | boolean;
export type FieldFilter = Scalar | { eq?: Scalar; ne?: Scalar; lt?: number; lte?: number; gt?: number; gte?: number; in?: Scalar[] };
export type Filter = Record<string, FieldFilter>;

const OPS: Record<string, string> = { eq: '=', ne: '!=', lt: '<', lte: '<=', gt: '>', gte: '>=' };
const FIELD = /^[A-Za-z_][\w.]*$/;

export function compileFilter(filter: Filter | undefined): { where: string; params: Scalar[] } {
  if (!filter || Object.keys(filter).length === 0) return { where: '1', params: [] };
  const clauses: string[] = [];
  const params: Scalar[] = [];
  for (const [field, cond] of Object.entries(filter)) {
    if (!FIELD.test(field)) throw invalid(`filter field '${field}' must be a field name (letters, digits, _ and .)`);
    const column = `json_extract(fields, '$.${field}')`;
    if (typeof cond !== 'object' || cond === null) {
      clauses.push(`${column} = ?`);
      params.push(sqlValue(cond, field));
      continue;
    }
    for (const [op, value] of Object.entries(cond)) {
      if (op === 'in') {
        if (!Array.isArray(value) || value.length === 0) throw invalid(`filter ${field}.in must be a non-empty array`);
        clauses.push(`${column} IN (${value.map(() => '?').join(', ')})`);
        params.push(...value.map((v) => sqlValue(v, field)));
      } else if (OPS[op]) {
        clauses.push(`${column} ${OPS[op]} ?`);
        params.push(sqlValue(value as Scalar, field));
      } else {
        throw invalid(`filter ${field}: unknown operator '${op}' (eq, ne, lt, lte, gt, gte, in)`);
      }
    }
  }
  return { where: clauses.join(' AND '), params };
}

function sqlValue(v: unknown, field: string): Scalar {
  if (typeof v === 'boolean') return v ? 1 : 0;
  if (typeof v === 'string' || (typeof v === 'number' && Number.isFinite(v))) return v;
  throw invalid(`filter ${field}: values must be strings, finite numbers or booleans`);
}
