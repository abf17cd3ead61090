/**
 * The model fingerprint of a collection and its refusal. A collection remembers the embedding model
 * its vectors come from (meta `embedder`); opening it with another model is MODEL_MISMATCH unless
 * the caller asks for a re-index. The same rule for every store.
 */
import { createHash } from 'node:crypto';
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import type { Embedder } from '../embedder';
import { QrankError } from '../errors';

const fingerprints = new WeakMap<Embedder, string>();

/**
 * Identifies an embedding model by what it is and by its weights: a hash of 16 samples of 64 KiB
 * spread over the file (hashing gigabytes at every open would be slow; two models that share shape
 * and name still differ in those bytes).
 */
export function fingerprint(embedder: Embedder): string {
  let fp = fingerprints.get(embedder);
  if (fp) return fp;
  const i = embedder.info;
  const h = createHash('sha256');
  const fd = openSync(i.path, 'r');
  try {
    const size = fstatSync(fd).size;
    const chunk = Buffer.alloc(Math.min(65536, size));
    for (let k = 0; k < 16; k++) {
      const at = Math.floor(((size - chunk.length) * k) / 15);
      h.update(chunk.subarray(0, readSync(fd, chunk, 0, chunk.length, at)));
    }
    h.update(String(size));
  } finally {
    closeSync(fd);
  }
  fp = JSON.stringify({ description: i.description, dim: i.embeddingLength, weights: h.digest('hex').slice(0, 32) });
  fingerprints.set(embedder, fp);
  return fp;
}

/**
 * Whether two fingerprints name the same model: the same dimension and sampled weights. The
 * description is for messages only: how it is worded changed (llama.cpp's, then qrank's own from the
 * GGUF metadata) and must not make a collection of the same file a MODEL_MISMATCH.
 */
export function sameModel(a: string, b: string): boolean {
  if (a === b) return true;
  try {
    const x = JSON.parse(a) as { dim?: unknown; weights?: unknown };
    const y = JSON.parse(b) as { dim?: unknown; weights?: unknown };
    return typeof x.weights === 'string' && x.weights === y.weights && x.dim === y.dim;
  } catch {
    return false;
  }
}

/**
 * Whether a collection holding `count` products, embedded with the model `stored` (undefined: none
 * yet), must be embedded again for the model `current`. MODEL_MISMATCH when it must and `reindex`
 * does not allow it.
 */
export function modelChanged(collection: string, stored: string | undefined, current: string, count: number, reindex: boolean | undefined): boolean {
  const changed = stored !== undefined && !sameModel(stored, current);
  if (changed && count > 0 && !reindex) {
    throw new QrankError('MODEL_MISMATCH', `collection '${collection}' was embedded with another model (${describeModel(stored)}); ` +
      'vectors of two models never mix: reopen it with { reindex: true } to embed every product again');
  }
  return changed;
}

/** The description a fingerprint carries, for messages. */
export function describeModel(fp: string | undefined): string | undefined {
  try {
    return fp === undefined ? undefined : (JSON.parse(fp) as { description?: string }).description;
  } catch {
    return undefined;
  }
}
