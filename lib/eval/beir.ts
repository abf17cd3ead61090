/**
 * BEIR-format dataset loader: corpus.jsonl, queries.jsonl and qrels/<split>.tsv in one directory.
 * Every file is read line by line from a stream, so a multi-gigabyte corpus never becomes one
 * string; readCorpus yields documents as it goes. Malformed input fails with the file and the
 * 1-based line number (blank lines count, so the number matches what an editor shows).
 */
import { createReadStream } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { invalid } from '../errors';

export interface BeirCorpusDoc {
  id: string;
  title: string;
  text: string;
  metadata: Record<string, unknown>;
}

export interface BeirQuery {
  id: string;
  text: string;
  metadata: Record<string, unknown>;
}

/** query id -> doc id -> graded relevance (0 = judged non-relevant). */
export type Qrels = Map<string, Map<string, number>>;

export interface BeirDataset {
  corpus: BeirCorpusDoc[];
  queries: BeirQuery[];
  qrels: Qrels;
}

interface Line {
  text: string;
  lineNo: number;
}

/** Non-blank lines of a UTF-8 text file, streamed; the stream is released even on an early break. */
async function* readLines(file: string): AsyncGenerator<Line> {
  const input = createReadStream(file, { encoding: 'utf8' });
  // crlfDelay: Infinity makes "\r\n" one line break even when it straddles two chunks.
  const rl = createInterface({ input, crlfDelay: Infinity });
  let lineNo = 0;
  try {
    for await (const raw of rl) {
      lineNo++;
      // A UTF-8 BOM (some Windows tools write one) would otherwise break JSON.parse on line 1.
      const text = lineNo === 1 ? raw.replace(/^\uFEFF/, '') : raw;
      if (text.trim() !== '') yield { text, lineNo };
    }
  } finally {
    rl.close();
    input.destroy();
  }
}

function lineError(file: string, lineNo: number, what: string): Error {
  return invalid(`${file}:${lineNo}: ${what}`);
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Parses one JSONL line into an object, or throws naming the file and line. */
function parseJsonObject(file: string, { text, lineNo }: Line): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw lineError(file, lineNo, `invalid JSON (${(err as Error).message})`);
  }
  if (!isPlainObject(value)) throw lineError(file, lineNo, 'expected a JSON object');
  return value;
}

/** `_id` as a string; numeric ids are accepted because some exported datasets write them unquoted. */
function idField(file: string, lineNo: number, obj: Record<string, unknown>): string {
  const id = obj._id;
  if (typeof id === 'string' && id !== '') return id;
  if (typeof id === 'number' && Number.isFinite(id)) return String(id);
  throw lineError(file, lineNo, 'missing or invalid "_id"');
}

/** An optional string field: absent or null reads as ''. */
function stringField(file: string, lineNo: number, obj: Record<string, unknown>, key: string): string {
  const v = obj[key];
  if (v === undefined || v === null) return '';
  if (typeof v !== 'string') throw lineError(file, lineNo, `"${key}" must be a string`);
  return v;
}

function metadataField(file: string, lineNo: number, obj: Record<string, unknown>): Record<string, unknown> {
  const v = obj.metadata;
  if (v === undefined || v === null) return {};
  if (!isPlainObject(v)) throw lineError(file, lineNo, '"metadata" must be an object');
  return v;
}

/** Streams corpus.jsonl one document at a time. */
export async function* readCorpus(dir: string): AsyncGenerator<BeirCorpusDoc> {
  const file = join(dir, 'corpus.jsonl');
  for await (const line of readLines(file)) {
    const obj = parseJsonObject(file, line);
    yield {
      id: idField(file, line.lineNo, obj),
      title: stringField(file, line.lineNo, obj, 'title'),
      text: stringField(file, line.lineNo, obj, 'text'),
      metadata: metadataField(file, line.lineNo, obj),
    };
  }
}

/** All of queries.jsonl (query sets are small: thousands, not millions). */
export async function readQueries(dir: string): Promise<BeirQuery[]> {
  const file = join(dir, 'queries.jsonl');
  const out: BeirQuery[] = [];
  for await (const line of readLines(file)) {
    const obj = parseJsonObject(file, line);
    // A query without text cannot be searched, so unlike a title it is required.
    if (typeof obj.text !== 'string') throw lineError(file, line.lineNo, 'missing or invalid "text"');
    out.push({ id: idField(file, line.lineNo, obj), text: obj.text, metadata: metadataField(file, line.lineNo, obj) });
  }
  return out;
}

const INTEGER = /^-?\d+$/;

/**
 * qrels/<split>.tsv: "query-id\tcorpus-id\tscore" with integer grades. The header is optional
 * (recognised by its first column) so hand-made files without one still load.
 */
export async function readQrels(dir: string, split = 'test'): Promise<Qrels> {
  const file = join(dir, 'qrels', `${split}.tsv`);
  const qrels: Qrels = new Map();
  let first = true;
  for await (const { text, lineNo } of readLines(file)) {
    const cols = text.split('\t');
    if (first && cols[0] === 'query-id') {
      first = false;
      continue;
    }
    first = false;
    if (cols.length !== 3) throw lineError(file, lineNo, `expected 3 tab-separated columns, got ${cols.length}`);
    const [qid, docId, score] = cols.map((c) => c.trim());
    if (qid === '' || docId === '') throw lineError(file, lineNo, 'empty query or corpus id');
    if (!INTEGER.test(score)) throw lineError(file, lineNo, `score must be an integer, got "${score}"`);
    let judged = qrels.get(qid);
    if (!judged) qrels.set(qid, (judged = new Map()));
    judged.set(docId, Number(score));
  }
  return qrels;
}

/** Everything in memory at once: for small sets and tests; use readCorpus for large corpora. */
export async function loadBeir(dir: string, split = 'test'): Promise<BeirDataset> {
  const corpus: BeirCorpusDoc[] = [];
  for await (const doc of readCorpus(dir)) corpus.push(doc);
  const [queries, qrels] = await Promise.all([readQueries(dir), readQrels(dir, split)]);
  return { corpus, queries, qrels };
}
