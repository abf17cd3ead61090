/**
 * Text templates over product fields: "{title_en} | {brand} | {category}". A missing or empty field
 * renders as nothing, and separators left dangling by it are dropped, so every language field that
 * is present ends up in the text and absent ones leave no trace. Fields are looked up as own
 * properties only: `{constructor}` or `{__proto__}` is whatever the record itself holds under that
 * name, never something inherited. The cleanup of separators is a linear scan (no backtracking
 * regular expression), so no field value can make rendering slow.
 */
const PLACEHOLDER = /\{([\w.]+)\}/g;
/** One character of white space or a separator: what a missing field can leave dangling. */
const SEPARATOR_OR_SPACE = /[\s|,;:]/;
/** A run of white space and pipes (one match per maximal run, so no backtracking). */
const PIPE_RUN = /[\s|]+/g;

export function renderTemplate(template: string, fields: Record<string, unknown>): string {
  const parts = template.split('\n').map((line) => {
    let filled = false;
    let placeholders = false;
    const text = line.replace(PLACEHOLDER, (_, name: string) => {
      placeholders = true;
      const v = lookup(fields, name);
      if (v === undefined || v === null || v === '') return '';
      filled = true;
      return typeof v === 'object' ? JSON.stringify(v) : String(v);
    });
    return placeholders && !filled ? '' : tidy(text);
  });
  return parts.filter((p) => p.length > 0).join('\n');
}

/**
 * Drops white space and separators at both ends, and turns each run of two or more pipes (with the
 * space around them) into one ' | '.
 */
function tidy(text: string): string {
  let start = 0;
  let end = text.length;
  while (end > start && SEPARATOR_OR_SPACE.test(text[end - 1])) end--;
  while (start < end && SEPARATOR_OR_SPACE.test(text[start])) start++;
  return text.slice(start, end).replace(PIPE_RUN, (run) => (run.indexOf('|') !== run.lastIndexOf('|') ? ' | ' : run));
}

/** `key` of `value` when `value` is an object that holds it itself (never through its prototype). */
export function ownField(value: unknown, key: string): unknown {
  return typeof value === 'object' && value !== null && Object.hasOwn(value, key) ? (value as Record<string, unknown>)[key] : undefined;
}

function lookup(fields: Record<string, unknown>, path: string): unknown {
  let v: unknown = fields;
  for (const key of path.split('.')) v = ownField(v, key);
  return v;
}

export function templateFields(template: string): string[] {
  return [...template.matchAll(PLACEHOLDER)].map((m) => m[1]);
}
