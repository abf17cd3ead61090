/**
 * `qrank eval`: retrieval quality on a BEIR-format set (corpus.jsonl, queries.jsonl, qrels/test.tsv):
 * nDCG@10, MRR@10 and Recall@K for the recall stage alone and for recall + rerank. nDCG uses the
 * grade itself as the gain, as trec_eval (and so BEIR's published figures) does.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Command } from 'commander';
import { readCorpus, readQrels, readQueries } from '../../eval/beir';
import { evaluate } from '../../eval/metrics';
import type { Mapping } from '../../search/collection';
import { SearchEngine } from '../../search/engine';
import type { CliIO } from '../io';
import { loadModels, progressBar, withModelOptions } from '../shared';

export interface EvalReport {
  dataset: string;
  queries: number;
  recallK: number;
  vectors: 'one' | 'per-language';
  recall: Record<string, number>;
  reranked?: Record<string, number>;
  synthetic: boolean;
}

/** Multilingual catalogs (title_en/zh/es) get every language in one text, or one vector per language. */
function mappingFor(sample: Record<string, unknown>, vectors: 'one' | 'per-language'): Mapping {
  const langs = ['en', 'zh', 'es'].filter((l) => `title_${l}` in sample);
  if (langs.length === 0) return { id: 'id', embed: '{title}\n{text}', rerank: '{title}\n{text}' };
  const perLang = langs.map((l) => `{title_${l}}\n{desc_${l}}`);
  return {
    id: 'id',
    embed: vectors === 'per-language' ? perLang : langs.map((l) => `{title_${l}}`).join(' | ') + '\n' + langs.map((l) => `{desc_${l}}`).join('\n'),
    rerank: perLang.join('\n'),
    numeric: ['price'],
  };
}

export async function runEval(options: { dataset: string; embedderPath?: string; rerankerPath?: string; recallK: number; vectors: 'one' | 'per-language'; threads?: number; onProgress?: (done: number, total: number) => void }): Promise<EvalReport> {
  const { embedder, reranker } = await loadModels({ embedder: options.embedderPath, reranker: options.rerankerPath, threads: options.threads ? String(options.threads) : undefined }, { embedder: true, reranker: false });
  const work = mkdtempSync(join(tmpdir(), 'qrank-eval-'));
  const se = await SearchEngine.open({ dir: work, embedder: embedder!, reranker });
  try {
    const records: Record<string, unknown>[] = [];
    for await (const d of readCorpus(options.dataset)) records.push({ id: d.id, title: d.title, text: d.text, ...d.metadata });
    const col = await se.collection('eval', { index: { kind: 'flat' } });
    await col.ingest(records, { mapping: mappingFor(records[0] ?? {}, options.vectors) });
    const queries = await readQueries(options.dataset);
    const qrels = await readQrels(options.dataset);
    const recallRun = new Map<string, string[]>();
    const rerankRun = new Map<string, string[]>();
    for (const [i, q] of queries.entries()) {
      const r1 = await se.search('eval', q.text, { recallK: options.recallK, topN: options.recallK, rerank: false });
      recallRun.set(q.id, r1.results.map((h) => h.id));
      if (reranker) {
        const r2 = await se.search('eval', q.text, { recallK: options.recallK, topN: options.recallK });
        rerankRun.set(q.id, r2.results.map((h) => h.id));
      }
      options.onProgress?.(i + 1, queries.length);
    }
    const ks = [...new Set([10, options.recallK])].sort((a, b) => a - b);
    const pick = (m: Record<string, number>) => Object.fromEntries(Object.entries(m).filter(([k]) => k === 'nDCG@10' || k === 'MRR@10' || k === `Recall@${options.recallK}`));
    const recall = evaluate(recallRun, qrels, { ks, gain: 'linear' });
    return {
      dataset: options.dataset,
      queries: recall.queries,
      recallK: options.recallK,
      vectors: options.vectors,
      recall: pick(recall.mean),
      ...(reranker ? { reranked: pick(evaluate(rerankRun, qrels, { ks, gain: 'linear' }).mean) } : {}),
      synthetic: Boolean(embedder!.info.synthetic || reranker?.info.synthetic),
    };
  } finally {
    await se.close();
    rmSync(work, { recursive: true, force: true });
    await Promise.all([embedder?.close(), reranker?.close()]);
  }
}

export function registerEval(program: Command, io: CliIO): void {
  withModelOptions(program.command('eval'), { reranker: 'optional', embedder: true })
    .description('nDCG@10, MRR@10 and Recall@K on a BEIR-format set, recall alone and recall + rerank')
    .requiredOption('--dataset <dir>', 'BEIR directory (e.g. eval/crossborder-shop)')
    .option('--recall-k <n>', 'candidates from the recall stage', '100')
    .option('--vectors <mode>', "'one' vector per product (all languages) or 'per-language'", 'one')
    .option('--json <file>', 'also write the report as JSON')
    .action(async (flags: { dataset: string; recallK: string; vectors: string; json?: string; reranker?: string; embedder?: string; threads?: string }) => {
      const bar = progressBar(io, 'queries');
      const report = await runEval({
        dataset: flags.dataset,
        embedderPath: flags.embedder,
        rerankerPath: flags.reranker,
        recallK: Number(flags.recallK),
        vectors: flags.vectors === 'per-language' ? 'per-language' : 'one',
        threads: flags.threads ? Number(flags.threads) : undefined,
        onProgress: (d, t) => bar.update(d, t),
      }).finally(() => bar.stop());
      if (report.synthetic) io.stdout.write('(synthetic models with random weights: these figures test the mechanics only)\n');
      const line = (name: string, m: Record<string, number>) =>
        `${name.padEnd(16)} ${Object.entries(m).map(([k, v]) => `${k} ${v.toFixed(4)}`).join('  ')}\n`;
      io.stdout.write(`${report.queries} judged queries, recall K = ${report.recallK}, ${report.vectors} vector(s) per product\n`);
      io.stdout.write(line('recall', report.recall));
      if (report.reranked) io.stdout.write(line('recall + rerank', report.reranked));
      if (flags.json) writeFileSync(flags.json, JSON.stringify(report, null, 2) + '\n');
    });
}
