/**
 * Product records from arrays or files, streamed: JSONL line by line, CSV through csv-parse,
 * JSON arrays element by element (stream-json's tokens), so a catalog larger than memory can be
 * ingested. A record that cannot be read is reported with its line (or element) and the rest go
 * on: a JSONL line that is not a JSON object, or is longer than a record may be (it is not held in
 * memory); a CSV row whose field count is not the header's; a JSON element that is not an object.
 * A syntax error in CSV or a JSON array (a quote closed in the middle of a field, one never
 * closed, a CSV field over the record limit, broken JSON) ends the file there, since what follows
 * cannot be told apart from it; the records before it are kept. A CSV header with an empty or
 * repeated column name is an error (INVALID_INPUT): no row could be read right. Keys such as
 * "__proto__" are own fields in every format (see mapping.ts for what a record may hold).
 */
import { createReadStream } from 'node:fs';
import { type Readable, Transform, type Writable } from 'node:stream';
import { parse as parseCsv } from 'csv-parse';
import JsonTokens from 'stream-json/Parser';
import { QrankError, invalid } from '../errors';
import { RECORD_LIMITS, describeBytes } from './mapping';

export type ProductRecord = Record<string, unknown>;

export interface SourceItem {
  /** 1-based line (JSONL, CSV; where the row starts) or element number (JSON) where the record came from. */
  at: number;
  record?: ProductRecord;
  error?: string;
}

/** A byte stream in a known format (an HTTP upload, stdin); `limitBytes` caps what is read. */
export interface StreamSource {
  stream: Readable;
  format: 'jsonl' | 'csv' | 'json';
  limitBytes?: number;
}

export type Source = string | StreamSource | Iterable<ProductRecord> | AsyncIterable<ProductRecord>;

function isStreamSource(s: unknown): s is StreamSource {
  return typeof s === 'object' && s !== null && 'stream' in s && 'format' in s;
}

/**
 * Passes the bytes through unchanged after checking that they are UTF-8 (a streaming fatal
 * decoder: a character split across chunks is fine) and that no more than `limitBytes` came.
 * Invalid UTF-8 is an error (INVALID_INPUT), never text with replacement characters.
 */
function checkedUtf8(input: Readable, limitBytes = Infinity): Readable {
  const decoder = new TextDecoder('utf-8', { fatal: true });
  let bytes = 0;
  const check = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      bytes += chunk.length;
      if (bytes > limitBytes) return done(new QrankError('INPUT_TOO_LARGE', `the input is larger than the limit of ${limitBytes} bytes`));
      try {
        decoder.decode(chunk, { stream: true });
      } catch {
        return done(invalid(`the input is not valid UTF-8 (between bytes ${bytes - chunk.length} and ${bytes}); records of the batches before it were stored, and upserts are idempotent: send it again once fixed`));
      }
      done(null, chunk);
    },
    flush(done) {
      try {
        decoder.decode();
        done();
      } catch {
        done(invalid('the input ends in the middle of a UTF-8 character'));
      }
    },
  });
  input.on('error', (err) => check.destroy(err));
  return input.pipe(check);
}

export async function* readSource(source: Source): AsyncGenerator<SourceItem> {
  if (isStreamSource(source)) {
    const input = checkedUtf8(source.stream, source.limitBytes);
    if (source.format === 'jsonl') yield* readJsonl(input);
    else if (source.format === 'csv') yield* readCsv(input);
    else if (source.format === 'json') yield* readJsonArray(input);
    else throw invalid(`unknown format '${String(source.format)}': jsonl, csv or json`);
    return;
  }
  if (typeof source !== 'string') {
    let at = 0;
    for await (const record of source as AsyncIterable<ProductRecord>) {
      at++;
      yield isRecord(record) ? { at, record } : { at, error: 'not an object' };
    }
    return;
  }
  const lower = source.toLowerCase();
  const file = () => checkedUtf8(createReadStream(source));
  if (lower.endsWith('.jsonl') || lower.endsWith('.ndjson')) yield* readJsonl(file());
  else if (lower.endsWith('.csv')) yield* readCsv(file());
  else if (lower.endsWith('.json')) yield* readJsonArray(file());
  else throw invalid(`cannot tell the format of ${source}: name it .jsonl, .ndjson, .json or .csv`);
}

