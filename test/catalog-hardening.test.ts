/**
 * Hostile catalogs against the record -> product path (issue 10): a bad record is rejected with its
 * line and a reason, the rest is ingested, and nothing is left behind that breaks a later call,
 * a reopen or the server. Rows written by an older qrank (which let bad texts through) are put
 * straight into SQLite to show that the collection heals instead of becoming unopenable.
 */
import { createWriteStream, mkdtempSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo, Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Embedder, Reranker } from '../lib/index';
import { Collection } from '../lib/search/collection';
import { SearchEngine } from '../lib/search/engine';
import { renderTemplate } from '../lib/search/templates';
import { createApp } from '../lib/server/app';
import { MAPPING, MODELS, products, rejectsWithCode } from './helpers';

const dir = mkdtempSync(join(tmpdir(), 'qrank-hardening-'));
let em: Embedder;
let rr: Reranker;
beforeAll(async () => {
  [em, rr] = await Promise.all([Embedder.load({ model: MODELS.embedder, threads: 1 }), Reranker.load({ model: MODELS.reranker, threads: 1 })]);
});
afterAll(async () => {
  await Promise.all([em?.close(), rr?.close()]);
  rmSync(dir, { recursive: true, force: true });
});

let fresh = 0;
/** A new data directory and an engine over it. */
async function engine(name = `d${fresh++}`) {
  const data = join(dir, name);
  return { data, se: await SearchEngine.open({ dir: data, embedder: em, reranker: rr }) };
}
const jsonl = (rows: unknown[]) => rows.map((r) => (typeof r === 'string' ? r : JSON.stringify(r))).join('\n') + '\n';
const nested = (depth: number) => '{"a":'.repeat(depth) + '1' + '}'.repeat(depth);

/** Writes a pending product the way an older qrank stored one whose text the embedder refuses. */
function plantUnembeddableRow(data: string, collection: string, id: string): void {
  const db = new Database(join(data, `${collection}.sqlite`));
  try {
    const text = 'legacy \ud800 text';
    db.prepare('INSERT INTO products (id, fields, embed_texts, rerank_text, embed_hash) VALUES (?, ?, ?, ?, ?)').run(
      id, JSON.stringify({ sku: id, title_en: text }), JSON.stringify([text]), 'legacy', 'legacy-hash');
  } finally {
    db.close();
  }
}

/** Open file descriptors of this process that point at `path`. */
function openHandles(path: string): number {
  return readdirSync('/proc/self/fd').filter((fd) => {
    try {
      return readlinkSync(`/proc/self/fd/${fd}`) === path;
    } catch {
      return false;
    }
  }).length;
}

describe('lone surrogates (item 5)', () => {
  it('rejects the record with its line and the field, ingests the rest, and later uploads work', async () => {
    const { se } = await engine();
    const col = await se.collection('p', { mapping: MAPPING });
    const good = products(4);
    const r = await col.ingest([good[0], { sku: 'bad', title_en: 'x\ud800y' }, good[1], { sku: 'key', title_en: 'ok', ['bad\udc00key']: 1 }, { sku: 'deep', title_en: 'ok', meta: { tags: ['a', '\udbff'] } }, { sku: 'id\ud800', title_en: 'ok' }]);
    expect(r).toMatchObject({ read: 6, upserted: 2, rejected: 4 });
    expect(r.errors.map((e) => e.at)).toEqual([2, 4, 5, 6]);
    expect(r.errors[0].reason).toMatch(/'title_en'.*lone surrogate/);
    expect(r.errors[2].reason).toMatch(/'meta\.tags\[1\]'.*lone surrogate/);
    expect(await col.pendingCount()).toBe(0);
    const later = await col.ingest(good.slice(2));
    expect(later).toMatchObject({ upserted: 2, rejected: 0, embedded: 2 });
    expect(await col.vectorCount()).toBe(4);
    se.close();
  });

  it('a stored product the embedder refuses (written by an older qrank) never makes the collection unopenable', async () => {
    const { data, se } = await engine();
    await (await se.collection('p', { mapping: MAPPING })).ingest(products(5));
    se.close();
    plantUnembeddableRow(data, 'p', 'legacy-1');
    const se2 = await SearchEngine.open({ dir: data, embedder: em, reranker: rr });
    const col = await se2.collection('p');
    expect(await col.pendingCount()).toBe(0);
    expect(await col.count()).toBe(5); // the row that can never be embedded is gone, the others are intact
    expect(await col.vectorCount()).toBe(5);
    expect((await col.ingest(products(3, 5))).embedded).toBe(3);
    // and while the collection is open: the next ingestion reports it and goes on
    plantUnembeddableRow(data, 'p', 'legacy-2');
    const r = await col.ingest(products(2, 8));
    expect(r).toMatchObject({ upserted: 2, embedded: 2, rejected: 1 });
    expect(r.errors).toEqual([{ at: 0, reason: expect.stringMatching(/'legacy-2'.*removed/) }]);
    expect(await col.pendingCount()).toBe(0);
    expect(await col.count()).toBe(10);
    expect(await col.vectorCount()).toBe(10);
    se2.close();
  });

  it('a failed open closes its database handle', async () => {
    const { data, se } = await engine();
    await (await se.collection('p', { mapping: MAPPING })).ingest(products(3));
    se.close();
    writeFileSync(join(data, 'p.qrix'), 'not an index');
    const sqlitePath = join(data, 'p.sqlite');
    const se2 = await SearchEngine.open({ dir: data, embedder: em });
    for (let i = 0; i < 3; i++) await rejectsWithCode(se2.collection('p'), 'BAD_INDEX');
    expect(openHandles(sqlitePath)).toBe(0);
    se2.close();
  });
});

