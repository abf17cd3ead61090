/**
 * A bounded, seeded fuzz of every route the server documents in its OpenAPI document (so a new
 * route is covered without touching this file): malformed JSON, wrong types in every field, huge
 * numbers, NaN-ish strings, deep and wide objects, arrays of 10 000 items, lone surrogates,
 * `__proto__` / `constructor` keys, separator runs, wrong content types, empty bodies; path
 * parameters and streamed uploads too. Every answer must be a success or a 4xx JSON error
 * { error: { code, message } }, within a per-request timeout, and the server must still answer good
 * requests afterwards. The collection routes run against a real collection.
 *
 * A fresh seed each run, printed; QRANK_FUZZ_SEED=<n> replays one.
 */
import { randomInt } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import type { AddressInfo, Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Embedder, Reranker } from '../lib/index';
import { SearchEngine } from '../lib/search/engine';
import { createApp } from '../lib/server/app';
import { MAPPING, MODELS, openApiChecker, products } from './helpers';

const SEED = process.env.QRANK_FUZZ_SEED ? Number(process.env.QRANK_FUZZ_SEED) : randomInt(2 ** 31);
// routes that read a body or a path parameter get many probes, the others a few
const PROBES = { reading: 24, fixed: 3 };
const ANSWER_MS = 15_000;
const TARGET = 'fuzz'; // the collection the collection routes are fuzzed against

const dir = mkdtempSync(join(tmpdir(), 'qrank-fuzz-'));
let rr: Reranker;
let em: Embedder;
let se: SearchEngine;
let http: Server;
let port: number;
let doc: OpenApi;

type Json = Record<string, unknown>;
interface OpenApi {
  paths: Record<string, Record<string, { requestBody?: { content: Record<string, { schema: Json }> }; responses: Json }>>;
  components: unknown;
}

beforeAll(async () => {
  console.log(`fuzz seed ${SEED} (replay with QRANK_FUZZ_SEED=${SEED})`);
  [rr, em] = await Promise.all([Reranker.load({ model: MODELS.reranker, threads: 1 }), Embedder.load({ model: MODELS.embedder, threads: 1 })]);
  se = await SearchEngine.open({ dir, embedder: em, reranker: rr });
  await ensureTarget();
  const app = createApp({ reranker: rr, embedder: em, search: se, logger: pino({ level: 'silent' }), limits: { maxDocuments: 100, maxBodyBytes: 512 << 10, maxUploadBytes: 256 << 10, maxTokensPerDocument: 64 } });
  http = app.listen(0, '127.0.0.1');
  await new Promise((r) => http.once('listening', r));
  port = (http.address() as AddressInfo).port;
  doc = (await send({ method: 'GET', path: '/openapi.json', headers: {}, label: 'openapi' })).json as OpenApi;
});
afterAll(async () => {
  await new Promise((r) => http?.close(r));
  se?.close();
  await Promise.all([rr?.close(), em?.close()]);
  rmSync(dir, { recursive: true, force: true });
});

/**
 * What a probe left broken: a collection that cannot be opened or listed, or products of the one
 * under test without their vectors (the next ingestion would stumble on them).
 */
async function poisoned(): Promise<string | undefined> {
  for (const name of await se.names()) {
    try {
      const info = await (await se.existing(name)).info();
      if (name === TARGET && (info.pending !== 0 || info.vectors !== info.size)) return `collection ${name} left inconsistent: ${JSON.stringify(info)}`;
    } catch (err) {
      return `collection ${name} cannot be opened any more: ${(err as Error).message}`;
    }
  }
  return undefined;
}

/** The collection under test, (re)made when a probe deleted it. */
async function ensureTarget(): Promise<void> {
  if (await se.has(TARGET)) return;
  const c = await se.create(TARGET, { index: { kind: 'flat' }, mapping: MAPPING });
  await c.ingest(products(30));
}

