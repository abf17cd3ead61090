/**
 * What the CLI commands share: loading the models named by flags or environment, and a progress
 * bar (cli-progress) that only draws on a terminal.
 */
import { SingleBar } from 'cli-progress';
import type { Command } from 'commander';
import { Embedder } from '../embedder';
import { Reranker } from '../reranker';
import type { CliIO } from './main';

export interface ModelFlags {
  reranker?: string;
  embedder?: string;
  threads?: string;
}

/** The model flags of commands that load models themselves (index, search, eval). */
export function withModelOptions(cmd: Command, roles: { reranker?: string; embedder?: boolean }): Command {
  if (roles.reranker) cmd.option('--reranker <gguf>', `reranker GGUF (env QRANK_RERANKER)${roles.reranker === 'optional' ? '; without one, recall only' : ''}`);
  if (roles.embedder) cmd.option('--embedder <gguf>', 'embedding GGUF (env QRANK_EMBEDDER)');
  return cmd.option('--threads <n>', 'CPU threads');
}

export async function loadModels(flags: ModelFlags, need: { reranker: boolean; embedder: boolean }) {
  const rerankerPath = flags.reranker ?? process.env.QRANK_RERANKER;
  const embedderPath = flags.embedder ?? process.env.QRANK_EMBEDDER;
  if (need.embedder && !embedderPath) throw new Error('name an embedding GGUF with --embedder or QRANK_EMBEDDER');
  if (need.reranker && !rerankerPath) throw new Error('name a reranker GGUF with --reranker or QRANK_RERANKER');
  const threads = flags.threads ? Number(flags.threads) : undefined;
  const [embedder, reranker] = await Promise.all([
    embedderPath ? Embedder.load({ model: embedderPath, threads }) : undefined,
    rerankerPath ? Reranker.load({ model: rerankerPath, threads }) : undefined,
  ]);
  return { embedder, reranker };
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
    stop: () => started && bar.stop(),
  };
}