describe('separator runs in templates (item 6)', () => {
  const timed = (title: string) => {
    const t0 = performance.now();
    const text = renderTemplate('{title} | {brand}', { title, brand: 'B' });
    return { text, ms: performance.now() - t0 };
  };

  it('renders long separator runs in linear time', () => {
    const cases = [
      'phone' + ' | '.repeat(18) + 'x',
      'phone' + ' | '.repeat(5000) + 'x',
      'phone' + ' ,;:|'.repeat(4000) + 'x',
      ' | '.repeat(5000) + 'phone',
      'a' + ' '.repeat(20_000) + '|' + ' '.repeat(20_000) + 'b',
      'a' + '\u3000|'.repeat(5000) + '\u3000;b',
    ];
    for (const title of cases) {
      const { text, ms } = timed(title);
      expect(ms, `${title.slice(0, 20)}... (${title.length} chars)`).toBeLessThan(250);
      expect(text.endsWith(' | B')).toBe(true);
    }
    expect(timed('phone' + ' | '.repeat(5000) + 'x').text).toBe('phone | x | B');
    expect(timed(' | '.repeat(5000) + 'phone').text).toBe('phone | B');
  });

  it('keeps what the separator cleanup did: dangling separators dropped, pipe runs collapsed, other text untouched', () => {
    const f = { a: 'A', b: 'B', c: 'C', e: '' };
    const cases: [string, Record<string, unknown>, string][] = [
      ['{a} | {e} | {b}', f, 'A | B'],
      ['{e} | {a}', f, 'A'],
      ['{a} | {e}', f, 'A'],
      ['{a}, {e}; {e}: ', f, 'A'],
      ['  ; {a} :: {b} ,, ', f, 'A :: B'],
      ['{a} || {b}', f, 'A | B'],
      ['{a} |, | {b}', f, 'A |, | B'],
      ['brand: {e}\n{a}\n{e} | {e}', f, 'A'],
      ['{a}\n\n{b}', f, 'A\nB'],
      ['price: {a}', f, 'price: A'],
      ['{a}\u3000|\u3000\u3000|{b}', f, 'A | B'],
      ['{x.y} / {a}', { x: { y: 'Y' }, a: 'A' }, 'Y / A'],
      ['{n} {t} {o}', { n: 0, t: false, o: { k: [1] } }, '0 false {"k":[1]}'],
    ];
    for (const [template, fields, expected] of cases) expect(renderTemplate(template, fields), template).toBe(expected);
  });

  it('gives what the old regular expressions gave on every short line of separators, spaces and text', () => {
    // the replaced implementation, as an oracle: fine on short inputs, exponential on long ones
    const old = (t: string) => t.replace(/(\s*[|,;:]\s*)+$/g, '').replace(/^(\s*[|,;:]\s*)+/g, '').replace(/(\s*\|\s*){2,}/g, ' | ').trim();
    const alphabet = ['a', ' ', '|', ',', ';', ':', '\u00a0', '\t'];
    let seed = 7;
    const next = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 16; // the high bits of an LCG
    for (let i = 0; i < 5000; i++) {
      const line = Array.from({ length: next() % 12 }, () => alphabet[next() % alphabet.length]).join('');
      expect(renderTemplate('{v}', { v: line }), JSON.stringify(line)).toBe(old(line));
    }
  });
});

