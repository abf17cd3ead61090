/**
 * What createApp hands to each group of routes: the guards every route shares (authentication,
 * the JSON body parser and its error counter, the route wrapper with its concurrency limit and
 * abort on disconnect or drain), the limits and the metrics. Route modules register on an express
 * app through it and hold no server state of their own.
 */
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import type { ServerLimits } from './limits';
import type { ServerMetrics } from './metrics';

export interface Ctx {
  signal: AbortSignal;
}

export type Handler = (req: Request, res: Response, ctx: Ctx) => Promise<void>;

export interface RouteKit {
  limits: ServerLimits;
  metrics: ServerMetrics;
  /** 401 unless the request carries one of the server's API keys (when it has any). */
  auth: (req: Request, res: Response, next: NextFunction) => void;
  /** The JSON body parser (size limit, UTF-8 checked). */
  json: RequestHandler;
  /** Counts a body over the size limit, then passes the error on. */
  onBodyError: (err: unknown, req: Request, res: Response, next: NextFunction) => void;
  /** Wraps a handler: concurrency limit (429), abort on disconnect or drain, one error shape. */
  route: (handler: Handler) => (req: Request, res: Response) => Promise<void>;
  /** 413 TOO_MANY_DOCUMENTS when `n` is more than the documents-per-request limit. */
  checkCount: (n: number, what: string) => void;
}
