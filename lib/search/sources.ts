/**
 * Product records from arrays or files, streamed: JSONL line by line, CSV through csv-parse,
 * JSON arrays element by element (stream-json), so a catalog larger than memory can be ingested.
 * A record that cannot be parsed is reported with its line (or element) and the rest go on.
 */
import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { parse as parseCsv } from 'csv-parse';
import StreamArray from 'stream-json/streamers/StreamArray';
import { invalid } from '../errors';

export type ProductRecord = Record<string, unknown>;

export interface SourceItem {
  /** 1-based line (JSONL, CSV) or element number (JSON) where the record came from. */
  at: number;
  record?: ProductRecord;
  error?: string;
}

export type Source = string | Iterable<ProductRecord> | AsyncIterable<ProductRecord>;

export async function* readSource(source: Source): AsyncGenerator<SourceItem> {
  if (typeof source !== 'string') {
    let at = 0;
    for await (const record of source as AsyncIterable<ProductRecord>) {
      at++;
      yield isRecord(record) ? { at, record } : { at, error: 'not an object' };
    }
    return;
  }
  const lower = source.toLowerCase();
  if (lower.endsWith('.jsonl') || lower.endsWith('.ndjson')) yield* readJsonl(source);
  else if (lower.endsWith('.csv')) yield* readCsv(source);
  else if (lower.endsWith('.json')) yield* readJsonArray(source);
  else throw invalid(`cannot tell the format of ${source}: name it .jsonl, .ndjson, .json or .csv`);
}

function isRecord(v: unknown): v is ProductRecord {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

async function* readJsonl(path: string): AsyncGenerator<SourceItem> {
  const lines = createInterface({ input: createReadStream(path, { encoding: 'utf8' }), crlfDelay: Infinity });
  let at = 0;
  for await (const line of lines) {
    at++;
    if (line.trim() === '') continue;
    try {
      const v = JSON.parse(line);
      yield isRecord(v) ? { at, record: v } : { at, error: 'not a JSON object' };
    } catch (err) {
      yield { at, error: `invalid JSON: ${(err as Error).message}` };
    }
  }
}

async function* readCsv(path: string): AsyncGenerator<SourceItem> {
  const parser = createReadStream(path).pipe(parseCsv({ columns: true, skip_empty_lines: true, trim: true, bom: true, relax_column_count: false }));
  let at = 1; // the header
  try {
    for await (const row of parser) {
      at = parser.info.lines;
      yield { at, record: row as ProductRecord };
    }
  } catch (err) {
    yield { at: at + 1, error: `invalid CSV: ${(err as Error).message}` };
  }
}

async function* readJsonArray(path: string): AsyncGenerator<SourceItem> {
  const stream = createReadStream(path).pipe(StreamArray.withParser());
  try {
    for await (const { key, value } of stream as AsyncIterable<{ key: number; value: unknown }>) {
      yield isRecord(value) ? { at: key + 1, record: value } : { at: key + 1, error: 'not a JSON object' };
    }
  } catch (err) {
    yield { at: 0, error: `invalid JSON file: ${(err as Error).message}` };
  }
}
