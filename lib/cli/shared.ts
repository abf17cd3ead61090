/**
 * What the CLI commands share: configuration (flags > environment > config file > defaults),
 * loading the models it names (or the synthetic demo models), the inputs of a command (arguments or
 * the lines of a file), and a progress bar (cli-progress) that only draws on a terminal.
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { SingleBar } from 'cli-progress';
import { type Command, Option } from 'commander';
import { Embedder } from '../embedder';
import { Reranker } from '../reranker';
import { makeTestModel } from '../synthetic/model';
import type { KeywordBuildProgress } from '../search/collection';
import { type CliIO, UsageError } from './io';

export interface ModelFlags {
  reranker?: string;
  embedder?: string;
  threads?: string;
}

/** An option that can also come from an environment variable (commander gives flags precedence). */
export function envOption(flags: string, description: string, env: string, defaultValue?: string): Option {
  const o = new Option(flags, description).env(env);
  return defaultValue === undefined ? o : o.default(defaultValue);
}

/** `--store` (QRANK_STORE): where the collections of a command live, when not in its data directory. */
export function storeOption(): Option {
  return envOption('--store <url|dir>', 'where the collections live: postgres://user:password@host:port/db (Postgres with pgvector) or a data directory', 'QRANK_STORE');
}

/** The store a command's flags name: --store, else its data directory; a usage error when neither is given. */
export function storeOf(flags: { store?: string; dir?: string }): string {
  const store = flags.store ?? flags.dir;
  if (!store) throw new UsageError('say where the collections are: --dir <dir> or --store postgres://... (or QRANK_STORE)');
  return store;
}

/** The model flags of commands that load models themselves (index, search, eval, rerank, embed, bench). */
export function withModelOptions(cmd: Command, roles: { reranker?: string; embedder?: boolean | string }): Command {
  if (roles.reranker) cmd.addOption(envOption('--reranker <gguf>', `reranker GGUF${roles.reranker === 'optional' ? '; without one, recall only' : ''}`, 'QRANK_RERANKER'));
  if (roles.embedder) cmd.addOption(envOption('--embedder <gguf>', 'embedding GGUF', 'QRANK_EMBEDDER'));
  return cmd.addOption(envOption('--threads <n>', 'CPU threads', 'QRANK_THREADS'));
}

// --- configuration file ---

/** Arguments, else the lines of --file (`-` is standard input); empty lines are skipped. */
export function inputs(args: string[], file: string | undefined, what: string): string[] {
  if (args.length && file) throw new UsageError(`give ${what} as arguments or with --file, not both`);
  const list = file ? readFileSync(file === '-' ? 0 : file, 'utf8').split(/\r?\n/).filter((l) => l.trim() !== '') : args;
  if (!list.length) throw new UsageError(`no ${what}: pass them as arguments or with --file <path|->`);
  return list;
}

export function positiveInt(value: string, name: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`${name} must be a positive integer, not '${value}'`);
  return n;
}

export type ConfigFile = Record<string, unknown>;

/** The config file named by --config or QRANK_CONFIG, else ./qrank.config.json when present. */
export function readConfig(explicit: string | undefined): { path?: string; config: ConfigFile } {
  const path = explicit ?? process.env.QRANK_CONFIG ?? (existsSync('qrank.config.json') ? 'qrank.config.json' : undefined);
  if (!path) return { config: {} };
  let config: unknown;
  try {
    config = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new ConfigError(`config file ${path}: ${(err as Error).message}`);
  }
  if (typeof config !== 'object' || config === null || Array.isArray(config)) throw new ConfigError(`config file ${path}: must be a JSON object`);
  return { path: resolve(path), config: config as ConfigFile };
}

export class ConfigError extends Error {}

const camel = (k: string) => k.replace(/-([a-z])/g, (_m, c: string) => c.toUpperCase());

/**
 * Fills the options of `cmd` that neither a flag nor the environment set from the config file:
 * top-level keys apply to every command, a section named after the command overrides them.
 * Keys are option names (`max-documents` or `maxDocuments`). Unknown keys in a command's section
 * are an error, so a typo does not silently keep a default.
 */