/** After a probe: drops what a probe broke (reported already), then remakes the collection under test. */
async function repair(): Promise<void> {
  if (await poisoned()) for (const name of await se.names()) await se.drop(name).catch(() => rmCollectionFiles(name));
  await ensureTarget();
}

/** Deletes a collection that cannot be opened any more: its files in the data directory. */
function rmCollectionFiles(name: string): void {
  for (const f of readdirSync(dir)) if (f.startsWith(`${name}.`)) rmSync(join(dir, f), { force: true });
}

// --- randomness: mulberry32, seeded ---

function rng(seed: number) {
  let s = seed >>> 0;
  const next = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
  const int = (n: number) => Math.floor(next() * n);
  return { int, chance: (p: number) => next() < p, pick: <T>(xs: readonly T[]): T => xs[int(xs.length)] };
}
type Rand = ReturnType<typeof rng>;

// --- hostile values ---

/** An object with `key` as an own property (an object literal's __proto__ would set the prototype). */
const own = (key: string, value: unknown): Json => JSON.parse(`{${JSON.stringify(key)}:${JSON.stringify(value) ?? 'null'}}`);

const STRINGS = [
  '', ' ', '   \t\n', 'NaN', '-NaN', 'Infinity', '-Infinity', '1e999', '-0', '0x10', 'null', 'undefined', 'true', '[]', '{}',
  '\ud800', 'a\udc00b', '\udfff\ud800', '\u0000', 'a\u0000b', '\ufeff', '\u202e\u2066', '🎧'.repeat(50), '无线蓝牙降噪耳机',
  '\u2028\u2029'.repeat(200), '\r\n'.repeat(500), ','.repeat(2000), '|'.repeat(2000), ';'.repeat(2000), '\t'.repeat(2000),
  '{'.repeat(300), '}'.repeat(300), '{title_en}', '{{title_en}}', '{__proto__}', '{constructor}', '%s%n%x', '../../etc/passwd',
  '__proto__', 'constructor', 'prototype', 'hasOwnProperty', 'toString', 'a'.repeat(20_000), 'x '.repeat(5_000),
];
const NUMBERS = [0, -1, 1, 1.5, -0.5, 1e308, -1e308, 2 ** 31, 2 ** 32 + 5, 2 ** 53 + 1, Number.MAX_SAFE_INTEGER, 1e21, 5e-324];

function hostile(r: Rand, depth = 0): unknown {
  switch (r.int(depth > 1 ? 4 : 9)) {
    case 0:
      return r.pick(STRINGS);
    case 1:
      return r.pick(NUMBERS);
    case 2:
      return r.pick([null, true, false]);
    case 3:
      return r.pick([{}, [], [null], [[]], [[[]]], [{}], ['']]);
    case 4: // arrays of 10 000 items
      return Array.from({ length: 10_000 }, () => r.pick<unknown>(['a', 0, '\ud800', null, {}]));
    case 5: // deep
      return Array.from({ length: 200 }).reduce<unknown>((inner) => ({ a: inner }), r.pick(STRINGS));
    case 6: // thousands of keys
      return Object.fromEntries(Array.from({ length: 3_000 }, (_, i) => [`k${i}`, i]));
    case 7:
      return own(r.pick(['__proto__', 'constructor', 'prototype']), r.chance(0.5) ? { polluted: true } : hostile(r, depth + 1));
    default:
      return Array.from({ length: 1 + r.int(4) }, () => hostile(r, depth + 1));
  }
}

// --- valid-looking bodies from the route's request schema ---

// realistic values by field name, where the schema alone would give an empty record or a dull
// string; a new collection's name is fresh, so that its other fields reach the engine
let made = 0;
const EXAMPLES: Record<string, () => unknown> = {
  collection: () => TARGET,
  query: () => 'auriculares bluetooth',
  id: () => 'sku',
  embed: () => '{title_en} | {title_zh}',
  rerank: () => '{title_en}; {price}',
  documents: () => products(2, 500),
  filter: () => ({ category: 'Audio', price: { lte: 150 } }),
  signals: () => ({ popularity: 0.1 }),
  ids: () => ['sku-1'],
  name: () => `made-${++made}`,
};

