/**
 * Model downloads against a local HTTP server that behaves like Hugging Face's file server: Range
 * requests (206), a sha256 etag, a connection cut in the middle, a server that ignores Range, 404s
 * and a file that is not a GGUF. The CLI (`qrank models pull`) is run as a child process.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { type IncomingMessage, type ServerResponse, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { download, resolveModel } from '../lib/models/download';
import { MODELS, ROOT, rejectsWithCode } from './helpers';

const work = mkdtempSync(join(tmpdir(), 'qrank-pull-'));
const model = readFileSync(MODELS.reranker);
const digest = createHash('sha256').update(model).digest('hex');
const log: { url: string; range?: string }[] = [];
let cutAfter = 0; // > 0: the next full response is cut after this many bytes
let base = '';
const server = createServer((req: IncomingMessage, res: ServerResponse) => {
  log.push({ url: req.url!, range: req.headers.range });
  const url = new URL(req.url!, 'http://x');
  if (url.pathname === '/missing.gguf') return void res.writeHead(404).end();
  const body = url.pathname === '/notgguf.gguf' ? Buffer.from('<html>login page</html>') : model;
  const headers: Record<string, string> = { 'content-type': 'application/octet-stream' };
  if (url.pathname.startsWith('/hf/')) headers['x-linked-etag'] = `"${url.searchParams.get('etag') ?? digest}"`;
  const m = (req.headers.range ?? '').match(/^bytes=(\d+)-$/);
  if (m && url.pathname !== '/norange.gguf') {
    const start = Number(m[1]);
    if (start >= body.length) return void res.writeHead(416, { 'content-range': `bytes */${body.length}` }).end();
    res.writeHead(206, { ...headers, 'content-length': String(body.length - start), 'content-range': `bytes ${start}-${body.length - 1}/${body.length}` });
    return void res.end(body.subarray(start));
  }
  res.writeHead(200, { ...headers, 'content-length': String(body.length) });
  if (cutAfter > 0) {
    const n = cutAfter;
    cutAfter = 0;
    res.write(body.subarray(0, n), () => setTimeout(() => res.destroy(), 20));
    return;
  }
  res.end(body);
});

beforeAll(async () => {
  server.listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await new Promise((r) => server.close(r));
  rmSync(work, { recursive: true, force: true });
});

describe('download', () => {
  it('resumes a cut download with a Range request and verifies the sha256 etag', async () => {
    const dest = join(work, 'resumed.gguf');
    cutAfter = 1_000_000;
    log.length = 0;
    const e = await rejectsWithCode(download(`${base}/hf/model.gguf`, dest), 'IO_ERROR');
    expect(e.message).toMatch(/run the same command again to resume/);
    expect(existsSync(dest)).toBe(false);
    const partSize = statSync(`${dest}.part`).size;
    expect(partSize).toBeGreaterThan(0);
    expect(partSize).toBeLessThan(model.length);

    const progress: number[] = [];
    const r = await download(`${base}/hf/model.gguf`, dest, { onProgress: (p) => progress.push(p.received) });
    expect(log.at(-1)!.range).toBe(`bytes=${partSize}-`);
    expect(r).toMatchObject({ bytes: model.length, sha256: digest, verifiedBy: 'etag', resumedFrom: partSize, alreadyPresent: false });
    expect(progress.at(-1)).toBe(model.length);
    expect(readFileSync(dest).equals(model)).toBe(true);
    expect(existsSync(`${dest}.part`)).toBe(false);
    // a second pull finds the file and checks it instead of downloading
    const again = await download(`${base}/hf/model.gguf`, dest, { sha256: digest });
    expect(again).toMatchObject({ alreadyPresent: true, verifiedBy: 'given' });
  });

  it('deletes a download whose sha256 is not the expected one', async () => {
    const dest = join(work, 'bad.gguf');
    const wrong = 'f'.repeat(64);
    const e = await rejectsWithCode(download(`${base}/hf/model.gguf?etag=${wrong}`, dest), 'CHECKSUM_MISMATCH');
    expect(e.message).toContain(digest);
    expect(existsSync(dest) || existsSync(`${dest}.part`)).toBe(false);
    await rejectsWithCode(download(`${base}/plain.gguf`, dest, { sha256: wrong }), 'CHECKSUM_MISMATCH');
    await rejectsWithCode(download(`${base}/plain.gguf`, dest, { sha256: 'abc' }), 'INVALID_INPUT');
  });

  it('starts over when the server ignores Range, and reports the digest when none is published', async () => {
    const dest = join(work, 'norange.gguf');
    writeFileSync(`${dest}.part`, model.subarray(0, 12345));
    const r = await download(`${base}/norange.gguf`, dest);
    expect(r).toMatchObject({ resumedFrom: 0, verifiedBy: 'none', sha256: digest });
    expect(readFileSync(dest).equals(model)).toBe(true);
    expect(readFileSync(`${dest}.sha256`, 'utf8')).toBe(`${digest}  norange.gguf\n`);
  });

  it('refuses 404s and files that are not GGUF', async () => {
    await rejectsWithCode(download(`${base}/missing.gguf`, join(work, 'missing.gguf')), 'MODEL_NOT_FOUND');
    await rejectsWithCode(download(`${base}/notgguf.gguf`, join(work, 'notgguf.gguf')), 'BAD_MODEL');
    expect(existsSync(join(work, 'notgguf.gguf'))).toBe(false);
    await rejectsWithCode(download('http://127.0.0.1:1/x.gguf', join(work, 'x.gguf')), 'IO_ERROR');
  });

  it('resolves known names, hf: names and URLs, through HF_ENDPOINT', () => {
    expect(resolveModel('qwen3-embedding-0.6b', 'https://hf-mirror.example')).toEqual({
      url: 'https://hf-mirror.example/Qwen/Qwen3-Embedding-0.6B-GGUF/resolve/main/Qwen3-Embedding-0.6B-Q8_0.gguf',
      file: 'Qwen3-Embedding-0.6B-Q8_0.gguf',
    });
    expect(resolveModel('hf:me/repo/sub/m.gguf', 'https://huggingface.co').url).toBe('https://huggingface.co/me/repo/resolve/main/sub/m.gguf');
    expect(resolveModel('https://x.example/a/b%20c.gguf').file).toBe('b c.gguf');
    expect(() => resolveModel('gpt-5')).toThrow(/not a known model/);
  });
});

describe('qrank models', () => {
  const cli = (...args: string[]) =>
    new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
      const child = spawn(process.execPath, [join(ROOT, 'dist', 'cli', 'main.js'), ...args], { cwd: ROOT, env: { ...process.env, QRANK_MODELS: join(work, 'cli') } });
      let out = '';
      let err = '';
      child.stdout.on('data', (c: Buffer) => (out += c));
      child.stderr.on('data', (c: Buffer) => (err += c));
      child.on('exit', (code) => resolve({ code, out, err }));
    });

  it('pull: exit 1 with a resumable part file when cut, then resumes and verifies; list and info describe the file', async () => {
    cutAfter = 2_000_000;
    const first = await cli('models', 'pull', `${base}/hf/tiny.gguf`);
    expect(first.code).toBe(1);
    expect(first.err).toMatch(/qrank: the download was cut at \d+ bytes .*run the same command again to resume/);
    const second = await cli('models', 'pull', `${base}/hf/tiny.gguf`);
    expect(second.code, second.err).toBe(0);
    expect(second.out).toMatch(new RegExp(`tiny\\.gguf  45\\.1 MB  sha256 ${digest}  resumed at [\\d.]+ MB; verified \\(server etag\\)`));
    const bad = await cli('models', 'pull', `${base}/plain.gguf`, '--name', 'other.gguf', '--sha256', '0'.repeat(64));
    expect(bad.code).toBe(1);
    expect(bad.err).toMatch(/is not the expected 0{64}/);

    const list = await cli('models', 'list', '--json');
    const rows = JSON.parse(list.out);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ architecture: 'qwen3', kind: 'reranker', layers: 2, synthetic: true });
    const info = JSON.parse((await cli('models', 'info', join(work, 'cli', 'tiny.gguf'))).out);
    expect(info).toEqual(rows[0]);
  }, 60_000);
});
