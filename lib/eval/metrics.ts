/**
 * Ranking metrics for one query (a ranking of doc ids, best first, and that query's graded
 * judgements) and their mean over a run. Docs absent from the judgements count as grade 0, and
 * grade 0 (or below) is judged non-relevant. A doc id repeated in a ranking counts once, at its
 * first position, so a run cannot inflate recall or nDCG by listing a relevant doc twice.
 */
import { invalid } from '../errors';
import type { Qrels } from './beir';

/** doc id -> grade, for one query. */
export type Judgements = ReadonlyMap<string, number>;

/**
 * How a grade becomes gain in nDCG. 'exponential' is 2^grade - 1 (Burges et al., the learning-to-rank
 * convention); 'linear' is the grade itself, which is what trec_eval / pytrec_eval (and so BEIR's and
 * MTEB's published nDCG) use. Both agree on binary judgements.
 */
export type GainKind = 'exponential' | 'linear';

export interface EvaluateOptions {
  /** Cutoffs; every metric is reported at each. */
  ks: number[];
  /** Lowest grade that counts as relevant for MRR, recall and precision (default 1). */
  minGrade?: number;
  /** nDCG gain (default 'exponential'). */
  gain?: GainKind;
}

export interface EvaluateResult {
  /** query id -> metric name ('nDCG@10', 'MRR@10', 'Recall@100', 'P@10') -> value. */
  perQuery: Record<string, Record<string, number>>;
  /** Mean of each metric over the evaluated queries (NaN when there are none). */
  mean: Record<string, number>;
  /** How many queries were evaluated: those with at least one doc at minGrade or above. */
  queries: number;
}

function checkK(k: number): void {
  if (!Number.isInteger(k) || k < 1) throw invalid(`k must be a positive integer, got ${k}`);
}

function checkMinGrade(minGrade: number): void {
  // At 0 or below every unjudged doc would count as relevant.
  if (!Number.isFinite(minGrade) || minGrade <= 0) throw invalid(`minGrade must be > 0, got ${minGrade}`);
}

/** The first k distinct ids of a ranking. */
function topK(ranking: readonly string[], k: number): string[] {
  const seen = new Set<string>();
  const out: string[] = [];
  for (const id of ranking) {
    if (out.length === k) break;
    if (seen.has(id)) continue;
    seen.add(id);
    out.push(id);
  }
  return out;
}

function gradeOf(judged: Judgements, id: string): number {
  return judged.get(id) ?? 0;
}

function gainOf(grade: number, kind: GainKind): number {
  // Negative grades (TREC's "spam" -1 and the like) are non-relevant, not a penalty.
  if (grade <= 0) return 0;
  return kind === 'linear' ? grade : 2 ** grade - 1;
}

/** DCG of grades in rank order: the doc at rank r (1-based) is discounted by log2(r + 1). */
function dcg(grades: readonly number[], kind: GainKind): number {
  let sum = 0;
  for (let i = 0; i < grades.length; i++) sum += gainOf(grades[i], kind) / Math.log2(i + 2);
  return sum;
}

function countRelevant(judged: Judgements, minGrade: number): number {
  let n = 0;
  for (const grade of judged.values()) if (grade >= minGrade) n++;
  return n;
}

function hitsInTopK(ranking: readonly string[], judged: Judgements, k: number, minGrade: number): number {
  return topK(ranking, k).filter((id) => gradeOf(judged, id) >= minGrade).length;
}

/**
 * nDCG@k: DCG of the top k over the ideal DCG (all judged grades sorted descending, cut at k).
 * 0 when the query has no positive judgement, since no ranking can gain anything.
 */
export function ndcgAtK(ranking: readonly string[], judged: Judgements, k: number, gain: GainKind = 'exponential'): number {
  checkK(k);
  const ideal = [...judged.values()].filter((g) => g > 0).sort((a, b) => b - a).slice(0, k);
  const idealDcg = dcg(ideal, gain);
  if (idealDcg === 0) return 0;
  const actual = topK(ranking, k).map((id) => gradeOf(judged, id));
  return dcg(actual, gain) / idealDcg;
}

