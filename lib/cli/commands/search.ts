/**
 * `qrank search`: two-stage search of a collection (keyword and vector recall fused, then reranking),
 * printed one hit a line with its place in each recall list, or as JSON.
 */
import type { Command } from 'commander';
import { RECALL_MODES, type RecallMode, type SearchHit, SearchEngine } from '../../search/engine';
import { type CliIO, UsageError } from '../io';
import { keywordBuildBar, loadModels, storeOf, storeOption, withModelOptions } from '../shared';

export function registerSearch(program: Command, io: CliIO): void {
  withModelOptions(program.command('search'), { reranker: 'required', embedder: true })
    .description('two-stage search: keyword (BM25) and embedding recall fused, then reranking')
    .argument('<query>', 'the shopper\'s query, in any language')
    .option('--dir <dir>', 'data directory of the search engine')
    .addOption(storeOption())
    .option('--collection <name>', 'collection name', 'products')
    .option('--recall <mode>', `${RECALL_MODES.join(', ')} (default: hybrid when the collection has a keyword index)`)
    .option('--recall-k <n>', 'candidates reranked (and the vector list\'s length)', '100')
    .option('--keyword-k <n>', 'length of the keyword list (default: --recall-k)')
    .option('--top-n <n>', 'results', '10')
    .option('--filter <json>', 'e.g. {"category":"Audio","price":{"lte":100}}')
    .option('--no-rerank', 'recall only')
    .option('--json', 'print JSON')
    .action(async (query: string, flags: { dir?: string; store?: string; collection: string; recall?: string; recallK: string; keywordK?: string; topN: string; filter?: string; rerank: boolean; json?: boolean; reranker?: string; embedder?: string; threads?: string }) => {
      const store = storeOf(flags);
      if (flags.recall !== undefined && !RECALL_MODES.includes(flags.recall as RecallMode)) throw new UsageError(`--recall must be one of ${RECALL_MODES.join(', ')}`);
      let filter;
      try {
        filter = flags.filter ? JSON.parse(flags.filter) : undefined;
      } catch {
        throw new UsageError('--filter must be JSON');
      }
      const { embedder, reranker } = await loadModels(flags, { embedder: true, reranker: flags.rerank });
      const building = keywordBuildBar(io);
      const se = await SearchEngine.open({ store, embedder: embedder!, reranker, onKeywordIndexProgress: building.onKeywordIndexProgress });
      try {
        const r = await se.search(flags.collection, query, {
          recall: flags.recall as RecallMode | undefined,
          recallK: Number(flags.recallK),
          keywordK: flags.keywordK === undefined ? undefined : Number(flags.keywordK),
          topN: Number(flags.topN),
          filter,
          rerank: flags.rerank,
          explain: true,
        });
        if (flags.json) {
          io.stdout.write(JSON.stringify(r, null, 2) + '\n');
          return;
        }
        for (const h of r.results) {
          const title = String(h.fields.title_en ?? h.fields.title ?? h.fields.title_zh ?? h.id);
          io.stdout.write(`${h.score.toFixed(4)}  recall ${h.recallScore.toFixed(4)}  ${ranks(h)}  ${h.id}  ${title}\n`);
        }
        const t = r.timings;
        io.stdout.write(`${r.recall} recall: embed ${t.embedMs.toFixed(1)} ms, keyword ${t.keywordMs.toFixed(1)} ms, vector ${t.recallMs.toFixed(1)} ms, rerank ${t.rerankMs.toFixed(1)} ms, total ${t.totalMs.toFixed(1)} ms\n`);
      } finally {
        building.stop();
        await se.close();
        await Promise.all([embedder?.close(), reranker?.close()]);
      }
    });
}

/** A hit's place in each recall list: "keyword #1 vector #12" ("-" where a list does not hold it). */
function ranks(h: SearchHit): string {
  const e = h.explain?.recall;
  const at = (r: number | undefined) => (r === undefined ? '-' : `#${r}`);
  return `keyword ${at(e?.keywordRank)} vector ${at(e?.vectorRank)}`;
}
