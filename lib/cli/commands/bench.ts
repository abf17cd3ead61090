/**
 * `qrank bench`: throughput and latency of the loaded models on synthetic text of a chosen length
 * (tokens/s, pairs/s, p50/p99 per request), optionally written as JSON.
 */
import { writeFileSync } from 'node:fs';
import type { Command } from 'commander';
import { Embedder } from '../../embedder';
import type { Reranker } from '../../reranker';
import { type CliIO, UsageError } from '../io';
import { loadModels, positiveInt, progressBar, withModelOptions } from '../shared';

const pct = (xs: number[], q: number) => xs.slice().sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))];

/**
 * Text of exactly `tokens` tokens for the model, from a multilingual word list. Words are separated
 * by spaces, so the tokenizer's pre-split keeps their token counts additive; the last few tokens are
 * padded with " a", one token each.
 */
export function syntheticText(model: Reranker | Embedder, tokens: number, seed: number): string {
  const words = ['wireless', 'headphones', 'auriculares', 'inalámbricos', '无线', '蓝牙', '耳机', 'kitchen', 'cuchillos', '刀具', 'running', 'zapatillas', '跑步鞋', 'price', 'battery', 'negro'];
  let s = seed >>> 0;
  let text = '';
  for (;;) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    const next = text ? `${text} ${words[s % words.length]}` : words[s % words.length];
    if (model.countTokens(next) > tokens) break;
    text = next;
  }
  while (model.countTokens(text) < tokens) text += ' a';
  return text;
}

export function registerBench(program: Command, io: CliIO): void {
  withModelOptions(program.command('bench'), { reranker: 'optional', embedder: 'optional' })
    .description('throughput and latency of the models on synthetic text: tokens/s, pairs/s, p50/p99 per request')
    .option('--docs <n>', 'documents per request', '100')
    .option('--doc-tokens <n>', 'tokens per document', '128')
    .option('--requests <n>', 'timed requests per model', '5')
    .option('--warmup <n>', 'untimed requests first', '1')
    .option('--out <file>', 'also write the report as JSON')
    .action(async (flags: { docs: string; docTokens: string; requests: string; warmup: string; out?: string; reranker?: string; embedder?: string; threads?: string }) => {
      if (!flags.reranker && !flags.embedder) throw new UsageError('name a model to measure: --reranker and/or --embedder (or QRANK_RERANKER / QRANK_EMBEDDER)');
      const n = { docs: positiveInt(flags.docs, '--docs'), docTokens: positiveInt(flags.docTokens, '--doc-tokens'), requests: positiveInt(flags.requests, '--requests') };
      const warmup = Number(flags.warmup);
      if (!Number.isInteger(warmup) || warmup < 0) throw new UsageError('--warmup must be 0 or more');
      const { reranker, embedder } = await loadModels(flags, { reranker: !!flags.reranker, embedder: !!flags.embedder });
      const report: Record<string, unknown> = { date: new Date().toISOString(), command: `qrank bench ${process.argv.slice(3).join(' ')}`.trim(), ...n, warmup };
      try {
        for (const model of [reranker, embedder]) {
          if (!model) continue;
          const task = model instanceof Embedder ? 'embed' : 'rerank';
          const docs = Array.from({ length: n.docs }, (_, i) => syntheticText(model, n.docTokens, i + 1));
          const query = 'auriculares inalámbricos con cancelación de ruido';
          const run = async () => (model instanceof Embedder ? model.embedWithUsage(docs, { kind: 'document' }) : (model as Reranker).rerankWithUsage(query, docs));
          const bar = progressBar(io, `${task} bench`);
          const times: number[] = [];
          let tokens = 0;
          for (let i = 0; i < warmup + n.requests; i++) {
            const t0 = performance.now();
            const { usage } = await run();
            const ms = performance.now() - t0;
            if (i >= warmup) {
              times.push(ms);
              tokens += usage.tokens;
            }
            bar.update(i + 1, warmup + n.requests);
          }
          bar.stop();
          const seconds = times.reduce((a, b) => a + b, 0) / 1000;
          const r = {
            model: model.info.description,
            synthetic: model.info.synthetic,
            threads: flags.threads ? Number(flags.threads) : 'all cores',
            tokens_reused: model.stats().tokensReused,
            tokens_per_s: tokens / seconds,
            docs_per_s: (n.docs * n.requests) / seconds,
            p50_ms: pct(times, 0.5),
            p99_ms: pct(times, 0.99),
            tokens_per_request: tokens / n.requests,
          };
          report[task] = r;
          io.stdout.write(`${task}: ${r.model}${r.synthetic ? ' (synthetic)' : ''}: ${r.tokens_per_s.toFixed(0)} tokens/s, ${r.docs_per_s.toFixed(1)} ${task === 'rerank' ? 'pairs' : 'texts'}/s, ` +
            `p50 ${r.p50_ms.toFixed(1)} ms, p99 ${r.p99_ms.toFixed(1)} ms per request of ${n.docs} x ${n.docTokens} tokens\n`);
        }
        if (flags.out) writeFileSync(flags.out, JSON.stringify(report, null, 2) + '\n');
      } finally {
        await Promise.all([reranker?.close(), embedder?.close()]);
      }
    });
}
