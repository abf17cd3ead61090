/**
 * The server's limits: what one request may hold and how long a connection may take. Each has a
 * flag, an environment variable and a config key in `qrank serve`; over a limit, a request is
 * answered 413 or 429 (or its connection closed), never queued without bound.
 */
export interface ServerLimits {
  /** Largest accepted request body (bytes). */
  maxBodyBytes: number;
  /** Most documents (or texts, or inputs) in one request. */
  maxDocuments: number;
  /**
   * Tokens per document (rerank) or input (embeddings); longer ones are cut, or refused with 413
   * when the request says `truncate: false`. Undefined: the model's context decides.
   */
  maxTokensPerDocument?: number;
  /** Requests served at once; more get 429. */
  maxConcurrent: number;
  /** Largest streamed upload of products (NDJSON or CSV body), read as it arrives. */
  maxUploadBytes: number;
  /** Time a client has to send its request line and headers (the connection is closed after it). */
  headersTimeoutMs: number;
  /**
   * Time a client has to send its whole request, body included. An upload is read as fast as it is
   * ingested, so this bounds its ingestion too: the default fits maxUploadBytes at 75 KB/s.
   */
  requestTimeoutMs: number;
  /** Time an idle kept-alive connection stays open. */
  keepAliveTimeoutMs: number;
}

export const DEFAULT_LIMITS: ServerLimits = {
  maxBodyBytes: 2 << 20,
  maxDocuments: 1000,
  maxConcurrent: 64,
  maxUploadBytes: 256 << 20,
  headersTimeoutMs: 30_000,
  requestTimeoutMs: 3_600_000,
  keepAliveTimeoutMs: 5_000,
};
