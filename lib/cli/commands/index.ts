/**
 * `qrank index`: ingest a catalog file (JSON, JSONL or CSV, or standard input) into a collection:
 * store, embed, index. (The file is named after its command, like every file here; it is not a barrel.)
 */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { SearchEngine } from '../../search/engine';
import type { Mapping } from '../../search/collection';
import { SHOP_MAPPING } from '../../search/demo-catalog';
import { type CliIO, UsageError } from '../io';
import { keywordBuildBar, loadModels, progressBar, storeOf, storeOption, withModelOptions } from '../shared';

function mappingFrom(flag: string | undefined): Mapping {
  if (!flag) return SHOP_MAPPING;
  try {
    return JSON.parse(flag.trim().startsWith('{') ? flag : readFileSync(flag, 'utf8')) as Mapping;
  } catch (err) {
    throw new UsageError(`--mapping must be JSON or a JSON file: ${(err as Error).message}`);
  }
}

export function registerIndex(program: Command, io: CliIO): void {
  withModelOptions(program.command('index'), { embedder: true })
    .description('ingest products (JSON, JSONL or CSV) into a collection: store, embed, index')
    .argument('<file>', 'catalog file (.jsonl, .json, .csv), or - for standard input with --format')
    .option('--format <format>', 'format of standard input: jsonl, csv or json')
    .option('--dir <dir>', 'data directory of the search engine')
    .addOption(storeOption())
    .option('--collection <name>', 'collection name', 'products')
    .option('--mapping <json|file>', 'id field, embed template(s), rerank template, numeric fields (JSON)')
    .option('--index <kind>', 'index kind for a new collection: flat, hnsw, ivf, ivfpq', 'hnsw')
    .option('--reindex', 're-embed everything when the embedding model changed')
    .action(async (file: string, flags: { dir?: string; store?: string; collection: string; mapping?: string; index: string; reindex?: boolean; format?: string; embedder?: string; threads?: string }) => {
      const store = storeOf(flags);
      if (file === '-' && !['jsonl', 'csv', 'json'].includes(flags.format ?? '')) throw new UsageError('reading standard input needs --format jsonl, csv or json');
      const source = file === '-' ? { stream: process.stdin, format: flags.format as 'jsonl' | 'csv' | 'json' } : file;
      const { embedder } = await loadModels(flags, { embedder: true, reranker: false });
      const building = keywordBuildBar(io);
      const se = await SearchEngine.open({ store, embedder: embedder!, onKeywordIndexProgress: building.onKeywordIndexProgress });
      const bar = progressBar(io, 'ingesting');
      try {
        const col = await se.collection(flags.collection, { index: { kind: flags.index as 'hnsw' }, reindex: flags.reindex });
        const r = await col.ingest(source, { mapping: mappingFrom(flags.mapping), onProgress: (p) => bar.update(p.read, p.read) });
        bar.stop();
        io.stdout.write(`read ${r.read}, upserted ${r.upserted}, unchanged ${r.unchanged}, embedded ${r.embedded}, rejected ${r.rejected}; collection ${flags.collection} holds ${await col.count()} products\n`);
        for (const e of r.errors.slice(0, 10)) io.stderr.write(`  line ${e.at}: ${e.reason}\n`);
        if (r.rejected > 0) process.exitCode = 3; // partial success, for scripts
      } finally {
        bar.stop();
        building.stop();
        await se.close();
        await embedder!.close();
      }
    });
}
