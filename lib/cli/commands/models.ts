/**
 * `qrank models pull | list | info`: getting real GGUFs (resumable, sha256-checked downloads with a
 * progress bar) and seeing what a GGUF is without loading it.
 */
import { existsSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { inspectModel } from '../../model-handle';
import { KNOWN_MODELS, download, modelsDir, resolveModel } from '../../models/download';
import { type CliIO, UsageError } from '../io';
import { envOption, progressBar } from '../shared';

const mb = (n: number) => `${(n / 1e6).toFixed(1)} MB`;

/**
 * What a GGUF is, as the native side decides it (the same decisions a load makes), without loading
 * it: `kind` is the role it serves (reranker, embedder), or causal when a plain Qwen3 serves both.
 */
export async function describeGGUF(path: string) {
  const d = await inspectModel(path);
  const roles = (['reranker', 'embedder'] as const).filter((r) => 'recipe' in d.roles[r]);
  return {
    file: path,
    bytes: statSync(path).size,
    architecture: d.architecture,
    name: d.name,
    description: d.description,
    kind: roles.length === 2 ? 'causal' : (roles[0] ?? 'none'),
    roles: d.roles,
    layers: d.layers,
    hidden: d.embeddingLength,
    context: d.contextLength,
    weightType: d.weightType,
    parameters: d.parameters,
    tensors: d.tensors,
    synthetic: d.synthetic,
  };
}

export function registerModels(program: Command, io: CliIO): void {
  const models = program.command('models').description('download real GGUFs and inspect model files');

  models
    .command('pull')
    .description(`download GGUFs with resume, progress and a sha256 check (names: ${Object.keys(KNOWN_MODELS).join(', ')}; or hf:<owner>/<repo>/<file>.gguf; or a URL)`)
    .argument('<models...>', 'names, hf: names or URLs')
    .addOption(envOption('--dir <dir>', 'where models go', 'QRANK_MODELS', modelsDir(homedir())))
    .option('--sha256 <hex>', 'expected sha256 (one model only); default: the Hugging Face LFS etag when the server sends one')
    .option('--name <file>', 'file name to save as (one model only)')
    .action(async (specs: string[], flags: { dir: string; sha256?: string; name?: string }) => {
      if (specs.length > 1 && (flags.sha256 || flags.name)) throw new UsageError('--sha256 and --name apply to one model at a time');
      mkdirSync(flags.dir, { recursive: true });
      const abort = new AbortController();
      const onSigint = () => abort.abort();
      process.once('SIGINT', onSigint);
      try {
        for (const spec of specs) {
          const target = resolveModel(spec);
          const dest = join(flags.dir, flags.name ?? target.file);
          io.stderr.write(`qrank: ${target.url}\n  -> ${dest}\n`);
          const bar = progressBar(io, target.file);
          const headers = process.env.HF_TOKEN ? { authorization: `Bearer ${process.env.HF_TOKEN}` } : undefined;
          try {
            const r = await download(target.url, dest, {
              sha256: flags.sha256 ?? target.sha256,
              headers,
              signal: abort.signal,
              onProgress: (p) => bar.update(Math.round(p.received / 1e6), p.total !== undefined ? Math.round(p.total / 1e6) : undefined),
            });
            bar.stop();
            const how = r.verifiedBy === 'none' ? 'no published digest to check against; written to .sha256 beside the file' : `verified (${r.verifiedBy === 'given' ? '--sha256' : 'server etag'})`;
            io.stdout.write(`${r.path}  ${mb(r.bytes)}  sha256 ${r.sha256}  ${r.alreadyPresent ? 'already present' : r.resumedFrom ? `resumed at ${mb(r.resumedFrom)}` : 'downloaded'}; ${how}\n`);
          } finally {
            bar.stop();
          }
        }
      } finally {
        process.off('SIGINT', onSigint);
      }
    });

  models
    .command('list')
    .description('GGUFs in the models directory, with what each is')
    .addOption(envOption('--dir <dir>', 'models directory', 'QRANK_MODELS', modelsDir(homedir())))
    .option('--json', 'print JSON')
    .action(async (flags: { dir: string; json?: boolean }) => {
      const files = existsSync(flags.dir) ? readdirSync(flags.dir).filter((f) => f.endsWith('.gguf')).sort() : [];
      const rows = await Promise.all(
        files.map((f) =>
          describeGGUF(join(flags.dir, f)).catch((err: Error) => ({ file: join(flags.dir, f), bytes: statSync(join(flags.dir, f)).size, error: err.message })),
        ),
      );
      if (flags.json) return void io.stdout.write(JSON.stringify(rows, null, 2) + '\n');
      if (!rows.length) return void io.stdout.write(`no GGUF in ${flags.dir}; get one with qrank models pull ${Object.keys(KNOWN_MODELS)[0]}\n`);
      for (const r of rows) {
        io.stdout.write('error' in r ? `${r.file}  ${mb(r.bytes)}  unreadable: ${r.error}\n` : `${r.file}  ${mb(r.bytes)}  ${r.kind}  ${r.architecture} ${r.layers} layers x ${r.hidden}${r.synthetic ? '  SYNTHETIC' : ''}\n`);
      }
    });

  models
    .command('info')
    .description("what a GGUF is (architecture, task, shape, synthetic or not), from its metadata, without loading it")
    .argument('<gguf>', 'model file')
    .action(async (file: string) => {
      io.stdout.write(JSON.stringify(await describeGGUF(resolve(file)), null, 2) + '\n');
    });
}
