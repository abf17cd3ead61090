/**
 * One JSON error shape for every route: { error: { code, message } } with the HTTP status that
 * fits the code. Messages say what to change. A 500 is a defect: the client gets no detail, and its
 * cause goes to the log at error level through `res.locals.log` (the request's logger, carrying its id).
 */
import type { NextFunction, Request, Response } from 'express';
import type { Logger } from 'pino';
import { QrankError, type QrankErrorCode } from '../errors';

export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

// Every QrankError code has its status (the compiler checks the table is complete); the 500s are
// failures of the server or its files, never of the request.
const STATUS: Record<QrankErrorCode, number> = {
  INVALID_INPUT: 400,
  MODEL_NOT_FOUND: 404,
  INDEX_NOT_FOUND: 404,
  COLLECTION_NOT_FOUND: 404,
  COLLECTION_EXISTS: 409,
  MODEL_MISMATCH: 409,
  INPUT_TOO_LARGE: 413,
  INPUT_TOO_LONG: 413,
  ABORTED: 499,
  UNSUPPORTED: 501,
  CLOSED: 503,
  STORE_UNAVAILABLE: 503,
  OUT_OF_MEMORY: 507,
  BAD_MODEL: 500,
  BAD_INDEX: 500,
  IO_ERROR: 500,
  CHECKSUM_MISMATCH: 500,
  ENGINE_FAILURE: 500,
  NATIVE_LOAD_FAILED: 500,
};

export function toHttpError(err: unknown): HttpError {
  if (err instanceof HttpError) return err;
  if (err instanceof QrankError) return new HttpError(STATUS[err.code], err.code, err.message);
  const e = err as { type?: string; status?: number; message?: string };
  // body-parser's errors (malformed JSON, too large, bad charset)
  if (e?.type === 'entity.too.large') return new HttpError(413, 'PAYLOAD_TOO_LARGE', 'the request body is larger than the server accepts');
  if (e?.type === 'entity.parse.failed') return new HttpError(400, 'INVALID_JSON', `the body is not valid JSON: ${e.message}`);
  if (e?.type === 'encoding.unsupported' || e?.type === 'charset.unsupported') {
    return new HttpError(415, 'UNSUPPORTED_ENCODING', 'send the body as UTF-8 JSON');
  }
  if (typeof e?.status === 'number' && e.status >= 400 && e.status < 500) return new HttpError(e.status, 'BAD_REQUEST', e.message ?? 'bad request');
  return new HttpError(500, 'INTERNAL', 'internal error');
}

export function sendError(res: Response, err: unknown): void {
  const h = toHttpError(err);
  if (h.status === 500) (res.locals.log as Logger | undefined)?.error({ err }, 'internal error');
  if (res.headersSent) return;
  res.status(h.status).json({ error: { code: h.code, message: h.message } });
}

// Express error middleware: the four-argument signature is how Express recognises it.
export function errorHandler(err: unknown, _req: Request, res: Response, _next: NextFunction): void {
  sendError(res, err);
}
