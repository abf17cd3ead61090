/**
 * Input checks shared by the typed API. Option objects are described with zod (clear messages
 * that name the field and the accepted range); the per-text checks on large arrays are plain loops,
 * since they run over up to tens of thousands of strings per call.
 */
import { z } from 'zod';
import { invalid } from './errors';

export const LONE_SURROGATE = /\p{Cs}/u;

/** Parses `value` with `schema`, or throws INVALID_INPUT naming the first wrong field. */
export function parseOptions<T extends z.ZodType>(schema: T, value: unknown, what: string): z.infer<T> {
  const result = schema.safeParse(value ?? {});
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  const field = issue.path.length > 0 ? `${what}.${issue.path.join('.')}` : what;
  throw invalid(`${field}: ${issue.message}`);
}

export function checkText(value: unknown, name: string, { allowEmpty }: { allowEmpty: boolean }): string {
  if (typeof value !== 'string') throw invalid(`${name} must be a string, got ${describe(value)}`);
  if (!allowEmpty && value.trim().length === 0) throw invalid(`${name} must not be empty`);
  if (LONE_SURROGATE.test(value)) {
    throw invalid(`${name} is not valid Unicode: it contains a lone surrogate (a broken UTF-16 pair)`);
  }
  return value;
}

export function checkTexts(value: unknown, name: string): string[] {
  if (!Array.isArray(value)) throw invalid(`${name} must be an array of strings, got ${describe(value)}`);
  for (let i = 0; i < value.length; i++) checkText(value[i], `${name}[${i}]`, { allowEmpty: true });
  return value as string[];
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value;
}

export const positiveInt = z.number().int().positive();
const INT32_MAX = 2 ** 31 - 1;
/** A string option (an instruction) that holds no lone surrogate. */
export const unicodeString = z.string().refine((s) => !LONE_SURROGATE.test(s), 'is not valid Unicode (a lone surrogate)');

/**
 * The per-input token limit of rerank, score and embed, applied by the core as it tokenises:
 * `maxInputTokens` of each document's own tokens (of each text's beyond its template), longer ones
 * cut there, or refused with INPUT_TOO_LONG naming the first when `truncate` is false (which also
 * refuses what the model's context would cut).
 */
export const inputLimitShape = { maxInputTokens: positiveInt.max(1_000_000_000).optional(), truncate: z.boolean().optional() };

export const signalSchema = z.custom<AbortSignal>((v) => v instanceof AbortSignal, { message: 'must be an AbortSignal' });
export const deviceSchema = z.enum(['auto', 'cpu', 'cuda']);

export const loadOptionsSchema = z
  .object({
    model: z.string().min(1, 'must name a GGUF file'),
    device: deviceSchema.default('auto'),
    deviceIndex: z.number().int().nonnegative().max(INT32_MAX).optional(),
    // each engine checks these against its own limits (info.limits) and names them when exceeded
    maxLength: positiveInt.max(INT32_MAX).optional(),
    batchTokens: positiveInt.max(INT32_MAX).optional(),
    maxSequences: positiveInt.max(INT32_MAX).optional(),
    threads: positiveInt.max(1024).optional(),
    signal: signalSchema.optional(),
    onProgress: z.custom<(progress: number) => void>((v) => typeof v === 'function', { message: 'must be a function' }).optional(),
  })
  .strict();