/** A value that satisfies `schema` where it can (the first branch of a union, one item per list). */
function example(schema: Json | undefined, key = ''): unknown {
  if (Object.hasOwn(EXAMPLES, key)) return EXAMPLES[key]();
  if (!schema) return {};
  if (Array.isArray(schema.anyOf)) return example(schema.anyOf[0] as Json, key);
  if (Array.isArray(schema.oneOf)) return example(schema.oneOf[0] as Json, key);
  if ('const' in schema) return schema.const;
  if (Array.isArray(schema.enum)) return schema.enum[0];
  switch (schema.type) {
    case 'object': {
      const props = (schema.properties ?? {}) as Record<string, Json>;
      return Object.fromEntries(((schema.required ?? []) as string[]).map((k) => [k, example(props[k], k)]));
    }
    case 'array':
      return [example(schema.items as Json, key)];
    case 'string':
      return 'wireless headphones';
    case 'integer':
    case 'number':
      return 1;
    case 'boolean':
      return true;
    default:
      return 'x';
  }
}

/** A step of a field path: a property, the first item of a list, or any key of a record ('*'). */
type Step = string | 0;

/** Every field path of a body's schema: properties, list items and record keys, nested. */
function fieldPaths(schema: Json | undefined, prefix: Step[] = []): Step[][] {
  if (!schema || prefix.length > 6) return [];
  const branch = (schema.anyOf ?? schema.oneOf) as Json[] | undefined;
  if (branch) return branch.flatMap((b) => fieldPaths(b, prefix));
  const props = Object.entries((schema.properties ?? {}) as Record<string, Json>);
  const record = typeof schema.additionalProperties === 'object' ? [['*', schema.additionalProperties as Json] as const] : [];
  const items = typeof schema.items === 'object' ? [[0, schema.items as Json] as const] : [];
  return [...props, ...record, ...items].flatMap(([k, sub]) => [[...prefix, k], ...fieldPaths(sub, [...prefix, k])]);
}

/** `body` with the value at `path` replaced; a record key ('*') becomes one it has or a hostile string. */
function setPath(body: unknown, path: Step[], value: unknown, r: Rand): unknown {
  if (path.length === 0) return value;
  const [step, ...rest] = path;
  if (step === 0) {
    const list = Array.isArray(body) && body.length ? [...body] : [{}];
    list[0] = setPath(list[0], rest, value, r);
    return list;
  }
  const base = body && typeof body === 'object' && !Array.isArray(body) ? { ...(body as Json) } : {};
  const key = step === '*' ? r.pick([...Object.keys(base), ...STRINGS]) : step;
  return Object.assign(base, own(key, setPath(base[key], rest, value, r)));
}

// --- probes ---

interface Probe {
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: string | Buffer;
  label: string;
}
interface Answer {
  status: number;
  type: string;
  text: string;
  json?: unknown;
}

function send(p: Probe): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const body = p.body === undefined ? undefined : Buffer.from(p.body);
    const req = request({ host: '127.0.0.1', port, method: p.method, path: p.path, agent: false, headers: { ...p.headers, ...(body ? { 'content-length': String(body.length) } : {}) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        const type = String(res.headers['content-type'] ?? '');
        let json: unknown;
        try {
          json = type.startsWith('application/json') ? JSON.parse(text) : undefined;
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode ?? 0, type, text, json });
      });
      res.on('error', reject);
    });
    req.setTimeout(ANSWER_MS, () => req.destroy(new Error(`no answer within ${ANSWER_MS} ms`)));
    req.on('error', reject);
    req.end(body);
  });
}

