/**
 * Embedder: one L2-normalised vector per text. Qwen3-Embedding GGUFs follow the official recipe
 * (queries carry the task instruction, EOS appended, last-token pooling); other embedding GGUFs use
 * the pooling their file declares. `dimensions` truncates (Matryoshka) and renormalises.
 */
import { z } from 'zod';
import { callerStack, invalid } from './errors';
import { type LoadOptions, ModelHandle, loadNative } from './model-handle';
import { checkText, checkTexts, inputLimitShape, parseOptions, positiveInt, signalSchema, unicodeString } from './validate';

export type TextKind = 'query' | 'document';

export interface EmbedOptions {
  /** 'query' texts get the task instruction; 'document' texts are embedded as they are. */
  kind: TextKind;
  /** The task description for queries; default: the model's own. */
  instruction?: string;
  /** Keep the first N dimensions (Matryoshka), renormalised. */
  dimensions?: number;
  /** Each text's tokens beyond its template at most (longer ones are cut there); default: what the context leaves. */
  maxInputTokens?: number;
  /** false: a text that would be cut (by maxInputTokens or the context) fails the call with INPUT_TOO_LONG. */
  truncate?: boolean;
  signal?: AbortSignal;
}

const embedOptionsSchema = z
  .object({
    kind: z.enum(['query', 'document']),
    instruction: unicodeString.optional(),
    dimensions: positiveInt.optional(),
    ...inputLimitShape,
    signal: signalSchema.optional(),
  })
  .strict();

export class Embedder extends ModelHandle {
  static async load(options: LoadOptions): Promise<Embedder> {
    return new Embedder(await loadNative(options, 'embedder', callerStack()));
  }

  /** Embeddings of `texts`, in input order. */
  async embed(texts: readonly string[], options: EmbedOptions): Promise<Float32Array[]> {
    return (await this.embedWithUsage(texts, options)).embeddings;
  }

  /** embed(), plus the tokens it embedded (for usage reporting). */
  async embedWithUsage(texts: readonly string[], options: EmbedOptions): Promise<{ embeddings: Float32Array[]; usage: { tokens: number; truncated: number } }> {
    const stack = callerStack();
    const list = checkTexts(texts, 'texts');
    const o = parseOptions(embedOptionsSchema, options, 'options');
    if (o.dimensions !== undefined && o.dimensions > this.info.embeddingLength) {
      throw invalid(`options.dimensions: ${o.dimensions} is more than the model's ${this.info.embeddingLength} dimensions`);
    }
    if (list.length === 0) return { embeddings: [], usage: { tokens: 0, truncated: 0 } };
    const out = await this.run((cb) => this.native.embed(list, o.kind, o.instruction ?? '', o.dimensions ?? 0, o.maxInputTokens ?? 0, o.truncate ?? true, cb), o.signal, stack);
    const embeddings = Array.from({ length: list.length }, (_, i) => out.values.slice(i * out.width, (i + 1) * out.width));
    return { embeddings, usage: { tokens: out.tokenCounts.reduce((a, b) => a + b, 0), truncated: out.truncated } };
  }

  /** The exact input of one text: its prompt text and token ids. */
  formatText(text: string, options: { kind: TextKind; instruction?: string }): { text: string; tokens: number[] } {
    checkText(text, 'text', { allowEmpty: true });
    const f = this.guardSync(() => this.native.formatText(text, options.kind, options.instruction ?? ''));
    return { text: f.text, tokens: Array.from(f.tokens) };
  }
}