export function applyConfig(cmd: Command, file: { path?: string; config: ConfigFile }, commandNames: string[]): void {
  if (!file.path) return;
  const own = file.config[cmd.name()];
  if (own !== undefined && (typeof own !== 'object' || own === null || Array.isArray(own))) throw new ConfigError(`config file ${file.path}: "${cmd.name()}" must be an object`);
  const section = Object.fromEntries(Object.entries((own ?? {}) as ConfigFile).map(([k, v]) => [camel(k), v]));
  const top = Object.fromEntries(Object.entries(file.config).filter(([k]) => !commandNames.includes(k)).map(([k, v]) => [camel(k), v]));
  const known = new Set(cmd.options.map((o) => o.attributeName()));
  for (const key of Object.keys(section)) {
    if (!known.has(key)) throw new ConfigError(`config file ${file.path}: "${cmd.name()}.${key}" is not an option of qrank ${cmd.name()} (see qrank ${cmd.name()} --help)`);
  }
  for (const opt of cmd.options) {
    const key = opt.attributeName();
    const source = cmd.getOptionValueSource(key);
    if (source === 'cli' || source === 'env') continue;
    const value = key in section ? section[key] : top[key];
    if (value === undefined) continue;
    const valid = typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean' || (Array.isArray(value) && value.every((v) => typeof v === 'string'));
    if (!valid) throw new ConfigError(`config file ${file.path}: "${key}" must be a string, number, boolean or list of strings`);
    cmd.setOptionValueWithSource(key, Array.isArray(value) || typeof value === 'boolean' ? value : String(value), 'config');
  }
}

/** Where each option's value came from: cli, env, config or default. */
export function optionSources(cmd: Command): Record<string, { value: unknown; source: string | undefined }> {
  const out: Record<string, { value: unknown; source: string | undefined }> = {};
  for (const opt of cmd.options) {
    const key = opt.attributeName();
    out[key] = { value: cmd.getOptionValue(key), source: cmd.getOptionValueSource(key) };
  }
  return out;
}

export async function loadModels(flags: ModelFlags, need: { reranker: boolean; embedder: boolean }) {
  const rerankerPath = flags.reranker;
  const embedderPath = flags.embedder;
  if (need.embedder && !embedderPath) throw new Error('name an embedding GGUF with --embedder or QRANK_EMBEDDER');
  if (need.reranker && !rerankerPath) throw new Error('name a reranker GGUF with --reranker or QRANK_RERANKER');
  const threads = flags.threads ? Number(flags.threads) : undefined;
  const [embedder, reranker] = await Promise.all([
    embedderPath ? Embedder.load({ model: embedderPath, threads }) : undefined,
    rerankerPath ? Reranker.load({ model: rerankerPath, threads }) : undefined,
  ]);
  return { embedder, reranker };
}

/** Logs the keyword index builds of collections made before keyword indexes: the start, every 5 s, the end. */
export function keywordBuildLog(log: { info(o: object, msg: string): void }): (collection: string, p: KeywordBuildProgress) => void {
  let last = 0;
  return (collection, p) => {
    const now = Date.now();
    if (p.done !== 0 && p.done !== p.total && now - last < 5000) return;
    last = now;
    log.info({ collection, done: p.done, total: p.total }, p.done === p.total ? 'keyword index built' : 'building the keyword index (once, for a collection made before keyword indexes or after a mapping change)');
  };
}

/** A progress bar for the keyword index build an opening may do (see keywordBuildLog), on standard error. */
export function keywordBuildBar(io: CliIO): { onKeywordIndexProgress: (collection: string, p: KeywordBuildProgress) => void; stop(): void } {
  const bar = progressBar(io, 'building the keyword index');
  return { onKeywordIndexProgress: (_c, p) => (p.done === p.total ? bar.stop() : bar.update(p.done, p.total)), stop: () => bar.stop() };
}

export function progressBar(io: CliIO, label: string): { update(done: number, total?: number): void; stop(): void } {
  if (!io.stderr.isTTY) return { update() {}, stop() {} };
  const bar = new SingleBar({ format: `${label} [{bar}] {value}/{total} {percentage}% eta {eta_formatted}`, stream: io.stderr as NodeJS.WriteStream, hideCursor: true });
  let started = false;
  return {
    update(done, total) {
      if (!started) {
        bar.start(total ?? done, done);
        started = true;
      }
      if (total !== undefined) bar.setTotal(total);
      bar.update(done);
    },
    stop() {
      if (started) bar.stop();
      started = false;
    },
  };
}

// --- the synthetic demo models (serve and demo without model flags) ---

function cacheDir(): string {
  return join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'qrank', 'demo');
}

export async function syntheticModel(kind: 'reranker' | 'embedder', io: CliIO): Promise<string> {
  const dir = cacheDir();
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `tiny-${kind}.gguf`);
  if (!existsSync(path)) {
    io.stderr.write(`qrank: generating a synthetic ${kind} (random weights, real Qwen3 tokenizer) in ${path}\n`);
    await makeTestModel({ kind, shape: 'tiny', out: path });
  }
  return path;
}

/** The reranker and embedder named by flags or environment, each else a synthetic demo model. */
export async function loadModelPair(paths: { reranker?: string; embedder?: string }, io: CliIO, threads?: number): Promise<[Reranker, Embedder]> {
  const rerankerPath = paths.reranker ?? (await syntheticModel('reranker', io));
  const embedderPath = paths.embedder ?? (await syntheticModel('embedder', io));
  return Promise.all([Reranker.load({ model: rerankerPath, threads }), Embedder.load({ model: embedderPath, threads })]);
}
