/**
 * `qrank serve`: the HTTP APIs, the collections and search API and the web UI, on the models named
 * by flags, environment or config file, else on synthetic demo models (said plainly in the log and
 * on the page). `--demo` also fills a 'demo' collection with the shipped multilingual catalog on
 * first start; that is what `npm start` runs. SIGTERM/SIGINT drain in-flight requests first.
 */
import { readFileSync } from 'node:fs';
import { homedir, availableParallelism } from 'node:os';
import { join } from 'node:path';
import type { Command } from 'commander';
import pino from 'pino';
import { ensureDemoCollection } from '../../search/demo-catalog';
import { collectionsUnsupported } from '../../search/collection';
import { SearchEngine } from '../../search/engine';
import { isPostgresUrl } from '../../search/store';
import { createApp } from '../../server/app';
import { checkApiKeys } from '../../server/auth';
import { DEFAULT_LIMITS } from '../../server/limits';
import { type CliIO, UsageError } from '../io';
import { envOption, keywordBuildLog, loadModelPair, optionSources, storeOption } from '../shared';

interface ServeFlags {
  reranker?: string;
  embedder?: string;
  host: string;
  port: string;
  /** As given (see listOf). */
  apiKey?: unknown;
  cors?: unknown;
  data: string;
  store?: string;
  demo?: boolean;
  ui: boolean;
  maxDocuments: string;
  maxBodyBytes: string;
  maxConcurrent: string;
  maxUploadBytes: string;
  maxTokensPerDoc?: string;
  headersTimeoutMs: string;
  requestTimeoutMs: string;
  keepAliveTimeoutMs: string;
  threads?: string;
  printConfig?: boolean;
}

const collect = (value: string, previous: string[] = []) => [...previous, value];

/**
 * A list option as given: repeated flags, an environment variable, or from the config file a string
 * or a list of strings (the config file bypasses commander's parser); each string is comma-separated.
 */
function listOf(value: unknown, option: string): string[] | undefined {
  if (value === undefined) return undefined;
  const given = [value].flat();
  if (!given.every((v) => typeof v === 'string')) throw new UsageError(`${option}: must be a string or a list of strings`);
  return given.flatMap((v: string) => v.split(',').map((s) => s.trim()));
}

/** The API keys; an empty one is a usage error (exit 2), never a server without authentication. */
function apiKeysOf(value: unknown): string[] | undefined {
  const option = '--api-key (or QRANK_API_KEYS, or "api-key" in the config file)';
  const keys = listOf(value, option);
  try {
    if (keys) checkApiKeys(keys);
  } catch (err) {
    throw new UsageError(`${option}: ${(err as Error).message}`);
  }
  return keys;
}

export const WEB_DIR = join(__dirname, '..', '..', '..', 'web');

function defaultDataDir(): string {
  return join(process.env.XDG_DATA_HOME ?? join(homedir(), '.local', 'share'), 'qrank');
}

