#!/usr/bin/env node
// Recall quality on the shipped cross-border set (eval/crossborder-shop): keyword recall alone
// (BM25 over the keyword index: needs no model, so its figures are real), vector recall and hybrid
// (RRF of both) with the embedder given (the synthetic tiny one by default: then the vector and
// hybrid figures test the mechanics only). Recall@10/@50/@100, nDCG@10 and MRR@10, overall, per
// query language, per query kind and per set (`keyword`: the codes, model numbers, brands and sizes
// queries). Writes bench/results/recall-quality-<date>.json.
//
//   node bench/recall-quality.mjs [--embedder E.gguf] [--threads 1] [--out file.json]
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const { runEval } = require(join(root, 'dist', 'cli', 'commands', 'eval.js'));
const { values: opt } = parseArgs({
  options: {
    embedder: { type: 'string', default: join(root, 'test', '.models', 'tiny-embedder.gguf') },
    threads: { type: 'string', default: '1' },
    out: { type: 'string', default: '' },
  },
});
const dataset = join(root, 'eval', 'crossborder-shop');
const runs = {};
for (const recall of ['keyword', 'vector', 'hybrid']) {
  const t = performance.now();
  runs[recall] = await runEval({ dataset, embedderPath: opt.embedder, recallK: 100, recallAt: [10, 50, 100], recall, vectors: 'one', threads: Number(opt.threads) });
  const r = runs[recall].recall;
  console.log(`${recall.padEnd(8)} ${Object.entries(r).map(([k, v]) => `${k} ${v.toFixed(3)}`).join('  ')}  (${((performance.now() - t) / 1000).toFixed(1)} s)`);
}
const report = {
  date: new Date().toISOString(),
  command: `node bench/recall-quality.mjs ${process.argv.slice(2).join(' ')}`.trim(),
  machine: { cores: cpus().length, cpu: cpus()[0]?.model },
  note: runs.vector.synthetic
    ? 'the embedder is synthetic (random weights): keyword figures are real, vector and hybrid figures test the mechanics only'
    : 'real embedding weights',
  relevant: 'grade >= 1 for MRR and Recall (as qrank eval counts); nDCG@10 with the grade as gain',
  runs,
};
mkdirSync(join(root, 'bench', 'results'), { recursive: true });
const file = opt.out || join(root, 'bench', 'results', `recall-quality-${report.date.slice(0, 10)}.json`);
writeFileSync(file, JSON.stringify(report, null, 2) + '\n');
console.log(`wrote ${file}`);
