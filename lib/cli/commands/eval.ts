/**
 * `qrank eval`: retrieval quality on a BEIR-format set (corpus.jsonl, queries.jsonl, qrels/test.tsv):
 * nDCG@10, MRR@10 and Recall@K for the recall stage alone and for recall + rerank, overall and per
 * query group (the queries' metadata `lang`, `kind` and `set`). nDCG uses the grade itself as the
 * gain, as trec_eval (and so BEIR's published figures) does; a grade of 1 or more is relevant.
 * `--recall` chooses the recall (hybrid, vector or keyword; the default is hybrid, as for search).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Command } from 'commander';
import { type BeirQuery, readCorpus, readQrels, readQueries } from '../../eval/beir';
import { evaluate } from '../../eval/metrics';
import type { Mapping } from '../../search/collection';
import { RECALL_MODES, type RecallMode, SearchEngine } from '../../search/engine';
import { type CliIO, UsageError } from '../io';
import { loadModels, progressBar, withModelOptions } from '../shared';

/** The metrics of one stage: name ('nDCG@10', 'MRR@10', 'Recall@K') -> mean over the queries. */
type Metrics = Record<string, number>;

/** The metrics of the queries whose metadata holds one value of a field. */
export interface EvalGroup {
  queries: number;
  recall: Metrics;
  reranked?: Metrics;
}

export interface EvalReport {
  dataset: string;
  queries: number;
  recallK: number;
  /** The recall asked for (undefined: the search's default). */
  recallMode?: RecallMode;
  vectors: 'one' | 'per-language';
  recall: Metrics;
  reranked?: Metrics;
  /** Metadata field ('lang', 'kind', 'set') -> value -> that group's metrics. */
  groups: Record<string, Record<string, EvalGroup>>;
  synthetic: boolean;
}

const GROUP_FIELDS = ['lang', 'kind', 'set'];

/**
 * Multilingual catalogs (title_en/zh/es) get every language in one text, or one vector per
 * language; their keyword index weighs the SKU and brand, then titles, then descriptions.
 */
function mappingFor(sample: Record<string, unknown>, vectors: 'one' | 'per-language'): Mapping {
  const langs = ['en', 'zh', 'es'].filter((l) => `title_${l}` in sample);
  if (langs.length === 0) return { id: 'id', embed: '{title}\n{text}', rerank: '{title}\n{text}' };
  const perLang = langs.map((l) => `{title_${l}}\n{desc_${l}}`);
  const codes = ['sku', 'brand'].filter((f) => f in sample).map((f) => `{${f}}`);
  return {
    id: 'id',
    embed: vectors === 'per-language' ? perLang : langs.map((l) => `{title_${l}}`).join(' | ') + '\n' + langs.map((l) => `{desc_${l}}`).join('\n'),
    rerank: [...(codes.length ? [codes.join(' | ')] : []), ...perLang].join('\n'),
    numeric: ['price'],
    keyword: [
      ...(codes.length ? [{ template: codes.join(' | '), weight: 4 }] : []),
      { template: langs.map((l) => `{title_${l}}`).join(' | '), weight: 2 },
      { template: langs.map((l) => `{desc_${l}}`).join(' | '), weight: 1 },
    ],
  };
}

export async function runEval(options: {
  dataset: string;
  embedderPath?: string;
  rerankerPath?: string;
  recallK: number;
  recall?: RecallMode;
  /** Recall@ cutoffs reported (default [recallK]). */
  recallAt?: number[];
  vectors: 'one' | 'per-language';
  threads?: number;
  onProgress?: (done: number, total: number) => void;
}): Promise<EvalReport> {
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
    const search = { recall: options.recall, recallK: options.recallK, topN: options.recallK };
    for (const [i, q] of queries.entries()) {
      const r1 = await se.search('eval', q.text, { ...search, rerank: false });
      recallRun.set(q.id, r1.results.map((h) => h.id));
      if (reranker) {
        const r2 = await se.search('eval', q.text, search);
        rerankRun.set(q.id, r2.results.map((h) => h.id));
      }
      options.onProgress?.(i + 1, queries.length);
    }
    const recallAt = options.recallAt ?? [options.recallK];
    const ks = [...new Set([10, ...recallAt])].sort((a, b) => a - b);
    const names = new Set(['nDCG@10', 'MRR@10', ...recallAt.map((k) => `Recall@${k}`)]);
    const recall = evaluate(recallRun, qrels, { ks, gain: 'linear' });
    const reranked = reranker ? evaluate(rerankRun, qrels, { ks, gain: 'linear' }) : undefined;
    const meanOf = (perQuery: Record<string, Metrics>, ids: string[]): Metrics =>
      Object.fromEntries([...names].map((m) => [m, ids.reduce((s, id) => s + perQuery[id][m], 0) / ids.length]));
    const pick = (m: Metrics) => Object.fromEntries(Object.entries(m).filter(([k]) => names.has(k)));
    return {
      dataset: options.dataset,
      queries: recall.queries,
      recallK: options.recallK,
      ...(options.recall ? { recallMode: options.recall } : {}),
      vectors: options.vectors,
      recall: pick(recall.mean),
      ...(reranked ? { reranked: pick(reranked.mean) } : {}),
      groups: groupsOf(queries, recall.perQuery, (ids) => ({ queries: ids.length, recall: meanOf(recall.perQuery, ids), ...(reranked ? { reranked: meanOf(reranked.perQuery, ids) } : {}) })),
      synthetic: Boolean(embedder!.info.synthetic || reranker?.info.synthetic),
    };
  } finally {
    await se.close();
    rmSync(work, { recursive: true, force: true });
    await Promise.all([embedder?.close(), reranker?.close()]);
  }
}

