/**
 * `qrank serve`: the HTTP server (lib/server) on the models named by flags or environment, else on
 * synthetic demo models (said plainly in the log). SIGTERM/SIGINT drain in-flight requests first.
 */
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import type { Command } from 'commander';
import pino from 'pino';
import { Embedder } from '../../embedder';
import { Reranker } from '../../reranker';
import { DEFAULT_LIMITS, createApp } from '../../server/app';
import type { CliIO } from '../main';
import { syntheticModel } from './demo';

interface ServeFlags {
  reranker?: string;
  embedder?: string;
  host: string;
  port: string;
  apiKey?: string[];
  cors?: string[];
  maxDocuments: string;
  maxBodyBytes: string;
  maxConcurrent: string;
  threads?: string;
}

const list = (value: string, previous: string[] = []) => [...previous, ...value.split(',').map((s) => s.trim()).filter(Boolean)];

export function registerServe(program: Command, io: CliIO): void {
  program
    .command('serve')
    .description('serve the rerank and embedding APIs (Cohere, Jina, TEI, vLLM, OpenAI shapes)')
    .option('--reranker <gguf>', 'reranker GGUF (env QRANK_RERANKER; default: a synthetic demo model)', process.env.QRANK_RERANKER)
    .option('--embedder <gguf>', 'embedding GGUF (env QRANK_EMBEDDER; default: a synthetic demo model)', process.env.QRANK_EMBEDDER)
    .option('--host <host>', 'address to listen on (env QRANK_HOST)', process.env.QRANK_HOST ?? '127.0.0.1')
    .option('--port <port>', 'port (env QRANK_PORT)', process.env.QRANK_PORT ?? '8080')
    .option('--api-key <keys>', 'require Authorization: Bearer <key> (repeatable or comma-separated; env QRANK_API_KEYS)', list, process.env.QRANK_API_KEYS ? list(process.env.QRANK_API_KEYS) : undefined)
    .option('--cors <origins>', 'allowed CORS origins (comma-separated; default none)', list)
    .option('--max-documents <n>', 'documents per request', String(DEFAULT_LIMITS.maxDocuments))
    .option('--max-body-bytes <n>', 'largest request body', String(DEFAULT_LIMITS.maxBodyBytes))
    .option('--max-concurrent <n>', 'requests served at once (more get 429)', String(DEFAULT_LIMITS.maxConcurrent))
    .option('--threads <n>', 'CPU threads per model (default: half the cores each)')
    .action(async (flags: ServeFlags) => {
      const log = pino({ level: process.env.QRANK_LOG_LEVEL ?? 'info' });
      const rerankerPath = flags.reranker ?? (await syntheticModel('reranker', io));
      const embedderPath = flags.embedder ?? (await syntheticModel('embedder', io));
      // two models share the cores: more threads than cores makes ggml's spinning workers crawl
      const threads = flags.threads ? Number(flags.threads) : Math.max(1, Math.floor(availableParallelism() / 2));
      const [reranker, embedder] = await Promise.all([
        Reranker.load({ model: rerankerPath, threads }),
        Embedder.load({ model: embedderPath, threads }),
      ]);
      if (reranker.info.synthetic || embedder.info.synthetic) {
        log.warn('serving SYNTHETIC models with random weights: scores and embeddings are meaningless; set QRANK_RERANKER and QRANK_EMBEDDER to real GGUFs');
      }
      const server = createApp({
        reranker,
        embedder,
        logger: log,
        version: JSON.parse(readFileSync(join(__dirname, '..', '..', '..', 'package.json'), 'utf8')).version,
        apiKeys: flags.apiKey,
        corsOrigins: flags.cors,
        limits: { maxDocuments: Number(flags.maxDocuments), maxBodyBytes: Number(flags.maxBodyBytes), maxConcurrent: Number(flags.maxConcurrent) },
      });
      const http = server.app.listen(Number(flags.port), flags.host, () => {
        const a = http.address();
        log.info({ address: typeof a === 'object' && a ? `http://${a.address}:${a.port}` : a }, 'qrank listening');
      });
      await new Promise<void>((resolve, reject) => {
        http.once('error', reject);
        const stop = (signal: string) => {
          log.info({ signal }, 'draining in-flight requests');
          server
            .drain(http)
            .then(() => Promise.all([reranker.close(), embedder.close()]))
            .then(() => resolve(), reject);
        };
        process.once('SIGTERM', () => stop('SIGTERM'));
        process.once('SIGINT', () => stop('SIGINT'));
      });
    });
}