describe('ragged CSV rows (item 7)', () => {
  const header = 'sku,title_en,price';
  const row = (i: number) => `sku-${i},Product ${i},${10 + i}`;

  it('keeps the good rows and reports the bad one at its real line', async () => {
    const { se } = await engine();
    const col = await se.collection('p', { mapping: { id: 'sku', embed: '{title_en}', rerank: '{title_en}', numeric: ['price'] } });
    const rows = Array.from({ length: 1000 }, (_, i) => (i === 500 ? row(i) + ',extra' : row(i)));
    writeFileSync(join(dir, 'ragged.csv'), [header, ...rows].join('\n') + '\n');
    const r = await col.ingest(join(dir, 'ragged.csv'), { batchSize: 128 });
    expect(r).toMatchObject({ read: 1000, upserted: 999, rejected: 1 });
    expect(r.errors).toEqual([{ at: 502, reason: expect.stringMatching(/4 columns.*header has 3/) }]);
    expect(await col.count()).toBe(999);
    se.close();
  });

  it('counts lines through quoted line breaks (LF and CRLF), blank lines and short rows', async () => {
    const { se } = await engine();
    const col = await se.collection('p', { mapping: { id: 'sku', embed: '{title_en}', rerank: '{title_en}' } });
    for (const eol of ['\n', '\r\n']) {
      const csv = [header, '', row(1), `sku-2,"two${eol}lines${eol}long",3`, '   ', row(3), 'sku-4,sh"ort quote,5', 'sku-5,short', '', row(6), 'sku-7,"x', '",7', 'sku-8'].join(eol);
      writeFileSync(join(dir, 'lines.csv'), csv);
      const r = await col.ingest(join(dir, 'lines.csv'));
      expect(r.errors, JSON.stringify(eol)).toEqual([
        { at: 10, reason: expect.stringMatching(/2 columns.*header has 3/) },
        { at: 15, reason: expect.stringMatching(/1 columns.*header has 3/) },
      ]);
      expect(r).toMatchObject({ read: 8, rejected: 2 });
      const byId = new Map([...(await col.rows([1, 2, 3, 4, 5, 6])).values()].map((p) => [p.id, p.fields.title_en]));
      expect([...byId.keys()]).toEqual(['sku-1', 'sku-2', 'sku-3', 'sku-4', 'sku-6', 'sku-7']);
      expect(byId.get('sku-2')).toBe(`two${eol}lines${eol}long`);
      expect(byId.get('sku-4')).toBe('sh"ort quote'); // a quote inside an unquoted field is kept as it is
      expect(byId.get('sku-7')).toBe(`x${eol}`);
    }
    se.close();
  });

  it('a quote closed in the middle of a field ends the file there: the rows before it are kept, the error has its line', async () => {
    const { se } = await engine();
    const col = await se.collection('p', { mapping: { id: 'sku', embed: '{title_en}', rerank: '{title_en}' } });
    // one chunk holds it all: the rows parsed before the error in that chunk must not be lost
    writeFileSync(join(dir, 'quote.csv'), [header, row(1), row(2), 'sku-3,"bad"quote,5', row(4)].join('\n'));
    const r = await col.ingest(join(dir, 'quote.csv'));
    expect(r).toMatchObject({ upserted: 2, rejected: 1 });
    expect(r.errors).toEqual([{ at: 4, reason: expect.stringMatching(/^invalid CSV: .*the rest of the file was not read/) }]);
    se.close();
  });

  it('a field over the record limit ends the file at its line (a runaway quote looks the same); the rows before it are kept', async () => {
    const { se } = await engine();
    const col = await se.collection('p', { mapping: { id: 'sku', embed: '{title_en}', rerank: '{title_en}' } });
    writeFileSync(join(dir, 'huge-field.csv'), [header, row(1), row(2), `sku-3,"${'z'.repeat(2 << 20)}",3`, row(4)].join('\n'));
    const r = await col.ingest(join(dir, 'huge-field.csv'));
    expect(r).toMatchObject({ upserted: 2, rejected: 1 });
    expect(r.errors).toEqual([{ at: 4, reason: expect.stringMatching(/^invalid CSV: .*1048576.*the rest of the file was not read/) }]);
    se.close();
  });

  it('refuses a header with duplicate or empty column names; a __proto__ column is an ordinary field', async () => {
    const { se } = await engine();
    const col = await se.collection('p', { mapping: { id: 'sku', embed: '{title_en}', rerank: '{title_en} {__proto__}' } });
    writeFileSync(join(dir, 'dup.csv'), 'sku,title_en,title_en\n1,a,b\n');
    expect((await rejectsWithCode(col.ingest(join(dir, 'dup.csv')), 'INVALID_INPUT')).message).toMatch(/line 1.*'title_en'.*twice/);
    writeFileSync(join(dir, 'empty.csv'), 'sku,,title_en\n1,a,b\n');
    await rejectsWithCode(col.ingest(join(dir, 'empty.csv')), 'INVALID_INPUT');
    writeFileSync(join(dir, 'proto.csv'), 'sku,title_en,__proto__,constructor\n1,hello,polluted,c\n');
    const r = await col.ingest(join(dir, 'proto.csv'));
    expect(r).toMatchObject({ upserted: 1, rejected: 0 });
    const [row] = [...(await col.rows([1])).values()];
    expect(Object.getOwnPropertyNames(row.fields)).toEqual(['sku', 'title_en', '__proto__', 'constructor']);
    expect(row.rerankText).toBe('hello polluted');
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    se.close();
  });
});