function isRecord(v: unknown): v is ProductRecord {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Writes `input` into `parser` one chunk at a time. After each chunk it yields what the parser put
 * into `made` meanwhile (taking it out), and last the parser's error, if it failed. So what the
 * parser made before an error is never lost (an async iterator over a failed stream drops what it
 * had buffered), and no more than one chunk's output is held. An error of `input` (bad UTF-8, too
 * large) is thrown. `made` must be filled synchronously as the parser reads (a csv-parse
 * `on_record` hook, or a 'data' listener, which a parser that is never paused calls at once).
 */
async function* feed<T>(input: Readable, parser: Writable, made: T[]): AsyncGenerator<T[] | Error> {
  parser.on('error', () => undefined); // every error also comes to the callback of the write that met it
  const send = (chunk?: Buffer) => new Promise<Error | null | undefined>((done) => (chunk ? parser.write(chunk, done) : parser.end(done)));
  try {
    let failure: Error | null | undefined;
    for await (const chunk of input as AsyncIterable<Buffer>) {
      failure = await send(chunk);
      yield made.splice(0);
      if (failure) break;
    }
    failure ??= await send();
    yield made.splice(0);
    if (failure) yield failure;
  } finally {
    parser.destroy();
  }
}

async function* readJsonl(input: Readable): AsyncGenerator<SourceItem> {
  for await (const { at, text } of lines(input, RECORD_LIMITS.maxBytes)) {
    if (text === undefined) {
      yield { at, error: `the line is longer than the limit of ${describeBytes(RECORD_LIMITS.maxBytes)} for a record` };
      continue;
    }
    if (text.trim() === '') continue;
    try {
      const v = JSON.parse(text);
      yield isRecord(v) ? { at, record: v } : { at, error: 'not a JSON object' };
    } catch (err) {
      yield { at, error: `invalid JSON: ${(err as Error).message}` };
    }
  }
}

/**
 * The lines of `input` (split at \n, a \r before it dropped) with their 1-based numbers. A line
 * longer than `maxBytes` is not held: its bytes are dropped as they come, and it is reported
 * without `text`. An error of `input` (bad UTF-8, too large) is thrown.
 */
async function* lines(input: Readable, maxBytes: number): AsyncGenerator<{ at: number; text?: string }> {
  let held: Buffer[] = [];
  let heldBytes = 0;
  let tooLong = false;
  let at = 0;
  const hold = (piece: Buffer) => {
    if (tooLong) return;
    if (heldBytes + piece.length > maxBytes) {
      tooLong = true;
      held = [];
      heldBytes = 0;
    } else {
      held.push(piece);
      heldBytes += piece.length;
    }
  };
  const take = () => {
    const line = { at: ++at, text: tooLong ? undefined : Buffer.concat(held).toString('utf8').replace(/\r$/, '') };
    held = [];
    heldBytes = 0;
    tooLong = false;
    return line;
  };
  for await (const chunk of input as AsyncIterable<Buffer>) {
    let from = 0;
    for (let nl = chunk.indexOf(10); nl !== -1; nl = chunk.indexOf(10, from)) {
      hold(chunk.subarray(from, nl));
      from = nl + 1;
      yield take();
    }
    hold(chunk.subarray(from));
  }
  if (heldBytes > 0 || tooLong) yield take();
}

/**
 * CSV through csv-parse, fed chunk by chunk (see `feed`). Lines are counted here (a row takes one
 * line plus the line breaks inside its quoted fields): csv-parse's own count is off inside quoted
 * fields with CRLF line breaks.
 */
async function* readCsv(input: Readable): AsyncGenerator<SourceItem> {
  const parsed: string[][] = [];
  const parser = parseCsv({
    bom: true,
    trim: true,
    relax_column_count: true, // a ragged row is rejected below, at its line, and the others go on
    relax_quotes: true, // a quote inside an unquoted field is a character of it
    max_record_size: RECORD_LIMITS.maxBytes,
    on_record: (row: string[]) => {
      parsed.push(row);
      return null; // rows are taken from `parsed`, not from the stream
    },
  });
  let header: string[] | undefined;
  let line = 1; // where the next row starts
  for await (const out of feed(input, parser, parsed)) {
    if (out instanceof Error) {
      yield { at: line, error: `invalid CSV: ${out.message}; the rest of the file was not read` };
      continue;
    }
    for (const fields of out) {
      const at = line;
      line += 1 + fields.reduce((n, f) => n + lineBreaks(f), 0);
      if (fields.length === 1 && fields[0] === '') continue; // a blank line
      if (!header) header = csvHeader(fields, at);
      else if (fields.length !== header.length) yield { at, error: `the row has ${fields.length} columns, the header has ${header.length}` };
      else yield { at, record: Object.fromEntries(header.map((name, i) => [name, fields[i]])) };
    }
  }
}

