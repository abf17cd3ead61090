import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Mapping } from '../lib/search/collection';

export const ROOT = join(__dirname, '..');
export const MODEL_DIR = join(ROOT, 'test', '.models');
export const MODELS = {
  reranker: join(MODEL_DIR, 'tiny-reranker.gguf'),
  embedder: join(MODEL_DIR, 'tiny-embedder.gguf'),
  causal: join(MODEL_DIR, 'tiny-causal.gguf'),
} as const;

export function sha256(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

/** Asserts a promise rejects with a QrankError of the given code; returns the error. */
export async function rejectsWithCode(p: Promise<unknown>, code: string): Promise<Error & { code: string }> {
  try {
    await p;
  } catch (err) {
    const e = err as Error & { code: string };
    if (e.code !== code) throw new Error(`expected code ${code}, got ${e.code}: ${e.message}`);
    if (e.name !== 'QrankError') throw new Error(`expected a QrankError, got ${e.name}`);
    return e;
  }
  throw new Error(`expected a rejection with ${code}, but the promise resolved`);
}

export function throwsWithCode(fn: () => unknown, code: string): Error & { code: string } {
  try {
    fn();
  } catch (err) {
    const e = err as Error & { code: string };
    if (e.code !== code) throw new Error(`expected code ${code}, got ${e.code}: ${e.message}`);
    return e;
  }
  throw new Error(`expected a throw with ${code}`);
}

/** Words from a shop catalog in three languages, for realistic multilingual inputs. */
export const SHOP_WORDS = [
  'wireless', 'bluetooth', 'headphones', 'noise', 'cancelling', 'auriculares', 'inalámbricos', 'ruido',
  '无线', '蓝牙', '降噪', '耳机', 'kitchen', 'knife', 'cuchillos', '刀具', 'shoes', 'zapatillas', '跑步鞋', 'price',
];

export function makeDocs(n: number, words = 12, seed = 1): string[] {
  let s = seed >>> 0;
  const next = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s;
  };
  return Array.from({ length: n }, () => Array.from({ length: words }, () => SHOP_WORDS[next() % SHOP_WORDS.length]).join(' '));
}

/** A generated multilingual catalog and its mapping, for the search and server tests. */
export const MAPPING: Mapping = {
  id: 'sku',
  embed: '{title_en} | {title_zh} | {title_es} | {brand} | {category}',
  rerank: '{title_en}\n{title_zh}\n{title_es}\nbrand: {brand}; category: {category}; price: {price}',
  numeric: ['price', 'popularity'],
};
export const CATEGORIES = ['Audio', 'Kitchen', 'Shoes', 'Outdoor'];
export function products(n: number, start = 0) {
  return Array.from({ length: n }, (_, k) => {
    const i = start + k;
    return {
      sku: `sku-${i}`,
      title_en: `Product ${i} wireless headphones model ${i % 13}`,
      title_zh: `产品 ${i} 无线蓝牙耳机`,
      title_es: `Producto ${i} auriculares inalámbricos`,
      brand: `Brand${i % 7}`,
      category: CATEGORIES[i % 4],
      price: 10 + ((i * 37) % 200),
      popularity: (i % 10) / 10,
    };
  });
}

/**
 * Checks HTTP responses against the server's own OpenAPI document: the response schema of the
 * route (path template, method) and status, or its `default` (the error shape). JSON bodies only.
 */
export function openApiChecker(doc: { paths: Record<string, Record<string, { responses: Record<string, { content?: Record<string, { schema: unknown }> }> }>>; components: unknown }) {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const Ajv2020 = require('ajv/dist/2020').default as new (o: object) => { addSchema(s: object): void; compile(s: object): ((d: unknown) => boolean) & { errors?: unknown } };
  const ajv = new Ajv2020({ strict: false, allErrors: true });
  ajv.addSchema({ $id: 'openapi', components: doc.components });
  const fix = (v: unknown): unknown =>
    Array.isArray(v) ? v.map(fix) : v && typeof v === 'object' ? Object.fromEntries(Object.entries(v).map(([k, x]) => [k, k === '$ref' && typeof x === 'string' && x.startsWith('#/') ? `openapi${x}` : fix(x)])) : v;
  const routes = Object.entries(doc.paths).map(([template, item]) => ({ re: new RegExp(`^${template.replace(/\{\w+\}/g, '[^/]+')}$`), item }));
  const cache = new Map<object, ReturnType<typeof ajv.compile>>();
  let checked = 0;
  return {
    check(method: string, url: string, status: number, body: unknown): void {
      const path = new URL(url, 'http://x').pathname;
      const route = routes.find((r) => r.re.test(path));
      if (!route) throw new Error(`${method} ${path}: not in the OpenAPI document`);
      const op = route.item[method.toLowerCase()];
      if (!op) throw new Error(`${method} ${path}: method not in the OpenAPI document`);
      const response = op.responses[String(status)] ?? op.responses.default;
      if (!response) throw new Error(`${method} ${path}: status ${status} not documented`);
      const schema = response.content?.['application/json']?.schema as object | undefined;
      if (!schema) throw new Error(`${method} ${path} ${status}: no JSON schema documented`);
      let validate = cache.get(schema);
      if (!validate) cache.set(schema, (validate = ajv.compile(fix(schema) as object)));
      if (!validate(body)) throw new Error(`${method} ${path} ${status}: response does not match the OpenAPI schema: ${JSON.stringify(validate.errors).slice(0, 600)}`);
      checked++;
    },
    get checked() {
      return checked;
    },
  };
}

/** Wraps an Express app so that every JSON response it sends is recorded (for openApiChecker). */
export function recordingApp(inner: import('express').Express) {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const express = require('express') as typeof import('express');
  const seen: { method: string; url: string; status: number; body: unknown }[] = [];
  const outer = express();
  outer.use((req, res, next) => {
    const json = res.json.bind(res);
    res.json = (body: unknown) => {
      seen.push({ method: req.method, url: req.originalUrl, status: res.statusCode, body: JSON.parse(JSON.stringify(body)) });
      return json(body);
    };
    next();
  });
  outer.use(inner);
  return { app: outer, seen };
}
