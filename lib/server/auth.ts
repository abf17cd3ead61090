/**
 * API keys: checked when the server starts (none empty, none padded), compared in constant time,
 * and the middleware that asks for one as "Authorization: Bearer <key>".
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { NextFunction, Request, Response } from 'express';
import { invalid } from '../errors';
import { HttpError } from './http-errors';

/**
 * API keys must be a non-empty list of non-empty strings without surrounding whitespace: an empty
 * list or key would turn authentication off or let an empty token in, and a key with surrounding
 * whitespace could never match (the header's token is trimmed). INVALID_INPUT otherwise.
 */
export function checkApiKeys(keys: readonly unknown[]): asserts keys is string[] {
  if (keys.length === 0) throw invalid('the list of API keys is empty, which would turn authentication off; name at least one key, or none at all to serve without authentication');
  keys.forEach((k, i) => {
    if (typeof k !== 'string' || k.trim() === '') throw invalid(`API key ${i + 1} of ${keys.length} is empty, which would let an empty token in; name non-empty keys`);
    if (k.trim() !== k) throw invalid(`API key ${i + 1} of ${keys.length} starts or ends with whitespace, so no request could send it`);
  });
}

/**
 * Whether a presented token is one of `keys`, in a time that depends on neither: SHA-256 digests
 * (equal lengths) compared with timingSafeEqual, against every key.
 */
function keyMatcher(keys: string[]): (token: string) => boolean {
  const digest = (s: string) => createHash('sha256').update(s).digest();
  const wanted = keys.map(digest);
  return (token) => {
    const got = digest(token);
    let found = false;
    for (const w of wanted) found = timingSafeEqual(w, got) || found;
    return found;
  };
}

/** The middleware: without keys every request passes; with keys, only one that sends one of them. */
export function authMiddleware(keys: string[] | undefined): (req: Request, res: Response, next: NextFunction) => void {
  const isKey = keys && keyMatcher(keys);
  return (req, _res, next) => {
    if (!isKey) return next();
    const token = /^Bearer\s+(.*)$/i.exec(req.get('authorization') ?? '')?.[1].trim();
    if (!token || !isKey(token)) return next(new HttpError(401, 'UNAUTHORIZED', 'send a valid API key as "Authorization: Bearer <key>"'));
    next();
  };
}
