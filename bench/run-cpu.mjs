#!/usr/bin/env node
// CPU benchmark, side by side in one run: qrank's native core (bench/qrank_bench, no Node) against
// llama.cpp's own llama-embedding --pooling rank, on the same synthetic Qwen3-Reranker model and the
// same (query, document) prompts. Reports pairs/s, tokens/s and peak RSS per engine and the ratios,
// and writes bench/results/cpu-<date>.json.
//
//   node bench/run-cpu.mjs [--shapes tiny,0.6b] [--pairs 16] [--doc-tokens 256] [--threads 2]
//
// Two qrank workloads: "1 query x N docs" (a rerank request: the query's prefix is evaluated once)
// and "N queries x 1 doc" (no prefix to share, the like-for-like comparison with llama-embedding).
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const { values: opt } = parseArgs({
  options: {
    shapes: { type: 'string', default: 'tiny,0.6b' },
    pairs: { type: 'string', default: '16' },
    'doc-tokens': { type: 'string', default: '256' },
    threads: { type: 'string', default: '2' },
    repeat: { type: 'string', default: '2' },
  },
});
const shapes = opt.shapes.split(',');
const pairs = Number(opt.pairs);
const docTokens = Number(opt['doc-tokens']);
const threads = Number(opt.threads);
const modelsDir = join(root, 'bench', '.models');
const buildDir = join(root, 'build-core');

function sh(cmd, args, opts = {}) {
  return execFileSync(cmd, args, { cwd: root, encoding: 'utf8', maxBuffer: 256 << 20, ...opts });
}

function buildTools() {
  sh('cmake', ['-DQRANK_BUILD_LLAMA_TOOLS=ON', buildDir], { stdio: ['ignore', 'ignore', 'inherit'] });
  sh('cmake', ['--build', buildDir, '--parallel', String(cpus().length), '--target', 'qrank_bench', '--target', 'llama-embedding'], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
}

function ensureModel(shape) {
  const path = join(modelsDir, `${shape}-reranker.gguf`);
  if (!existsSync(path)) {
    mkdirSync(modelsDir, { recursive: true });
    console.error(`bench: generating the synthetic ${shape} reranker (random weights, real tokenizer)`);
    sh(process.execPath, [join(root, 'dist', 'cli', 'main.js'), 'make-test-model', '--kind', 'reranker', '--shape', shape, '--out', path], {
      stdio: ['ignore', 'ignore', 'inherit'],
    });
  }
  return path;
}

function qrank(model, queries, docs, promptsFile) {
  const args = ['--model', model, '--queries', String(queries), '--docs', String(docs), '--doc-tokens', String(docTokens),
    '--threads', String(threads), '--repeat', opt.repeat];
  if (promptsFile) args.push('--dump-prompts', promptsFile);
  const out = sh(join(buildDir, 'qrank_bench'), args);
  return JSON.parse(out.trim().split('\n').pop());
}

// llama-embedding evaluates every prompt (all tokens are outputs of an embeddings context, each
// through the vocabulary head); its perf lines give the time without the model load.
function llamaEmbedding(model, promptsFile, n) {
  const ctx = String(Math.max(512, 2 ** Math.ceil(Math.log2((docTokens + 120) * n))));
  const bin = join(buildDir, 'bin', 'llama-embedding');
  const r = spawnSync('/usr/bin/time', ['-v', bin, '-m', model, '--pooling', 'rank', '-f', promptsFile, '-c', ctx, '-b', ctx, '-ub', '512',
    '-t', String(threads), '--perf', '-lv', '4', '--embd-output-format', 'json'], { cwd: root, encoding: 'utf8', maxBuffer: 256 << 20 });
  if (r.status !== 0) throw new Error(`llama-embedding failed: ${r.stderr.slice(-2000)}`);
  // its "prompt eval" figure is not kept for embedding contexts: total minus load is the work
  const load = r.stderr.match(/load time =\s*([\d.]+) ms/);
  const total = r.stderr.match(/total time =\s*([\d.]+) ms \/\s*(\d+) tokens/);
  if (!load || !total) throw new Error('llama-embedding printed no perf timings');
  const rss = r.stderr.match(/Maximum resident set size \(kbytes\): (\d+)/);
  const evalS = (Number(total[1]) - Number(load[1])) / 1000;
  const tokens = Number(total[2]) - 1;
  return { engine: 'llama-embedding', tokens, eval_s: evalS, tokens_per_s: tokens / evalS, pairs_per_s: n / evalS,
    peak_rss_mb: rss ? Number(rss[1]) / 1024 : null, context: Number(ctx) };
}

function main() {
  buildTools();
  const results = [];
  for (const shape of shapes) {
    const model = ensureModel(shape);
    const prompts = join(modelsDir, `${shape}-prompts.txt`);
    const manyQueries = qrank(model, pairs, 1, prompts); // N queries x 1 doc, and the prompt file
    const oneQuery = qrank(model, 1, pairs);             // 1 query x N docs (prefix reuse)
    const lines = readFileSync(prompts, 'utf8').trim().split('\n').length;
    const llama = llamaEmbedding(model, prompts, lines);
    const row = {
      shape, pairs, doc_tokens: docTokens, threads,
      qrank_n_queries_x_1_doc: manyQueries,
      qrank_1_query_x_n_docs: oneQuery,
      llama_embedding: llama,
      ratio_tokens_per_s_no_reuse: manyQueries.tokens_per_s / llama.tokens_per_s,
      ratio_pairs_per_s_with_reuse: oneQuery.pairs_per_s / llama.pairs_per_s,
      ratio_peak_rss: llama.peak_rss_mb ? manyQueries.peak_rss_mb / llama.peak_rss_mb : null,
    };
    results.push(row);
    console.log(`${shape}: qrank ${manyQueries.tokens_per_s.toFixed(0)} tok/s (no reuse), ${oneQuery.pairs_per_s.toFixed(2)} pairs/s (1 query);` +
      ` llama-embedding ${llama.tokens_per_s.toFixed(0)} tok/s, ${llama.pairs_per_s.toFixed(2)} pairs/s;` +
      ` RSS ${manyQueries.peak_rss_mb.toFixed(0)} vs ${llama.peak_rss_mb?.toFixed(0)} MB`);
  }
  const cpu = readFileSync('/proc/cpuinfo', 'utf8').match(/model name\s*:\s*(.*)/)?.[1] ?? 'unknown';
  const report = { date: new Date().toISOString(), machine: { cpu, cores: cpus().length }, command: `node bench/run-cpu.mjs ${process.argv.slice(2).join(' ')}`.trim(), results };
  mkdirSync(join(root, 'bench', 'results'), { recursive: true });
  const file = join(root, 'bench', 'results', `cpu-${report.date.slice(0, 10)}.json`);
  writeFileSync(file, JSON.stringify(report, null, 2) + '\n');
  console.log(`bench: wrote ${file}`);
}

main();