/** MRR@k: 1 / rank of the first doc with grade >= minGrade in the top k, else 0. */
export function mrrAtK(ranking: readonly string[], judged: Judgements, k: number, minGrade = 1): number {
  checkK(k);
  checkMinGrade(minGrade);
  const rank = topK(ranking, k).findIndex((id) => gradeOf(judged, id) >= minGrade);
  return rank < 0 ? 0 : 1 / (rank + 1);
}

/**
 * Recall@k: the share of the docs with grade >= minGrade that appear in the top k. NaN when the
 * query has none: recall is undefined there, and NaN keeps a caller from averaging a fake 0 or 1.
 */
export function recallAtK(ranking: readonly string[], judged: Judgements, k: number, minGrade = 1): number {
  checkK(k);
  checkMinGrade(minGrade);
  const relevant = countRelevant(judged, minGrade);
  if (relevant === 0) return Number.NaN;
  return hitsInTopK(ranking, judged, k, minGrade) / relevant;
}

/** P@k: relevant docs in the top k over k (over k even when fewer were ranked, as trec_eval does). */
export function precisionAtK(ranking: readonly string[], judged: Judgements, k: number, minGrade = 1): number {
  checkK(k);
  checkMinGrade(minGrade);
  return hitsInTopK(ranking, judged, k, minGrade) / k;
}

type MetricFn = (ranking: readonly string[], judged: Judgements, k: number, minGrade: number, gain: GainKind) => number;

/** Reported metrics, in printing order; each is computed at every cutoff. */
const METRICS: ReadonlyArray<readonly [string, MetricFn]> = [
  ['nDCG', (ranking, judged, k, _minGrade, gain) => ndcgAtK(ranking, judged, k, gain)],
  ['MRR', (ranking, judged, k, minGrade) => mrrAtK(ranking, judged, k, minGrade)],
  ['Recall', (ranking, judged, k, minGrade) => recallAtK(ranking, judged, k, minGrade)],
  ['P', (ranking, judged, k, minGrade) => precisionAtK(ranking, judged, k, minGrade)],
];

function scoreQuery(ranking: readonly string[], judged: Judgements, ks: readonly number[], minGrade: number, gain: GainKind): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [name, fn] of METRICS) for (const k of ks) out[`${name}@${k}`] = fn(ranking, judged, k, minGrade, gain);
  return out;
}

function normaliseKs(ks: readonly number[]): number[] {
  if (ks.length === 0) throw invalid('ks must list at least one cutoff');
  ks.forEach(checkK);
  return [...new Set(ks)].sort((a, b) => a - b);
}

/**
 * Scores a run against qrels. The queries are those of the qrels with at least one doc at minGrade
 * or above (the rest have nothing to find, so any score would be noise). A judged query the run
 * left out scores as an empty ranking, i.e. 0, so dropping hard queries cannot raise the mean.
 * Run entries for queries without judgements are ignored.
 */
export function evaluate(
  run: ReadonlyMap<string, readonly string[]>,
  qrels: Qrels | ReadonlyMap<string, Judgements>,
  options: EvaluateOptions,
): EvaluateResult {
  const ks = normaliseKs(options.ks);
  const minGrade = options.minGrade ?? 1;
  checkMinGrade(minGrade);
  const gain = options.gain ?? 'exponential';

  const perQuery: Record<string, Record<string, number>> = {};
  const sums: Record<string, number> = {};
  let queries = 0;
  for (const [qid, judged] of qrels) {
    if (countRelevant(judged, minGrade) === 0) continue;
    const scores = scoreQuery(run.get(qid) ?? [], judged, ks, minGrade, gain);
    perQuery[qid] = scores;
    for (const [name, value] of Object.entries(scores)) sums[name] = (sums[name] ?? 0) + value;
    queries++;
  }

  // Every name is present even when no query qualified (as NaN), so a report table keeps its shape.
  const mean: Record<string, number> = {};
  for (const [name] of METRICS) {
    for (const k of ks) mean[`${name}@${k}`] = queries === 0 ? Number.NaN : sums[`${name}@${k}`] / queries;
  }
  return { perQuery, mean, queries };
}