describe('depth and size of records (item 10)', () => {
  it('rejects records nested too deep, too large or with too many fields, naming the limit; searches go on', async () => {
    const { se } = await engine();
    const col = await se.collection('p', { mapping: MAPPING });
    const good = products(3);
    const lines = [
      JSON.stringify(good[0]),
      `{"sku":"d2000","title_en":"deep","x":${nested(2000)}}`,
      `{"sku":"d20000","title_en":"deep","x":${nested(20_000)}}`,
      JSON.stringify({ sku: 'big', title_en: 'big', blob: 'x'.repeat(2 << 20) }),
      JSON.stringify({ sku: 'wide', title_en: 'wide', ...Object.fromEntries(Array.from({ length: 5000 }, (_, i) => [`k${i}`, i])) }),
      JSON.stringify(good[1]),
      JSON.stringify({ sku: 'ok-depth', title_en: 'ok', x: JSON.parse(nested(31)) }),
    ];
    writeFileSync(join(dir, 'deep.jsonl'), jsonl(lines));
    const r = await col.ingest(join(dir, 'deep.jsonl'));
    expect(r).toMatchObject({ read: 7, upserted: 3, rejected: 4 });
    expect(r.errors.map((e) => e.at)).toEqual([2, 3, 4, 5]);
    expect(r.errors[0].reason).toMatch(/deeper than 32/);
    expect(r.errors[1].reason).toMatch(/deeper than 32/);
    expect(r.errors[2].reason).toMatch(/line is longer than the limit of 1 MiB/);
    expect(r.errors[3].reason).toMatch(/more than 1000 fields/);
    const hits = await se.search('p', 'x', { filter: { category: 'Audio' }, rerank: false });
    expect(hits.results.map((h) => h.id)).toEqual(['sku-0']);
    se.close();
  });

  it('rejects a 50 MB JSONL line without holding it, and reads on', async () => {
    const { se } = await engine();
    const col = await se.collection('p', { mapping: MAPPING });
    const path = join(dir, 'long-line.jsonl');
    const out = createWriteStream(path);
    out.write(JSON.stringify(products(1)[0]) + '\n{"sku":"huge","blob":"');
    const chunk = 'y'.repeat(1 << 20);
    for (let i = 0; i < 50; i++) out.write(chunk);
    out.write('"}\n' + JSON.stringify(products(1, 1)[0]) + '\n');
    await new Promise((done) => out.end(done));
    const heapBefore = process.memoryUsage().heapUsed;
    let peak = 0;
    const r = await col.ingest(path, { onProgress: () => (peak = Math.max(peak, process.memoryUsage().heapUsed - heapBefore)) });
    expect(r).toMatchObject({ read: 3, upserted: 2, rejected: 1 });
    expect(r.errors).toEqual([{ at: 2, reason: expect.stringMatching(/line is longer than the limit of 1 MiB/) }]);
    expect(peak).toBeLessThan(40 << 20);
    se.close();
  });

  it('rejects records too large and values that are not JSON (library callers): functions, bigints, cycles, non-finite numbers', async () => {
    const { se } = await engine();
    const col = await se.collection('p', { mapping: MAPPING });
    const cycle: Record<string, unknown> = { sku: 'cycle', title_en: 'c' };
    cycle.self = cycle;
    const r = await col.ingest([{ sku: 'big', title_en: 'big', blob: 'x'.repeat(2 << 20) }, { sku: 'f', title_en: 'f', fn: () => 1 }, { sku: 'b', title_en: 'b', n: 10n }, cycle, { sku: 'nan', title_en: 'n', x: Number.NaN }, { sku: 'date', title_en: 'd', at: new Date(0) }, products(1)[0]]);
    expect(r).toMatchObject({ read: 7, upserted: 1, rejected: 6 });
    expect(r.errors.map((e) => e.reason)).toEqual([
      expect.stringMatching(/over the limit of 1 MiB/),
      expect.stringMatching(/'fn'.*function/),
      expect.stringMatching(/'n'.*bigint/),
      expect.stringMatching(/deeper than 32/),
      expect.stringMatching(/'x'.*finite/),
      expect.stringMatching(/'at'.*Date/),
    ]);
    se.close();
  });
});

