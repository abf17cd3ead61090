/**
 * Text templates over product fields: "{title_en} | {brand} | {category}". A missing or empty field
 * renders as nothing, and separators left dangling by it are dropped, so every language field that
 * is present ends up in the text and absent ones leave no trace.
 */
const PLACEHOLDER = /\{([\w.]+)\}/g;

export function renderTemplate(template: string, fields: Record<string, unknown>): string {
  const parts = template.split('\n').map((line) => {
    let any = false;
    const text = line.replace(PLACEHOLDER, (_, name: string) => {
      const v = lookup(fields, name);
      if (v === undefined || v === null || v === '') return '';
      any = true;
      return typeof v === 'object' ? JSON.stringify(v) : String(v);
    });
    if (!any && PLACEHOLDER.test(line)) return '';
    PLACEHOLDER.lastIndex = 0;
    return text.replace(/(\s*[|,;:]\s*)+$/g, '').replace(/^(\s*[|,;:]\s*)+/g, '').replace(/(\s*\|\s*){2,}/g, ' | ').trim();
  });
  return parts.filter((p) => p.length > 0).join('\n');
}

function lookup(fields: Record<string, unknown>, path: string): unknown {
  let v: unknown = fields;
  for (const key of path.split('.')) {
    if (typeof v !== 'object' || v === null) return undefined;
    v = (v as Record<string, unknown>)[key];
  }
  return v;
}

export function templateFields(template: string): string[] {
  return [...template.matchAll(PLACEHOLDER)].map((m) => m[1]);
}
