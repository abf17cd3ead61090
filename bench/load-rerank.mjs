#!/usr/bin/env node
// Load run of POST /v1/rerank on loopback, bounded in time: `qrank serve` in a child process on the
// tiny synthetic models (or --reranker/--embedder GGUFs), then autocannon with 1, 8 and 32
// concurrent clients. Reports requests/s, p50/p99 latency, errors and the server's RSS before and
// after (memory must settle), and checks that concurrent clients get the same scores as one alone.
// Writes bench/results/load-<date>.json.
//
//   node bench/load-rerank.mjs [--seconds 10] [--docs 20] [--reranker M.gguf --embedder E.gguf]
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const autocannon = require('autocannon');
const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const { values: opt } = parseArgs({
  options: {
    seconds: { type: 'string', default: '10' },
    docs: { type: 'string', default: '20' },
    reranker: { type: 'string', default: join(root, 'test', '.models', 'tiny-reranker.gguf') },
    embedder: { type: 'string', default: join(root, 'test', '.models', 'tiny-embedder.gguf') },
  },
});

function rssKb(pid) {
  const m = readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmRSS:\s+(\d+)/);
  return m ? Number(m[1]) : null;
}

async function startServer() {
  const child = spawn(process.execPath, [join(root, 'dist', 'cli', 'main.js'), 'serve', '--port', '0', '--max-concurrent', '256',
    '--reranker', opt.reranker, '--embedder', opt.embedder], { cwd: root, stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, QRANK_LOG_LEVEL: 'info' } });
  let out = '';
  const base = await new Promise((resolveBase, reject) => {
    child.stdout.on('data', (c) => {
      if (out === null) return; // the access log is read and dropped once the address is known
      out += c;
      const m = out.match(/"address":"(http:\/\/[^"]+)"/);
      if (m) {
        out = null;
        resolveBase(m[1]);
      }
    });
    child.once('exit', (code) => reject(new Error(`server exited (${code})`)));
  });
  return { child, base };
}

const words = ['wireless', 'bluetooth', 'auriculares', '无线', '蓝牙', '耳机', 'kitchen', 'knife', 'cuchillos', 'running', 'zapatillas', '跑步鞋'];
const documents = Array.from({ length: Number(opt.docs) }, (_, i) => Array.from({ length: 24 }, (_, j) => words[(i * 7 + j * 3) % words.length]).join(' '));
const body = JSON.stringify({ query: 'auriculares bluetooth 降噪', documents });

async function scoresOnce(base) {
  const r = await fetch(`${base}/v1/rerank`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
  return (await r.json()).results;
}

function run(base, connections) {
  return new Promise((resolveRun, reject) => {
    autocannon(
      { url: `${base}/v1/rerank`, method: 'POST', headers: { 'content-type': 'application/json' }, body, connections, duration: Number(opt.seconds) },
      (err, r) => (err ? reject(err) : resolveRun(r)),
    );
  });
}

const { child, base } = await startServer();
try {
  const alone = await scoresOnce(base);
  const rssBefore = rssKb(child.pid);
  const rows = [];
  for (const connections of [1, 8, 32]) {
    const r = await run(base, connections);
    const row = {
      connections,
      requests_per_s: r.requests.average,
      pairs_per_s: r.requests.average * documents.length,
      latency_ms_p50: r.latency.p50,
      latency_ms_p99: r.latency.p99,
      requests: r.requests.total,
      errors: r.errors,
      non_2xx: r.non2xx,
      timeouts: r.timeouts,
      server_rss_mb: rssKb(child.pid) / 1024,
    };
    rows.push(row);
    console.log(`${connections} clients: ${row.requests_per_s.toFixed(1)} req/s (${row.pairs_per_s.toFixed(0)} pairs/s), p50 ${row.latency_ms_p50} ms, p99 ${row.latency_ms_p99} ms, errors ${row.errors + row.non_2xx}, RSS ${row.server_rss_mb.toFixed(0)} MB`);
  }
  const under = await Promise.all(Array.from({ length: 8 }, () => scoresOnce(base)));
  const maxDiff = Math.max(...under.flatMap((res) => res.map((x) => Math.abs(x.relevance_score - alone.find((a) => a.index === x.index).relevance_score))));
  await new Promise((r) => setTimeout(r, 2000));
  const report = {
    date: new Date().toISOString(),
    command: `node bench/load-rerank.mjs ${process.argv.slice(2).join(' ')}`.trim(),
    models: { reranker: opt.reranker, embedder: opt.embedder },
    documents_per_request: documents.length,
    seconds_per_level: Number(opt.seconds),
    rows,
    server_rss_mb: { before: rssBefore / 1024, after_settle: rssKb(child.pid) / 1024 },
    max_score_difference_concurrent_vs_alone: maxDiff,
  };
  console.log(`RSS ${report.server_rss_mb.before.toFixed(0)} MB before, ${report.server_rss_mb.after_settle.toFixed(0)} MB after; concurrent vs alone scores differ by at most ${maxDiff.toExponential(2)}`);
  mkdirSync(join(root, 'bench', 'results'), { recursive: true });
  const file = join(root, 'bench', 'results', `load-${report.date.slice(0, 10)}.json`);
  writeFileSync(file, JSON.stringify(report, null, 2) + '\n');
  console.log(`bench: wrote ${file}`);
} finally {
  child.kill('SIGTERM');
}
