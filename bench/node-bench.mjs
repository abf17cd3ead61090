#!/usr/bin/env node
// The Node API's side of a benchmark shape: the texts qrank_bench wrote with --dump-prompts
// ("query<TAB>document" lines, --docs consecutive lines per query), reranked through `Reranker` as a
// service would call it (one rerank() per query, all in flight at once), timed like the C++ bench
// (one warm-up, then the median of --repeat runs). One JSON object on stdout.
//
//   node bench/node-bench.mjs --model M.gguf --prompts F --queries Q --docs D [--device cuda] [--repeat 3]
//                             [--dist DIR]   (the compiled lib/, default dist/; gpu-check.sh carries its own)
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { parseArgs } from 'node:util';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const { values: opt } = parseArgs({
  options: {
    model: { type: 'string' },
    prompts: { type: 'string' },
    queries: { type: 'string' },
    docs: { type: 'string' },
    device: { type: 'string', default: 'cuda' },
    repeat: { type: 'string', default: '3' },
    dist: { type: 'string', default: join(root, 'dist') },
  },
});
if (!opt.model || !opt.prompts || !opt.queries || !opt.docs) {
  console.error('node-bench: --model, --prompts, --queries and --docs are required (see the header)');
  process.exit(2);
}
const queries = Number(opt.queries);
const docs = Number(opt.docs);
const { Reranker } = createRequire(import.meta.url)(join(resolve(opt.dist), 'index.js'));

const lines = readFileSync(opt.prompts, 'utf8').split('\n').slice(0, queries * docs);
if (lines.length < queries * docs) throw new Error(`${opt.prompts} has ${lines.length} lines, not ${queries * docs}`);
const requests = Array.from({ length: queries }, (_, q) => {
  const rows = lines.slice(q * docs, (q + 1) * docs).map((l) => l.split('\t'));
  return { query: rows[0][0], documents: rows.map((r) => r[1]) };
});

const rr = await Reranker.load({ model: opt.model, device: opt.device });
async function once() {
  const outs = await Promise.all(requests.map((r) => rr.rerankWithUsage(r.query, r.documents)));
  return outs.reduce((n, o) => n + o.usage.tokens, 0);
}
await once();
const walls = [];
let tokens = 0;
for (let i = 0; i < Number(opt.repeat); i++) {
  const t0 = process.hrtime.bigint();
  tokens = await once();
  walls.push(Number(process.hrtime.bigint() - t0) / 1e9);
}
walls.sort((a, b) => a - b);
const median = walls[Math.floor(walls.length / 2)];
const report = {
  engine: 'qrank-node', backend: rr.info.backend, device: opt.device, queries, docs_per_query: docs, pairs: queries * docs,
  tokens, wall_s_median: median, wall_s_all: walls, tokens_per_s: tokens / median, pairs_per_s: (queries * docs) / median,
};
await rr.close();
console.log(JSON.stringify(report));