describe('prototype keys (item 12)', () => {
  it('looks up own fields only: a mapped id absent from the record is missing, not Object.prototype.constructor', async () => {
    const { se } = await engine();
    const col = await se.collection('p', { mapping: { id: 'constructor', embed: '{title}', rerank: '{title} {toString}' } });
    const r = await col.ingest([{ title: 'one' }, { title: 'two' }]);
    expect(r).toMatchObject({ upserted: 0, rejected: 2 });
    expect(r.errors[0].reason).toMatch(/missing id field 'constructor'/);
    expect(renderTemplate('{title} {constructor} {__proto__} {title.length} {hasOwnProperty}', { title: 'x' })).toBe('x');
    se.close();
  });

  it('stores records with __proto__, constructor and prototype keys as plain data', async () => {
    const { se } = await engine();
    const col = await se.collection('p', { mapping: { id: 'sku', embed: '{title} {__proto__.title}', rerank: '{constructor} {prototype}', numeric: ['__proto__', 'price'] } });
    const lines = ['{"sku":"a","title":"A","__proto__":{"title":"inner"},"constructor":"C","prototype":"P"}', '{"sku":"b","title":"B","__proto__":7,"price":"3"}', '{"sku":"c","title":"C"}'];
    writeFileSync(join(dir, 'proto.jsonl'), jsonl(lines));
    const r = await col.ingest(join(dir, 'proto.jsonl'));
    expect(r.errors[0]).toMatchObject({ at: 1, reason: expect.stringMatching(/'__proto__' is not a number/) });
    expect(r).toMatchObject({ upserted: 2, rejected: 1 });
    const rows = [...(await col.rows([1, 2])).values()];
    expect(rows.map((x) => x.id)).toEqual(['b', 'c']);
    expect(Object.getOwnPropertyNames(rows[0].fields)).toEqual(['sku', 'title', '__proto__', 'price']);
    expect(Object.getOwnPropertyDescriptor(rows[0].fields, '__proto__')?.value).toBe(7);
    expect(Object.getPrototypeOf(rows[0].fields)).toBe(Object.prototype);
    expect(rows[0].fields.price).toBe(3);
    expect((await col.rows([2])).get(2)?.rerankText).toBe('');
    const ok = await col.ingest(['{"sku":"a","title":"A","__proto__":{"title":"inner"},"constructor":"C","prototype":"P"}'].map((l) => JSON.parse(l)), { mapping: { id: 'sku', embed: '{title} {__proto__.title}', rerank: '{constructor} {prototype}' } });
    expect(ok).toMatchObject({ upserted: 1, rejected: 0 });
    const a = [...(await col.rows([3])).values()][0];
    expect(a.rerankText).toBe('C P');
    expect(({} as Record<string, unknown>).title).toBeUndefined();
    se.close();
  });
});