const JSON_TYPES = ['application/json', 'application/json; charset=utf-8', 'application/json; charset=latin1', 'application/json; charset=utf-16', 'APPLICATION/JSON'];
const OTHER_TYPES = ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/xml', 'application/octet-stream', 'text/csv; charset=latin1'];
const MALFORMED = ['{', '{"a":}', '{"query": "x", }', 'nul', '[', '"unterminated', '{"a":1}{"b":2}', '\u0000', '{"a": NaN}', '{"a": Infinity}', '{"a": 01}', "{'a': 1}", '{"a":"\\ud800"}', '{"a":"\\x41"}', ' '];

/** A path with its parameters filled: usually the collection under test, sometimes a hostile segment. */
function fill(template: string, r: Rand): string {
  return template.replace(/\{\w+\}/g, () =>
    r.chance(0.7) ? TARGET : r.pick(['nope', '%ED%A0%80', '%00', '..%2F..%2Fetc', '%2e%2e', '__proto__', 'constructor', 'a'.repeat(300), '%zz', '%F0%9F%8E%A7', 'a%20b', '-', '_']),
  );
}

/** One probe of a route: a mutation of a valid body, a hostile body, a wrong type or a broken stream. */
function probe(r: Rand, method: string, template: string, op: OpenApi['paths'][string][string]): Probe {
  const path = fill(template, r);
  const label = (what: string) => `${method.toUpperCase()} ${path} ${what}`;
  const content = op.requestBody?.content ?? {};
  const schema = content['application/json']?.schema;
  const good = example(schema);
  const json = (body: unknown, type = r.chance(0.8) ? 'application/json' : r.pick(JSON_TYPES)): Probe => {
    const text = JSON.stringify(body) ?? 'null';
    return { method, path, headers: { 'content-type': type }, body: text, label: label(`${type}: ${text.slice(0, 300)}`) };
  };
  const uploads = Object.keys(content).filter((t) => t !== 'application/json');
  const kind = r.int(10);
  if (kind <= 3) {
    // one field (nested ones too) replaced by a hostile value
    const fields = fieldPaths(schema);
    return json(fields.length ? setPath(good, r.pick(fields), hostile(r), r) : hostile(r));
  }
  if (kind === 4) return json(Object.assign({}, good, own(r.pick(['__proto__', 'constructor', 'prototype', 'toString']), hostile(r)))); // extra hostile keys
  if (kind === 5) return json(hostile(r)); // the whole body
  if (kind === 6) {
    // malformed JSON, cut JSON, invalid UTF-8, or no body at all
    const text = JSON.stringify(good) ?? '';
    const body = r.pick<string | Buffer | undefined>([r.pick(MALFORMED), text.slice(0, Math.max(1, r.int(text.length))), Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d]), '', undefined, 'null', '[]', '"s"', '12']);
    return { method, path, headers: { 'content-type': 'application/json' }, body, label: label(`malformed: ${String(body).slice(0, 120)}`) };
  }
  if (kind === 7) {
    const type = r.pick(OTHER_TYPES);
    return { method, path, headers: { 'content-type': type }, body: JSON.stringify(good), label: label(`as ${type}`) };
  }
  if (kind === 8 && uploads.length) {
    // a streamed upload whose lines or rows are hostile
    const type = r.pick(uploads);
    const record = () => ({ ...products(1, r.int(1000))[0], [r.pick(['title_en', 'title_zh', 'price', 'sku', 'brand', '__proto__'])]: r.chance(0.5) ? r.pick(STRINGS) : hostile(r, 2) });
    const lines = Array.from({ length: 1 + r.int(20) }, () => (type.includes('csv') ? [r.pick(STRINGS), r.pick(STRINGS)].map((v) => JSON.stringify(String(v))).join(',') : JSON.stringify(r.chance(0.7) ? record() : hostile(r, 2))));
    const header = type.includes('csv') ? r.pick(['sku,title_en', '__proto__,constructor', 'sku,sku', '', '"unterminated']) + '\n' : '';
    const body = header + lines.join('\n');
    return { method, path, headers: { 'content-type': type }, body, label: label(`${type} upload: ${body.slice(0, 300)}`) };
  }
  return json(good); // the valid-looking body itself
}

