/**
 * Ingestion into a collection's store, the same for every store: records are read from a source
 * (sources.ts), turned into products by the mapping (mapping.ts), and written in batches. For each
 * batch the store says what it holds of those ids; unchanged products are skipped, products whose
 * text changed (or whose vectors are missing) are embedded first, and the batch is written with its
 * vectors in one `write` (see store.ts). A record whose text the embedder refuses is rejected with
 * its line and never stored. Then the products left pending (a model change, a crash, a text changed
 * by another writer) are embedded; a stored product whose text the embedder refuses (an older qrank
 * stored lone surrogates, which `toProduct` now rejects) could never be searched and would stop
 * every later batch, so it is removed, and the ingestion reports it among its errors (at 0).
 */
import type { Embedder } from '../embedder';
import { QrankError, invalid } from '../errors';
import type { KeywordBuildProgress } from './keyword-index';
import { type Mapping, type Product, keywordColumns, toProduct } from './mapping';
import { type Source, readSource } from './sources';
import type { CollectionStore, PendingRow, Settlement, WriteItem } from './store';

export interface IngestProgress {
  read: number;
  upserted: number;
  unchanged: number;
  embedded: number;
  rejected: number;
}

export interface IngestResult extends IngestProgress {
  /** The first 100 rejections: `at` is the record's line or element, 0 for a stored product (see the header). */
  errors: { at: number; reason: string }[];
}

export interface IngestOptions {
  mapping?: Mapping;
  onProgress?: (p: IngestProgress) => void;
  signal?: AbortSignal;
  /** Records per batch (default 64). */
  batchSize?: number;
  /** Progress of a keyword index build that a changed mapping starts. */
  onKeywordIndexProgress?: (p: KeywordBuildProgress) => void;
}

/** Pending products embedded per round. */
const PENDING_BATCH = 256;

/** Reads `source` into `store` with `mapping` (already parsed). */
export async function ingestInto(store: CollectionStore, embedder: Embedder, mapping: Mapping, source: Source, options: IngestOptions): Promise<IngestResult> {
  const batchSize = options.batchSize ?? 64;
  if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > 10_000) throw invalid(`options.batchSize must be an integer from 1 to 10000, got ${batchSize}`);
  if (options.mapping !== undefined) await store.setMeta('mapping', JSON.stringify(mapping));
  await store.syncKeywords(keywordColumns(mapping), options.onKeywordIndexProgress);
  const result: IngestResult = { read: 0, upserted: 0, unchanged: 0, embedded: 0, rejected: 0, errors: [] };
  const reject = (at: number, reason: string) => {
    result.rejected++;
    if (result.errors.length < 100) result.errors.push({ at, reason });
  };
  let batch: { at: number; product: Product }[] = [];
  const flush = async () => {
    await writeBatch(store, embedder, batch, result, reject, options.signal);
    batch = [];
    const { embedded, removed } = await embedPending(store, embedder, options.signal);
    result.embedded += embedded;
    for (const r of removed) reject(0, `stored product '${r.id}' was removed: the embedder refuses its text (${r.reason})`);
    options.onProgress?.({ ...result, errors: undefined } as unknown as IngestProgress);
  };
  for await (const item of readSource(source)) {
    if (options.signal?.aborted) throw new QrankError('ABORTED', 'ingestion aborted; what was written so far is consistent');
    result.read++;
    const product = item.record ? toProduct(item.record, mapping) : { error: item.error ?? 'unreadable' };
    if ('error' in product) {
      reject(item.at, product.error);
      continue;
    }
    // a product given twice in one batch is written in order: the batch ends before the second
    if (batch.some((b) => b.product.id === product.id)) await flush();
    batch.push({ at: item.at, product });
    if (batch.length >= batchSize) await flush();
  }
  if (batch.length) await flush();
  return result;
}

// One batch: unchanged products skipped, new texts embedded, the rest written with their vectors.
async function writeBatch(store: CollectionStore, embedder: Embedder, batch: { at: number; product: Product }[], result: IngestResult, reject: (at: number, reason: string) => void, signal?: AbortSignal): Promise<void> {
  const stored = await store.stored(batch.map((b) => b.product.id));
  const changed = batch.filter(({ product: p }) => {
    const before = stored.get(p.id);
    const same = before !== undefined && before.embedHash === p.hash && before.fields === p.fields && before.rerankText === p.rerank;
    if (same) result.unchanged++;
    return !same;
  });
  const embed = changed.filter(({ product: p }) => {
    const before = stored.get(p.id);
    return !before || before.embedHash !== p.hash || !before.indexed;
  });
  const vectors = await embedTexts(embedder, embed.map((b) => b.product.embed), signal);
  const given = new Map(embed.map((b, i) => [b, vectors[i]]));
  const items: WriteItem[] = [];
  for (const b of changed) {
    const v = given.get(b);
    if (typeof v === 'string') reject(b.at, `the embedder refuses its text (${v})`);
    else items.push({ product: b.product, vectors: v });
  }
  if (items.length) await store.write(items);
  result.upserted += items.length;
  result.embedded += items.filter((i) => i.vectors).length;
}

/** Embeds every pending product, in rounds; a product whose text the embedder refuses is removed (see the header). */
export async function embedPending(store: CollectionStore, embedder: Embedder, signal?: AbortSignal): Promise<{ embedded: number; removed: { id: string; reason: string }[] }> {
  let embedded = 0;
  const removed: { id: string; reason: string }[] = [];
  for (;;) {
    const rows: PendingRow[] = await store.pending(PENDING_BATCH);
    if (rows.length === 0) return { embedded, removed };
    const results: Settlement[] = await embedTexts(embedder, rows.map((r) => r.embedTexts), signal);
    await store.settle(rows, results);
    rows.forEach((r, i) => {
      const refusal = results[i];
      if (typeof refusal === 'string') removed.push({ id: r.id, reason: refusal });
      else embedded++;
    });
  }
}

/**
 * The vectors of each product's texts (a JSON array of strings), or the reason the embedder refuses
 * them (INVALID_INPUT). The texts are embedded together; only when that is refused is each product
 * embedded alone, to tell the ones it refuses from the others. Other failures (aborted, closed) are thrown.
 */
async function embedTexts(embedder: Embedder, embedJson: string[], signal?: AbortSignal): Promise<Settlement[]> {
  if (embedJson.length === 0) return [];
  const texts = embedJson.map((j) => JSON.parse(j) as string[]);
  try {
    const flat = await embedder.embed(texts.flat(), { kind: 'document', signal });
    let at = 0;
    return texts.map((t) => flat.slice(at, (at += t.length)));
  } catch (err) {
    if (!isRefusal(err)) throw err;
  }
  const each = await Promise.allSettled(texts.map((t) => embedder.embed(t, { kind: 'document', signal })));
  return each.map((r) => {
    if (r.status === 'fulfilled') return r.value;
    if (isRefusal(r.reason)) return r.reason.message;
    throw r.reason;
  });
}

function isRefusal(err: unknown): err is QrankError {
  return err instanceof QrankError && err.code === 'INVALID_INPUT';
}