describe('JSON array sources', () => {
  it('assembles hostile elements safely: __proto__ keys are fields, deep, non-object and broken elements are rejected alone', async () => {
    const { se } = await engine();
    const col = await se.collection('p', { mapping: { ...MAPPING, embed: '{title_en} {__proto__.title_en}' } });
    const elements = [
      JSON.stringify(products(1)[0]),
      '{"sku":"p","title_en":"T","__proto__":{"title_en":"inner"},"n":{"__proto__":5},"list":[1,[2,{"k":null}],true]}',
      `{"sku":"deep","title_en":"d","x":${nested(20_000)}}`,
      '"a string"',
      '{"sku":"s","title_en":"\\ud800"}',
      JSON.stringify(products(1, 1)[0]),
    ];
    writeFileSync(join(dir, 'hostile.json'), `[${elements.join(',\n')}]`);
    const r = await col.ingest(join(dir, 'hostile.json'));
    expect(r.errors.map((e) => e.at)).toEqual([3, 4, 5]);
    expect(r.errors.map((e) => e.reason)).toEqual([expect.stringMatching(/deeper than 32/), 'not a JSON object', expect.stringMatching(/lone surrogate/)]);
    expect(r).toMatchObject({ read: 6, upserted: 3, rejected: 3 });
    const p = (await col.rows([2])).get(2)!;
    expect(p.id).toBe('p');
    expect(Object.getOwnPropertyNames(p.fields)).toEqual(['sku', 'title_en', '__proto__', 'n', 'list']);
    expect(p.fields.n).toEqual(JSON.parse('{"__proto__":5}'));
    expect(p.fields.list).toEqual([1, [2, { k: null }], true]);
    expect(JSON.parse(JSON.stringify(p.fields)).__proto__).toEqual({ title_en: 'inner' });
    se.close();
  });

  it('a syntax error ends the file at its element; a file that is not an array is one error', async () => {
    const { se } = await engine();
    const col = await se.collection('p', { mapping: MAPPING });
    writeFileSync(join(dir, 'broken.json'), `[${JSON.stringify(products(1)[0])}, ${JSON.stringify(products(1, 1)[0])}, {"sku": "x", oops}]`);
    const r = await col.ingest(join(dir, 'broken.json'));
    expect(r).toMatchObject({ upserted: 2, rejected: 1 });
    expect(r.errors).toEqual([{ at: 3, reason: expect.stringMatching(/^invalid JSON file: .*the rest of the file was not read/) }]);
    writeFileSync(join(dir, 'object.json'), JSON.stringify(products(1)[0]));
    expect((await col.ingest(join(dir, 'object.json'))).errors).toEqual([{ at: 0, reason: expect.stringMatching(/not an array of records/) }]);
    se.close();
  });
});

