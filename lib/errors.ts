/**
 * QrankError: every failure qrank reports, with a stable `code` that callers can switch on.
 * The native layer sets the same codes; `rethrow` keeps the caller's stack across the async hop.
 */
/**
 * Every code, once. The native codes (native/error.cc's error_code_name) are a subset, checked by
 * test/errors.test.ts against the addon's own list; the others are the TypeScript layer's.
 */
export const ERROR_CODES = [
  'MODEL_NOT_FOUND',
  'BAD_MODEL',
  'INVALID_INPUT',
  'CLOSED',
  'ABORTED',
  'OUT_OF_MEMORY',
  'UNSUPPORTED',
  'INDEX_NOT_FOUND',
  'BAD_INDEX',
  'IO_ERROR',
  'INPUT_TOO_LONG',
  'MODEL_MISMATCH',
  'COLLECTION_NOT_FOUND',
  'COLLECTION_EXISTS',
  'CHECKSUM_MISMATCH',
  'INPUT_TOO_LARGE',
  'STORE_UNAVAILABLE',
  'ENGINE_FAILURE',
  'NATIVE_LOAD_FAILED',
] as const;

export type QrankErrorCode = (typeof ERROR_CODES)[number];

const CODES = new Set<string>(ERROR_CODES);

export class QrankError extends Error {
  readonly code: QrankErrorCode;

  constructor(code: QrankErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'QrankError';
    this.code = code;
  }
}

/** The caller's stack, captured before work goes off the JS thread (sharp's trick). */
export function callerStack(): string {
  const holder: { stack?: string } = {};
  Error.captureStackTrace(holder, callerStack);
  return holder.stack ?? '';
}

/** Turns anything the native layer threw into a QrankError carrying `stack` from the call site. */
export function toQrankError(err: unknown, stack?: string): QrankError {
  let out: QrankError;
  if (err instanceof QrankError) {
    out = err;
  } else if (err instanceof Error) {
    const code = (err as Error & { code?: string }).code;
    out = new QrankError(code && CODES.has(code) ? (code as QrankErrorCode) : 'ENGINE_FAILURE', err.message, { cause: err });
  } else {
    out = new QrankError('ENGINE_FAILURE', String(err));
  }
  if (stack) out.stack = `${out.name} [${out.code}]: ${out.message}\n${stack.split('\n').slice(1).join('\n')}`;
  return out;
}

export function invalid(message: string): QrankError {
  return new QrankError('INVALID_INPUT', message);
}