/** What is wrong with an answer, or undefined when it is fine. */
function problem(a: Answer, checker: ReturnType<typeof openApiChecker>, method: string, path: string): string | undefined {
  if (a.status >= 500 || a.status < 200) return `status ${a.status}: ${a.text.slice(0, 300)}`;
  if (a.status >= 400) {
    const e = (a.json as { error?: { code?: unknown; message?: unknown } } | undefined)?.error;
    if (typeof e?.code !== 'string' || typeof e.message !== 'string') return `status ${a.status} without the JSON error shape: ${a.type} ${a.text.slice(0, 300)}`;
    return undefined;
  }
  if (!a.type.startsWith('application/json')) return undefined; // /metrics
  try {
    checker.check(method, path, a.status, a.json);
  } catch (err) {
    return (err as Error).message;
  }
  return undefined;
}

describe(`fuzz (seed ${SEED})`, () => {
  it('answers every probe of every documented route with a success or a 4xx JSON error, never a 500 or a hang', async () => {
    const r = rng(SEED);
    const checker = openApiChecker(doc as never);
    const failures: string[] = [];
    const codes = new Map<string, number>();
    let sent = 0;
    for (const [template, item] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(item)) {
        const n = op.requestBody || template.includes('{') ? PROBES.reading : PROBES.fixed;
        for (let i = 0; i < n; i++) {
          const p = probe(r, method.toUpperCase(), template, op);
          sent++;
          try {
            const a = await send(p);
            const code = (a.json as { error?: { code?: string } } | undefined)?.error?.code ?? String(a.status);
            codes.set(code, (codes.get(code) ?? 0) + 1);
            const why = problem(a, checker, p.method, p.path) ?? (await poisoned());
            if (why) failures.push(`${p.label}\n    -> ${why}`);
          } catch (err) {
            failures.push(`${p.label}\n    -> ${(err as Error).message}`);
          }
          await repair();
        }
      }
    }
    console.log(`fuzz: ${sent} probes; answers by code: ${JSON.stringify(Object.fromEntries([...codes].sort()))}`);
    expect(failures, `seed ${SEED} (QRANK_FUZZ_SEED=${SEED}): ${failures.length} bad answers:\n${failures.slice(0, 15).join('\n')}`).toEqual([]);
    expect(sent).toBeGreaterThan(200);
    expect(codes.get('INVALID_INPUT')).toBeGreaterThan(20); // the fuzz reaches the validators, not only the body parser
  }, 120_000);

  it('still answers good requests afterwards', async () => {
    const post = (path: string, body: unknown) => send({ method: 'POST', path, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body), label: path });
    expect((await send({ method: 'GET', path: '/health', headers: {}, label: 'health' })).status).toBe(200);
    const rerank = await post('/v1/rerank', { query: 'auriculares', documents: ['无线蓝牙降噪耳机', 'knife set'] });
    expect(rerank.status).toBe(200);
    expect((rerank.json as { results: unknown[] }).results).toHaveLength(2);
    const search = await post('/v1/search', { collection: TARGET, query: 'auriculares', top_n: 3 });
    expect(search.status).toBe(200);
    expect((search.json as { results: unknown[] }).results.length).toBeGreaterThan(0);
    const upsert = await send({ method: 'POST', path: `/v1/collections/${TARGET}/documents`, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ documents: products(2, 9000) }), label: 'upsert' });
    expect(upsert.status).toBe(200);
    expect(upsert.json).toMatchObject({ upserted: 2, embedded: 2, rejected: 0 });
    expect((await send({ method: 'GET', path: '/v1/collections', headers: {}, label: 'list' })).status).toBe(200);
    const info = await (await se.existing(TARGET)).info();
    expect(info.vectors).toBe(info.size);
  });
});