export function registerServe(program: Command, io: CliIO): void {
  program
    .command('serve')
    .description('serve the rerank, embedding and search APIs (Cohere, Jina, TEI, vLLM, OpenAI shapes) and the web UI')
    .addOption(envOption('--reranker <gguf>', 'reranker GGUF (default: a synthetic demo model)', 'QRANK_RERANKER'))
    .addOption(envOption('--embedder <gguf>', 'embedding GGUF (default: a synthetic demo model)', 'QRANK_EMBEDDER'))
    .addOption(envOption('--host <host>', 'address to listen on', 'QRANK_HOST', '127.0.0.1'))
    .addOption(envOption('--port <port>', 'port (0: any free port)', 'QRANK_PORT', '8080'))
    .addOption(envOption('--api-key <keys>', 'require Authorization: Bearer <key> (repeatable or comma-separated)', 'QRANK_API_KEYS').argParser(collect))
    .addOption(envOption('--cors <origins>', 'allowed CORS origins (comma-separated; default none)', 'QRANK_CORS').argParser(collect))
    .addOption(envOption('--data <dir>', 'data directory of the collections', 'QRANK_DATA', defaultDataDir()))
    .addOption(storeOption())
    .option('--demo', "fill a 'demo' collection with the shipped multilingual catalog on first start")
    .option('--no-ui', 'do not serve the web page at /')
    .addOption(envOption('--max-documents <n>', 'documents per request', 'QRANK_MAX_DOCUMENTS', String(DEFAULT_LIMITS.maxDocuments)))
    .addOption(envOption('--max-body-bytes <n>', 'largest request body', 'QRANK_MAX_BODY_BYTES', String(DEFAULT_LIMITS.maxBodyBytes)))
    .addOption(envOption('--max-tokens-per-doc <n>', 'tokens per document or input: longer ones are cut, or refused when a request sends truncate: false (default: the model context)', 'QRANK_MAX_TOKENS_PER_DOC'))
    .addOption(envOption('--max-upload-bytes <n>', 'largest streamed NDJSON or CSV upload of products', 'QRANK_MAX_UPLOAD_BYTES', String(DEFAULT_LIMITS.maxUploadBytes)))
    .addOption(envOption('--max-concurrent <n>', 'requests served at once (more get 429)', 'QRANK_MAX_CONCURRENT', String(DEFAULT_LIMITS.maxConcurrent)))
    .addOption(envOption('--headers-timeout-ms <ms>', 'time a client has to send its headers', 'QRANK_HEADERS_TIMEOUT_MS', String(DEFAULT_LIMITS.headersTimeoutMs)))
    .addOption(envOption('--request-timeout-ms <ms>', 'time a client has to send its whole request; an upload is read as fast as it is ingested, so this bounds its ingestion too', 'QRANK_REQUEST_TIMEOUT_MS', String(DEFAULT_LIMITS.requestTimeoutMs)))
    .addOption(envOption('--keep-alive-timeout-ms <ms>', 'time an idle kept-alive connection stays open', 'QRANK_KEEP_ALIVE_TIMEOUT_MS', String(DEFAULT_LIMITS.keepAliveTimeoutMs)))
    .addOption(envOption('--threads <n>', 'CPU threads per model (default: half the cores each)', 'QRANK_THREADS'))
    .option('--print-config', 'print each setting and where it came from (flag, env, config, default), then exit')
    .action(async (flags: ServeFlags, cmd: Command) => {
      if (flags.printConfig) {
        io.stdout.write(JSON.stringify(optionSources(cmd), null, 2) + '\n');
        return;
      }
      const apiKeys = apiKeysOf(flags.apiKey);
      const numbers = {
        maxDocuments: Number(flags.maxDocuments),
        maxBodyBytes: Number(flags.maxBodyBytes),
        maxConcurrent: Number(flags.maxConcurrent),
        maxUploadBytes: Number(flags.maxUploadBytes),
        headersTimeoutMs: Number(flags.headersTimeoutMs),
        requestTimeoutMs: Number(flags.requestTimeoutMs),
        keepAliveTimeoutMs: Number(flags.keepAliveTimeoutMs),
        port: Number(flags.port),
        ...(flags.maxTokensPerDoc !== undefined ? { maxTokensPerDoc: Number(flags.maxTokensPerDoc) } : {}),
      };
      for (const [k, v] of Object.entries(numbers)) {
        const min = k === 'port' ? 0 : 1;
        if (!Number.isInteger(v) || v < min) throw new UsageError(`--${k.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase())} must be an integer >= ${min}, not '${String(flags[k as keyof ServeFlags])}'`);
      }
      // Node refuses a header timeout longer than the request timeout
      if (numbers.headersTimeoutMs > numbers.requestTimeoutMs) throw new UsageError('--headers-timeout-ms must not be longer than --request-timeout-ms');
      const { port, maxTokensPerDoc, ...limits } = numbers;
      const log = pino({ level: process.env.QRANK_LOG_LEVEL ?? 'info' });
      // two models share the cores: more threads than cores makes ggml's spinning workers crawl
      const threads = flags.threads ? Number(flags.threads) : Math.max(1, Math.floor(availableParallelism() / 2));
      const [reranker, embedder] = await loadModelPair(flags, io, threads);
      const synthetic = reranker.info.synthetic || embedder.info.synthetic;
      if (synthetic) {
        log.warn('serving SYNTHETIC models with random weights: scores, embeddings and rankings are meaningless; ' +
          'get real Qwen3 GGUFs with `qrank models pull qwen3-reranker-0.6b qwen3-embedding-0.6b` and name them with QRANK_RERANKER and QRANK_EMBEDDER (or --reranker/--embedder)');
      }
      // the embedded store needs the optional better-sqlite3: without it the rerank and embedding
      // APIs still serve. With --store postgres://... this process keeps no state of its own.
      const store = flags.store ?? flags.data;
      const noSqlite = isPostgresUrl(store) ? undefined : collectionsUnsupported();
      const search = noSqlite ? undefined : await SearchEngine.open({ store, embedder, reranker, onKeywordIndexProgress: keywordBuildLog(log) });
      if (noSqlite) log.warn({ reason: noSqlite }, 'collections and /v1/search are off');
      if (search) log.info({ store: search.storeInfo }, 'collections store');
      if (search && flags.demo) {
        if (!(await search.has('demo'))) log.info({ data: flags.data }, 'ingesting the demo catalog (first start)');
        const demo = await ensureDemoCollection(search, 'demo');
        log.info({ collection: 'demo', products: demo.size, created: demo.created, data: flags.data }, demo.created ? 'demo catalog ingested' : 'demo catalog ready');
      }
      const server = createApp({
        reranker,
        embedder,
        search,
        staticDir: flags.ui ? WEB_DIR : undefined,
        logger: log,
        version: JSON.parse(readFileSync(join(__dirname, '..', '..', '..', 'package.json'), 'utf8')).version,
        apiKeys,
        corsOrigins: listOf(flags.cors, '--cors')?.filter(Boolean),
        limits: { ...limits, maxTokensPerDocument: maxTokensPerDoc },
      });
      const http = server.listen(port, flags.host).once('listening', () => {
        const a = http.address();
        log.info({ address: typeof a === 'object' && a ? `http://${a.address}:${a.port}` : a, ui: flags.ui, data: search ? flags.data : null, synthetic }, 'qrank listening');
      });
      await new Promise<void>((resolve, reject) => {
        http.once('error', reject);
        const stop = (signal: string) => {
          log.info({ signal }, 'draining in-flight requests');
          server
            .drain(http)
            .then(() => search?.close())
            .then(() => Promise.all([reranker.close(), embedder.close()]))
            .then(() => resolve(), reject);
        };
        process.once('SIGTERM', () => stop('SIGTERM'));
        process.once('SIGINT', () => stop('SIGINT'));
      });
    });
}
