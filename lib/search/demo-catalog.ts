/**
 * The demo catalog that `npm start` serves: the 305 products of the shipped evaluation set
 * (eval/crossborder-shop, CC0), with titles and descriptions in English, Chinese and Spanish.
 */
import { join } from 'node:path';
import { readCorpus } from '../eval/beir';
import type { IngestProgress, Mapping } from './collection';
import type { SearchEngine } from './engine';

/** lib/search or dist/search: the package root is two levels up either way. */
export const DEMO_DATASET = join(__dirname, '..', '..', 'eval', 'crossborder-shop');

/**
 * The shop's mapping: one vector per product over every language's title, brand and category; the
 * reranker also reads the SKU; the keyword index weighs codes and brand above titles, and titles
 * above descriptions, category and the size, colour and compatibility attributes.
 */
export const SHOP_MAPPING: Mapping = {
  id: 'id',
  embed: '{title_en} | {title_zh} | {title_es} | {title} | {brand} | {category}',
  rerank: '{title_en}\n{title_zh}\n{title_es}\n{title}\n{brand}; {sku}; {category}; {price}',
  numeric: ['price', 'popularity', 'rating'],
  keyword: [
    { template: '{sku} | {brand}', weight: 4 },
    { template: '{title_en} | {title_zh} | {title_es} | {title}', weight: 2 },
    { template: '{desc_en} | {desc_zh} | {desc_es} | {category} | {attributes.size} | {attributes.sizes} | {attributes.color} | {attributes.compatible_with}', weight: 1 },
  ],
};

/** The dataset's corpus as product records: the id plus the metadata fields. */
export async function* demoRecords(dataset = DEMO_DATASET): AsyncGenerator<Record<string, unknown>> {
  for await (const d of readCorpus(dataset)) yield { id: d.id, ...d.metadata };
}

/** Creates and fills the collection `name` from the demo catalog, unless it already exists. */
export async function ensureDemoCollection(se: SearchEngine, name = 'demo', onProgress?: (p: IngestProgress) => void): Promise<{ created: boolean; size: number }> {
  if (await se.has(name)) {
    const c = await se.existing(name);
    const size = await c.count();
    if (size > 0) return { created: false, size };
  }
  const c = await se.collection(name, { index: { kind: 'hnsw' }, mapping: SHOP_MAPPING });
  await c.ingest(demoRecords(), { onProgress }); // the mapping stored at creation applies
  return { created: true, size: await c.count() };
}