/** The evaluated queries (those in `perQuery`) grouped by each of GROUP_FIELDS ('none' where a query lacks the field), each group summarised by `summary`. */
function groupsOf(queries: BeirQuery[], perQuery: Record<string, unknown>, summary: (ids: string[]) => EvalGroup): EvalReport['groups'] {
  const out: EvalReport['groups'] = {};
  for (const field of GROUP_FIELDS) {
    const byValue = new Map<string, string[]>();
    for (const q of queries) {
      const v = q.metadata[field] ?? 'none';
      if (typeof v !== 'string' || !(q.id in perQuery)) continue;
      byValue.set(v, [...(byValue.get(v) ?? []), q.id]);
    }
    if (byValue.size) out[field] = Object.fromEntries([...byValue].sort().map(([v, ids]) => [v, summary(ids)]));
  }
  return out;
}

export function registerEval(program: Command, io: CliIO): void {
  withModelOptions(program.command('eval'), { reranker: 'optional', embedder: true })
    .description('nDCG@10, MRR@10 and Recall@K on a BEIR-format set, recall alone and recall + rerank, overall and per query language')
    .requiredOption('--dataset <dir>', 'BEIR directory (e.g. eval/crossborder-shop)')
    .option('--recall-k <n>', 'candidates from the recall stage', '100')
    .option('--recall <mode>', `${RECALL_MODES.join(', ')} (default: hybrid)`)
    .option('--vectors <mode>', "'one' vector per product (all languages) or 'per-language'", 'one')
    .option('--json <file>', 'also write the report as JSON (with groups per query kind and set)')
    .action(async (flags: { dataset: string; recallK: string; recall?: string; vectors: string; json?: string; reranker?: string; embedder?: string; threads?: string }) => {
      if (flags.recall !== undefined && !RECALL_MODES.includes(flags.recall as RecallMode)) throw new UsageError(`--recall must be one of ${RECALL_MODES.join(', ')}`);
      const bar = progressBar(io, 'queries');
      const report = await runEval({
        dataset: flags.dataset,
        embedderPath: flags.embedder,
        rerankerPath: flags.reranker,
        recallK: Number(flags.recallK),
        recall: flags.recall as RecallMode | undefined,
        vectors: flags.vectors === 'per-language' ? 'per-language' : 'one',
        threads: flags.threads ? Number(flags.threads) : undefined,
        onProgress: (d, t) => bar.update(d, t),
      }).finally(() => bar.stop());
      if (report.synthetic) io.stdout.write('(synthetic models with random weights: these figures test the mechanics only)\n');
      const line = (name: string, m: Metrics) => `${name.padEnd(16)} ${Object.entries(m).map(([k, v]) => `${k} ${v.toFixed(4)}`).join('  ')}\n`;
      io.stdout.write(`${report.queries} judged queries, ${report.recallMode ?? 'default'} recall, recall K = ${report.recallK}, ${report.vectors} vector(s) per product\n`);
      io.stdout.write(line('recall', report.recall));
      if (report.reranked) io.stdout.write(line('recall + rerank', report.reranked));
      for (const [lang, g] of Object.entries(report.groups.lang ?? {})) io.stdout.write(line(`recall, ${lang} (${g.queries})`, g.recall));
      if (flags.json) writeFileSync(flags.json, JSON.stringify(report, null, 2) + '\n');
    });
}
