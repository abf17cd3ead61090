/**
 * Product records from arrays or files, streamed: JSONL line by line, CSV through csv-parse,
 * JSON arrays element by element (stream-json), so a catalog larger than memory can be ingested.
 * A record that cannot be parsed is reported with its line (or element) and the rest go on.
 */
import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { type Readable, Transform, pipeline } from 'node:stream';
import { parse as parseCsv } from 'csv-parse';
import StreamArray from 'stream-json/streamers/StreamArray';
import { QrankError, invalid } from '../errors';

export type ProductRecord = Record<string, unknown>;

export interface SourceItem {
  /** 1-based line (JSONL, CSV) or element number (JSON) where the record came from. */
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

/** input piped into dest; an error of input (bad UTF-8, too large) destroys dest with that error. */
function into<T extends NodeJS.ReadWriteStream>(input: Readable, dest: T): T {
  pipeline(input, dest, () => undefined);
  return dest;
}

function isRecord(v: unknown): v is ProductRecord {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

async function* readJsonl(input: Readable): AsyncGenerator<SourceItem> {
  // readline's iterator does not reject on an input error: rethrow it after the lines end
  let failed: unknown;
  input.on('error', (err) => (failed = err));
  const lines = createInterface({ input, crlfDelay: Infinity });
  let at = 0;
  for await (const line of lines) {
    if (failed) break;
    at++;
    if (line.trim() === '') continue;
    try {
      const v = JSON.parse(line);
      yield isRecord(v) ? { at, record: v } : { at, error: 'not a JSON object' };
    } catch (err) {
      yield { at, error: `invalid JSON: ${(err as Error).message}` };
    }
  }
  if (failed) throw failed;
}

async function* readCsv(input: Readable): AsyncGenerator<SourceItem> {
  const parser = into(input, parseCsv({ columns: true, skip_empty_lines: true, trim: true, bom: true, relax_column_count: false }));
  let at = 1; // the header
  try {
    for await (const row of parser) {
      at = parser.info.lines;
      yield { at, record: row as ProductRecord };
    }
  } catch (err) {
    if (err instanceof QrankError) throw err;
    yield { at: at + 1, error: `invalid CSV: ${(err as Error).message}` };
  }
}

async function* readJsonArray(input: Readable): AsyncGenerator<SourceItem> {
  const stream = into(input, StreamArray.withParser());
  try {
    for await (const { key, value } of stream as AsyncIterable<{ key: number; value: unknown }>) {
      yield isRecord(value) ? { at: key + 1, record: value } : { at: key + 1, error: 'not a JSON object' };
    }
  } catch (err) {
    if (err instanceof QrankError) throw err;
    yield { at: 0, error: `invalid JSON file: ${(err as Error).message}` };
  }
}
