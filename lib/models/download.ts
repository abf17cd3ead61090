/**
 * Model downloads: resumable (a `.part` file and an HTTP Range request), verified (sha256 against
 * the expected digest: given, from the registry, or the Hugging Face LFS etag), checked to be a
 * GGUF, and renamed into place only when all of that holds. An interrupted download keeps its
 * `.part` file; running the same pull again continues it.
 */
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, openSync, readSync, closeSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { QrankError, invalid } from '../errors';

/** Names `qrank models pull` knows. Files are Q8_0 GGUFs converted with llama.cpp's own converter. */
export const KNOWN_MODELS: Record<string, { repo: string; file: string; task: 'rerank' | 'embed'; sha256?: string }> = {
  'qwen3-reranker-0.6b': { repo: 'ggml-org/Qwen3-Reranker-0.6B-Q8_0-GGUF', file: 'qwen3-reranker-0.6b-q8_0.gguf', task: 'rerank' },
  'qwen3-embedding-0.6b': { repo: 'Qwen/Qwen3-Embedding-0.6B-GGUF', file: 'Qwen3-Embedding-0.6B-Q8_0.gguf', task: 'embed' },
  'qwen3-embedding-4b': { repo: 'Qwen/Qwen3-Embedding-4B-GGUF', file: 'Qwen3-Embedding-4B-Q8_0.gguf', task: 'embed' },
};

export interface ResolvedModel {
  url: string;
  file: string;
  sha256?: string;
}

/**
 * A known name, `hf:<owner>/<repo>/<file>`, or an http(s) URL. Hugging Face addresses go through
 * HF_ENDPOINT when set (a mirror), as huggingface_hub does.
 */
export function resolveModel(spec: string, endpoint = process.env.HF_ENDPOINT ?? 'https://huggingface.co'): ResolvedModel {
  const hf = (repo: string, file: string) => `${endpoint.replace(/\/+$/, '')}/${repo}/resolve/main/${file.split('/').map(encodeURIComponent).join('/')}`;
  const known = KNOWN_MODELS[spec.toLowerCase()];
  if (known) return { url: hf(known.repo, known.file), file: known.file, sha256: known.sha256 };
  const m = spec.match(/^hf:([^/\s]+\/[^/\s]+)\/(.+\.gguf)$/i);
  if (m) return { url: hf(m[1], m[2]), file: basename(m[2]) };
  if (/^https?:\/\//i.test(spec)) {
    const u = new URL(spec);
    const file = decodeURIComponent(basename(u.pathname));
    if (!file) throw invalid(`cannot tell a file name from ${spec}; name one with --name`);
    return { url: spec, file };
  }
  throw invalid(`'${spec}' is not a known model (${Object.keys(KNOWN_MODELS).join(', ')}), an hf:<owner>/<repo>/<file>.gguf name or an http(s) URL`);
}

export interface DownloadProgress {
  received: number;
  total?: number;
  resumedFrom: number;
}

export interface DownloadOptions {
  /** Expected sha256 (hex). Without one, a Hugging Face LFS etag is used; else the digest is only reported. */
  sha256?: string;
  onProgress?: (p: DownloadProgress) => void;
  signal?: AbortSignal;
  /** Extra request headers (e.g. Authorization for gated repositories: HF_TOKEN). */
  headers?: Record<string, string>;
}

export interface DownloadResult {
  path: string;
  bytes: number;
  sha256: string;
  /** Where the expected digest came from, or 'none' (then the digest is written beside the file). */
  verifiedBy: 'given' | 'etag' | 'none';
  resumedFrom: number;
  alreadyPresent: boolean;
}

const HEX64 = /^[0-9a-f]{64}$/;

