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
