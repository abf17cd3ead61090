/**
 * Reranker: cross-encoder relevance scores. Qwen3-Reranker GGUFs (rank-converted or plain causal)
 * follow the official recipe: score = P(yes) from the yes/no logits of the last token. Other
 * rank-pooling GGUFs (bge-reranker-v2-m3, jina rerankers) are scored as their model cards say.
 */
import { z } from 'zod';
import { callerStack, invalid } from './errors';
import type { NativeOutcome } from './native';
import { type LoadOptions, ModelHandle, loadNative } from './model-handle';
import { checkText, checkTexts, inputLimitShape, parseOptions, positiveInt, signalSchema, unicodeString } from './validate';

export interface RerankOptions {
  /** Keep only the best N results (default: all). */
  topN?: number;
  /** The task description; default: the model's own ("Given a web search query, ..."). */
  instruction?: string;
  /** Include each document's text in its result. */
  returnDocuments?: boolean;
  /** Each document's own tokens at most (longer ones are cut there); default: what the context leaves. */
  maxInputTokens?: number;
  /** false: a document that would be cut (by maxInputTokens or the context) fails the call with INPUT_TOO_LONG. */
  truncate?: boolean;
  signal?: AbortSignal;
}

export interface RerankResult {
  /** Position of the document in the input list. */
  index: number;
  /** Relevance in [0, 1]. */
  score: number;
  /** The relevance logit from the engine (score = sigmoid(logit)): unbounded, where the score saturates at 0 or 1. */
  logit: number;
  document?: string;
}

export interface ScoreOptions {
  instruction?: string;
  /** As in RerankOptions. */
  maxInputTokens?: number;
  truncate?: boolean;
  signal?: AbortSignal;
}

export interface Pair {
  query: string;
  document: string;
}

export interface RerankUsage {
  /** Tokens scored, templates included, after truncation. */
  tokens: number;
  /** Documents cut (to fit maxLength, or to maxInputTokens). */
  truncated: number;
}

const scoreOptionsSchema = z.object({ instruction: unicodeString.optional(), ...inputLimitShape, signal: signalSchema.optional() }).strict();
const rerankOptionsSchema = scoreOptionsSchema.extend({ topN: positiveInt.optional(), returnDocuments: z.boolean().optional() }).strict();

export class Reranker extends ModelHandle {
  static async load(options: LoadOptions): Promise<Reranker> {
    return new Reranker(await loadNative(options, 'reranker', callerStack()));
  }

  /** Scores every document against the query; results sorted by score, best first. */
  async rerank(query: string, documents: readonly string[], options: RerankOptions = {}): Promise<RerankResult[]> {
    return (await this.rerankWithUsage(query, documents, options)).results;
  }

  /** rerank(), plus the tokens it scored (for usage reporting). */
  async rerankWithUsage(query: string, documents: readonly string[], options: RerankOptions = {}): Promise<{ results: RerankResult[]; usage: RerankUsage }> {
    const stack = callerStack();
    checkText(query, 'query', { allowEmpty: false });
    const docs = checkTexts(documents, 'documents');
    const o = parseOptions(rerankOptionsSchema, options, 'options');
    if (docs.length === 0) return { results: [], usage: { tokens: 0, truncated: 0 } };
    const out = await this.run((cb) => this.native.score([query], docs, o.instruction ?? '', o.maxInputTokens ?? 0, o.truncate ?? true, cb), o.signal, stack);
    const logits = out.logits!;
    const results: RerankResult[] = Array.from(out.values, (score, index) =>
      o.returnDocuments ? { index, score, logit: logits[index], document: docs[index] } : { index, score, logit: logits[index] },
    );
    results.sort((a, b) => b.score - a.score || a.index - b.index);
    if (o.topN !== undefined && o.topN < results.length) results.length = o.topN;
    return { results, usage: usageOf(out) };
  }

  /** Relevance of each (query, document) pair, in input order. */
  async score(pairs: readonly Pair[], options: ScoreOptions = {}): Promise<number[]> {
    return (await this.scoreWithUsage(pairs, options)).scores;
  }

  /** score(), plus the tokens it scored (for usage reporting). */
  async scoreWithUsage(pairs: readonly Pair[], options: ScoreOptions = {}): Promise<{ scores: number[]; usage: RerankUsage }> {
    const stack = callerStack();
    if (!Array.isArray(pairs)) throw invalid('pairs must be an array of { query, document }');
    const o = parseOptions(scoreOptionsSchema, options, 'options');
    const queries: string[] = new Array(pairs.length);
    const documents: string[] = new Array(pairs.length);
    pairs.forEach((pair, i) => {
      if (typeof pair !== 'object' || pair === null) throw invalid(`pairs[${i}] must be an object { query, document }`);
      queries[i] = checkText(pair.query, `pairs[${i}].query`, { allowEmpty: false });
      documents[i] = checkText(pair.document, `pairs[${i}].document`, { allowEmpty: true });
    });
    if (pairs.length === 0) return { scores: [], usage: { tokens: 0, truncated: 0 } };
    const out = await this.run((cb) => this.native.score(queries, documents, o.instruction ?? '', o.maxInputTokens ?? 0, o.truncate ?? true, cb), o.signal, stack);
    return { scores: Array.from(out.values), usage: usageOf(out) };
  }

  /** The exact prompt of one pair: its text and the token ids that are scored. */
  formatPair(query: string, document: string, options: { instruction?: string } = {}): { text: string; tokens: number[] } {
    checkText(query, 'query', { allowEmpty: false });
    checkText(document, 'document', { allowEmpty: true });
    const f = this.guardSync(() => this.native.formatPair(query, document, options.instruction ?? ''));
    return { text: f.text, tokens: Array.from(f.tokens) };
  }
}

function usageOf(out: NativeOutcome): RerankUsage {
  return { tokens: out.tokenCounts.reduce((a, b) => a + b, 0), truncated: out.truncated };
}