async function hashFile(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

function isGGUF(path: string): boolean {
  const fd = openSync(path, 'r');
  try {
    const b = Buffer.alloc(4);
    return readSync(fd, b, 0, 4, 0) === 4 && b.toString('latin1') === 'GGUF';
  } finally {
    closeSync(fd);
  }
}

/** Downloads `url` to `dest` (see the header). */
export async function download(url: string, dest: string, options: DownloadOptions = {}): Promise<DownloadResult> {
  const given = options.sha256?.toLowerCase();
  if (given !== undefined && !HEX64.test(given)) throw invalid('sha256 must be 64 hex digits');
  if (existsSync(dest)) {
    const digest = await hashFile(dest);
    if (given && digest !== given) throw new QrankError('CHECKSUM_MISMATCH', `${dest} exists with sha256 ${digest}, not ${given}; delete it to download again`);
    return { path: dest, bytes: statSync(dest).size, sha256: digest, verifiedBy: given ? 'given' : 'none', resumedFrom: 0, alreadyPresent: true };
  }
  const part = `${dest}.part`;
  let have = existsSync(part) ? statSync(part).size : 0;
  const headers: Record<string, string> = { 'user-agent': 'qrank', ...options.headers };
  if (have > 0) headers.range = `bytes=${have}-`;
  let res: Response;
  try {
    res = await fetch(url, { headers, redirect: 'follow', signal: options.signal });
  } catch (err) {
    if (options.signal?.aborted) throw new QrankError('ABORTED', `download aborted; ${part} is kept: run the same command again to resume`);
    throw new QrankError('IO_ERROR', `cannot reach ${url}: ${(err as Error).cause ? String((err as Error & { cause: Error }).cause.message) : (err as Error).message}`);
  }
  if (res.status === 416 && have > 0) {
    // the part file already holds everything (or more): verify it as it is
    await res.body?.cancel();
  } else if (res.status !== 200 && res.status !== 206) {
    await res.body?.cancel();
    throw new QrankError(res.status === 404 ? 'MODEL_NOT_FOUND' : 'IO_ERROR', `${url} answered ${res.status} ${res.statusText}${res.status === 401 || res.status === 403 ? ' (a gated repository needs HF_TOKEN)' : ''}`);
  }
  if (res.status === 200 && have > 0) have = 0; // the server ignored the Range: start over
  if (res.status === 206) {
    const start = Number((res.headers.get('content-range') ?? '').match(/^bytes (\d+)-/)?.[1]);
    if (start !== have) {
      await res.body?.cancel();
      throw new QrankError('IO_ERROR', `${url} resumed at byte ${start}, not ${have}; delete ${part} and try again`);
    }
  }
  // Hugging Face serves LFS files with their sha256 as the (linked) etag
  const etag = (res.headers.get('x-linked-etag') ?? res.headers.get('etag') ?? '').replace(/^W\//, '').replace(/"/g, '').toLowerCase();
  const expected = given ?? (HEX64.test(etag) ? etag : undefined);
  const length = Number(res.headers.get('content-length'));
  const total = res.status === 416 ? have : Number.isFinite(length) && res.headers.has('content-length') ? have + length : undefined;
  const resumedFrom = have;
  let received = have;
  if (res.status !== 416 && res.body) {
    const fh = await open(part, have > 0 ? 'a' : 'w');
    try {
      const reader = res.body.getReader();
      let last = 0;
      for (;;) {
        let chunk: Awaited<ReturnType<typeof reader.read>>;
        try {
          chunk = await reader.read();
        } catch (err) {
          if (options.signal?.aborted) throw new QrankError('ABORTED', `download aborted at ${received} bytes; ${part} is kept: run the same command again to resume`);
          throw new QrankError('IO_ERROR', `the download was cut at ${received} bytes (${(err as Error).message}); ${part} is kept: run the same command again to resume`);
        }
        if (chunk.done) break;
        await fh.write(chunk.value);
        received += chunk.value.byteLength;
        if (Date.now() - last > 100) {
          last = Date.now();
          options.onProgress?.({ received, total, resumedFrom });
        }
      }
      await fh.sync();
    } finally {
      await fh.close();
    }
  }
  options.onProgress?.({ received, total, resumedFrom });
  if (total !== undefined && received !== total) {
    throw new QrankError('IO_ERROR', `the download ended at ${received} of ${total} bytes; ${part} is kept: run the same command again to resume`);
  }
  const digest = await hashFile(part);
  if (expected && digest !== expected) {
    rmSync(part, { force: true });
    throw new QrankError('CHECKSUM_MISMATCH', `${basename(dest)}: sha256 ${digest} is not the expected ${expected}; the download was deleted`);
  }
  if (!isGGUF(part)) {
    rmSync(part, { force: true });
    throw new QrankError('BAD_MODEL', `${url} is not a GGUF file (no GGUF magic); the download was deleted`);
  }
  renameSync(part, dest);
  if (!expected) writeFileSync(`${dest}.sha256`, `${digest}  ${basename(dest)}\n`);
  return { path: dest, bytes: received, sha256: digest, verifiedBy: given ? 'given' : expected ? 'etag' : 'none', resumedFrom, alreadyPresent: false };
}

/** Where pulled models go: QRANK_MODELS, else ~/.cache/qrank/models. */
export function modelsDir(home: string): string {
  return process.env.QRANK_MODELS ?? join(process.env.XDG_CACHE_HOME ?? join(home, '.cache'), 'qrank', 'models');
}
