/**
 * One list of error codes: every code the native layer can report is in lib/errors.ts's
 * ERROR_CODES (so it reaches JavaScript as itself, not as ENGINE_FAILURE), and every code has an
 * HTTP status (the server's table is typed over the list).
 */
import { describe, expect, it } from 'vitest';
import { binding } from '../lib/native';
import { ERROR_CODES, QrankError, toQrankError } from '../lib/errors';
import { toHttpError } from '../lib/server/http-errors';

describe('error codes', () => {
  it('every native code is a QrankError code, kept as it is', () => {
    const native = binding().errorCodes();
    expect(native.length).toBeGreaterThanOrEqual(11);
    expect(new Set(native).size).toBe(native.length);
    for (const code of native) {
      expect(ERROR_CODES).toContain(code);
      const e = Object.assign(new Error('x'), { code });
      expect(toQrankError(e).code).toBe(code);
    }
  });

  it('every code has an HTTP status; the caller\'s mistakes are 4xx', () => {
    for (const code of ERROR_CODES) {
      const h = toHttpError(new QrankError(code, 'x'));
      expect(h.code).toBe(code);
      expect(h.status).toBeGreaterThanOrEqual(400);
    }
    for (const code of ['INVALID_INPUT', 'MODEL_NOT_FOUND', 'COLLECTION_NOT_FOUND', 'COLLECTION_EXISTS', 'INPUT_TOO_LARGE', 'INPUT_TOO_LONG'] as const) {
      expect(toHttpError(new QrankError(code, 'x')).status).toBeLessThan(500);
    }
  });
});