describe('mappings are validated in one place (item 13)', () => {
  it('ingest, SearchEngine.collection and Collection.open refuse an incomplete mapping, naming the field', async () => {
    const { data, se } = await engine();
    const col = await se.collection('p');
    expect((await rejectsWithCode(col.ingest(products(2), { mapping: { id: 'id' } as never }), 'INVALID_INPUT')).message).toMatch(/^mapping\.embed: /);
    expect((await rejectsWithCode(col.ingest(products(2), { mapping: { embed: '{title_en}' } as never }), 'INVALID_INPUT')).message).toMatch(/^mapping\.rerank: /);
    expect((await rejectsWithCode(col.ingest(products(2), { mapping: { ...MAPPING, embed: [] } }), 'INVALID_INPUT')).message).toMatch(/^mapping\.embed: /);
    expect((await rejectsWithCode(col.ingest(products(2), { mapping: { ...MAPPING, rerank: 'no fields here' } }), 'INVALID_INPUT')).message).toMatch(/^mapping\.rerank: .*names no field/);
    expect((await rejectsWithCode(col.ingest(products(2), { mapping: { ...MAPPING, embed: ['{a}', '{b}\ud800'] } }), 'INVALID_INPUT')).message).toMatch(/^mapping\.embed\.1: /);
    expect((await rejectsWithCode(col.ingest(products(2), { mapping: { ...MAPPING, extra: 1 } as never }), 'INVALID_INPUT')).message).toMatch(/extra/);
    expect(await col.mapping()).toBeUndefined(); // nothing invalid was stored
    for (const batchSize of [0, -1, 1.5, Number.NaN, 1e9]) await rejectsWithCode(col.ingest(products(2), { mapping: MAPPING, batchSize }), 'INVALID_INPUT');
    expect(await col.count()).toBe(0);
    await rejectsWithCode(se.collection('q', { mapping: { id: 'id' } as never }), 'INVALID_INPUT');
    await rejectsWithCode(Collection.open(data, 'r', em, { mapping: { embed: 1 } as never }), 'INVALID_INPUT');
    expect(await se.names()).toEqual(['p']);
    se.close();
  });

  it('an invalid mapping stored by an older qrank is reported when used, and replaced by a valid one', async () => {
    const { data, se } = await engine();
    await se.collection('p');
    se.close();
    const db = new Database(join(data, 'p.sqlite'));
    db.prepare("INSERT INTO meta (key, value) VALUES ('mapping', ?)").run(JSON.stringify({ id: 'sku' }));
    db.close();
    const se2 = await SearchEngine.open({ dir: data, embedder: em });
    const col = await se2.collection('p');
    expect(await col.info()).toMatchObject({ name: 'p', size: 0 });
    expect(await col.mapping()).toBeUndefined();
    const e = await rejectsWithCode(col.ingest(products(2)), 'INVALID_INPUT');
    expect(e.message).toMatch(/stored mapping of collection 'p' is invalid \(mapping\.embed: /);
    expect(await col.ingest(products(2), { mapping: MAPPING })).toMatchObject({ upserted: 2 });
    expect(await col.mapping()).toEqual(MAPPING);
    se2.close();
  });
});

describe('over HTTP', () => {
  let data: string;
  let se: SearchEngine;
  let server: Server;
  let base: string;
  const start = async () => {
    se = await SearchEngine.open({ dir: data, embedder: em, reranker: rr });
    server = createApp({ reranker: rr, embedder: em, search: se, logger: pino({ level: 'silent' }) }).app.listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  };
  const stop = async () => {
    await new Promise((r) => server.close(r));
    se.close();
  };
  const call = async (method: string, path: string, body?: unknown, type = 'application/json') => {
    const r = await fetch(base + path, { method, headers: { 'content-type': type }, body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body) });
    return { status: r.status, body: await r.json() };
  };
  beforeAll(async () => {
    data = join(dir, 'http');
    await start();
  });
  afterAll(stop);

  it('a lone surrogate is one rejected record; later uploads, a restart, search and DELETE all work', async () => {
    expect((await call('POST', '/v1/collections', { name: 'shop', mapping: MAPPING })).status).toBe(201);
    // JSON.stringify writes a lone surrogate as the escape \ud800, which is valid JSON and UTF-8
    const bad = await call('POST', '/v1/collections/shop/documents', { documents: [products(1)[0], { sku: 'bad', title_en: 'x\ud800y' }, products(1, 1)[0]] });
    expect(bad).toMatchObject({ status: 200, body: { read: 3, upserted: 2, rejected: 1, size: 2 } });
    expect(bad.body.errors).toEqual([{ at: 2, reason: expect.stringMatching(/lone surrogate/) }]);
    const streamed = await call('POST', '/v1/collections/shop/documents', jsonl([products(1, 2)[0], { sku: 'bad2', title_en: '\udfff' }, products(1, 3)[0]]), 'application/x-ndjson');
    expect(streamed).toMatchObject({ status: 200, body: { upserted: 2, rejected: 1, size: 4 } });
    expect(streamed.body.errors[0].at).toBe(2);
    expect((await call('POST', '/v1/collections/shop/documents', { documents: products(2, 4) })).body).toMatchObject({ upserted: 2, size: 6 });
    await stop();
    await start();
    expect((await call('GET', '/v1/collections')).status).toBe(200);
    expect((await call('POST', '/v1/search', { collection: 'shop', query: 'x', filter: { category: 'Audio' } })).status).toBe(200);
    expect((await call('DELETE', '/v1/collections/shop')).status).toBe(200);
  });

  it('a collection holding an unembeddable row from an older qrank opens, lists, searches and deletes after a restart', async () => {
    expect((await call('POST', '/v1/collections', { name: 'old', mapping: MAPPING })).status).toBe(201);
    await call('POST', '/v1/collections/old/documents', { documents: products(3) });
    await stop();
    plantUnembeddableRow(data, 'old', 'legacy');
    await start();
    const list = await call('GET', '/v1/collections');
    expect(list.status).toBe(200);
    expect(list.body.data).toEqual([expect.objectContaining({ name: 'old', size: 3, pending: 0, vectors: 3 })]);
    expect((await call('POST', '/v1/search', { collection: 'old', query: 'x' })).body.results).toHaveLength(3);
    expect((await call('POST', '/v1/collections/old/documents', { documents: products(1, 3) })).body).toMatchObject({ upserted: 1, size: 4 });
    expect((await call('DELETE', '/v1/collections/old')).status).toBe(200);
  });

  it('a ragged CSV upload keeps the good rows and reports the bad one at its line', async () => {
    expect((await call('POST', '/v1/collections', { name: 'csv', index: { kind: 'flat' }, mapping: { id: 'sku', embed: '{title_en}', rerank: '{title_en}', numeric: ['price'] } })).status).toBe(201);
    const rows = Array.from({ length: 1000 }, (_, i) => `sku-${i},Product ${i},${i}` + (i === 500 ? ',extra' : ''));
    const r = await call('POST', '/v1/collections/csv/documents', ['sku,title_en,price', ...rows].join('\n'), 'text/csv');
    expect(r).toMatchObject({ status: 200, body: { read: 1000, upserted: 999, rejected: 1, size: 999 } });
    expect(r.body.errors).toEqual([{ at: 502, reason: expect.stringMatching(/4 columns/) }]);
    expect((await call('DELETE', '/v1/collections/csv')).status).toBe(200);
  });

  it('deep records are rejected at ingestion and filtered searches stay 200', async () => {
    expect((await call('POST', '/v1/collections', { name: 'deep', mapping: MAPPING })).status).toBe(201);
    const body = `{"documents":[${JSON.stringify(products(1)[0])},{"sku":"d","title_en":"deep","x":${nested(2000)}},{"sku":"e","title_en":"deeper","x":${nested(20_000)}}]}`;
    const r = await call('POST', '/v1/collections/deep/documents', body);
    expect(r).toMatchObject({ status: 200, body: { upserted: 1, rejected: 2 } });
    expect(r.body.errors.map((e: { at: number }) => e.at)).toEqual([2, 3]);
    const s = await call('POST', '/v1/search', { collection: 'deep', query: 'x', filter: { category: 'Audio' } });
    expect(s).toMatchObject({ status: 200 });
    expect(s.body.results).toHaveLength(1);
  });

  it('the server and the library refuse a bad mapping with the same message', async () => {
    const bad = { id: 'sku', embed: '{title_en}', rerank: 'constant text' };
    const r = await call('POST', '/v1/collections', { name: 'badmap', mapping: bad });
    expect(r.status).toBe(400);
    const lib = await rejectsWithCode(se.collection('badmap2', { mapping: bad }), 'INVALID_INPUT');
    expect(r.body.error).toEqual({ code: 'INVALID_INPUT', message: lib.message });
    const docs = await call('POST', '/v1/collections/deep/documents', { documents: [], mapping: { id: 'sku' } });
    expect(docs).toMatchObject({ status: 400, body: { error: { code: 'INVALID_INPUT', message: expect.stringMatching(/^mapping\.embed: /) } } });
  });
});