function lineBreaks(s: string): number {
  let n = 0;
  for (let i = s.indexOf('\n'); i !== -1; i = s.indexOf('\n', i + 1)) n++;
  return n;
}

/** The column names of a CSV header: each names one field, so none may be empty or repeated. */
function csvHeader(names: string[], at: number): string[] {
  const where = `the CSV header (line ${at})`;
  if (names.length > RECORD_LIMITS.maxFields) throw invalid(`${where} has ${names.length} columns, more than the limit of ${RECORD_LIMITS.maxFields} fields of a record`);
  const seen = new Set<string>();
  names.forEach((name, i) => {
    if (name === '') throw invalid(`${where}: column ${i + 1} has no name`);
    if (seen.has(name)) throw invalid(`${where}: column '${name.slice(0, 60)}' appears twice`);
    seen.add(name);
  });
  return names;
}

/**
 * The elements of a JSON array, assembled here from stream-json's tokens (fed chunk by chunk, see
 * `feed`): stream-json's own Assembler assigns keys, so an element's "__proto__" key would set its
 * prototype instead of being a field. Keys are defined as own properties, as JSON.parse does.
 * Elements are yielded as they end and never kept; a syntax error ends the file at its element.
 */
async function* readJsonArray(input: Readable): AsyncGenerator<SourceItem> {
  const tokens: { name: string; value?: string }[] = [];
  const parser = new JsonTokens({ streamValues: false }).on('data', (t: { name: string; value?: string }) => tokens.push(t));
  const open: (Record<string, unknown> | unknown[])[] = []; // containers being built; open[0] is the top-level array
  const keys: (string | undefined)[] = []; // the key each open container will be stored under
  let key: string | undefined;
  let at = 0; // elements of the top-level array seen
  // where a finished value goes: into the container it is in, or out as an element
  const place = (value: unknown): SourceItem | undefined => {
    const parent = open[open.length - 1];
    if (open.length === 1) {
      at++;
      return isRecord(value) ? { at, record: value } : { at, error: 'not a JSON object' };
    }
    if (Array.isArray(parent)) parent.push(value);
    else Object.defineProperty(parent, key!, { value, writable: true, enumerable: true, configurable: true });
    return undefined;
  };
  for await (const out of feed(input, parser, tokens)) {
    if (out instanceof Error) {
      yield { at: at + 1, error: `invalid JSON file: ${out.message}; the rest of the file was not read` };
      return;
    }
    for (const { name, value } of out) {
      let item: SourceItem | undefined;
      if (name === 'startObject' || name === 'startArray') {
        if (open.length === 0 && name === 'startObject') {
          yield { at: 0, error: 'invalid JSON file: the top level is an object, not an array of records' };
          return;
        }
        keys.push(key);
        open.push(name === 'startObject' ? {} : []);
      } else if (name === 'endObject' || name === 'endArray') {
        const done = open.pop()!;
        key = keys.pop();
        if (open.length === 0) return; // the end of the top-level array
        item = place(done);
      } else if (name === 'keyValue') {
        key = value;
      } else if (open.length === 0) {
        yield { at: 0, error: 'invalid JSON file: the top level is a single value, not an array of records' };
        return;
      } else if (SCALARS.has(name)) {
        item = place(SCALARS.get(name)!(value!));
      }
      if (item) yield item;
    }
  }
}

/** The tokens of values that hold no others, and the value each stands for. */
const SCALARS = new Map<string, (text: string) => unknown>([
  ['stringValue', (text) => text],
  ['numberValue', (text) => Number(text)],
  ['nullValue', () => null],
  ['trueValue', () => true],
  ['falseValue', () => false],
]);
