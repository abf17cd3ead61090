/**
 * `qrank demo`: the two stages, in the terminal, on a sample of the shipped multilingual catalog
 * (the one `qrank serve --demo` ingests: one demo catalog). Queries in
 * Chinese, Spanish and English are embedded with the Embedder, matched by cosine against the
 * catalog (brute force, no collection needed), and the candidates are reranked by the
 * Reranker. Real GGUFs come from --reranker/--embedder or QRANK_RERANKER/QRANK_EMBEDDER; without
 * them synthetic models are generated once into the cache, and the output says plainly that their
 * rankings mean nothing.
 */
import type { Command } from 'commander';
import type { CliIO } from '../io';
import { SHOP_MAPPING, demoRecords } from '../../search/demo-catalog';
import { renderTemplate } from '../../search/templates';
import { envOption, loadModelPair } from '../shared';

/**
 * A spread sample of the shipped catalog (the one `qrank serve --demo` ingests): `n` products, one
 * line each in the languages they have (the collection's rerank template).
 */
async function demoCatalog(n: number): Promise<string[]> {
  const all: Record<string, unknown>[] = [];
  for await (const r of demoRecords()) all.push(r);
  const step = Math.max(1, Math.floor(all.length / n));
  return all
    .filter((_, i) => i % step === 0)
    .slice(0, n)
    .map((r) => renderTemplate(SHOP_MAPPING.rerank, r).replace(/\n/g, ' | '));
}

export const DEMO_QUERIES = ['无线蓝牙降噪耳机', 'auriculares bluetooth', 'kitchen knife set', 'zapatillas para correr'];

interface DemoFlags {
  reranker?: string;
  embedder?: string;
  recallK: string;
  topN: string;
  products: string;
}

const cosine = (a: Float32Array, b: Float32Array) => a.reduce((s, x, i) => s + x * b[i], 0);

export function registerDemo(program: Command, io: CliIO): void {
  program
    .command('demo')
    .description('rank a small multilingual catalog: embedding recall, then reranking')
    .addOption(envOption('--reranker <gguf>', 'a Qwen3-Reranker GGUF (default: a synthetic model)', 'QRANK_RERANKER'))
    .addOption(envOption('--embedder <gguf>', 'a Qwen3-Embedding GGUF (default: a synthetic model)', 'QRANK_EMBEDDER'))
    .option('--recall-k <n>', 'candidates kept by the embedding stage', '6')
    .option('--top-n <n>', 'results shown per query', '3')
    .option('--products <n>', 'products of the shipped catalog to rank (a spread sample)', '40')
    .action(async (flags: DemoFlags) => {
      const [rr, em] = await loadModelPair(flags, io);
      try {
        if (rr.info.synthetic || em.info.synthetic) {
          io.stdout.write(
            '\n*** These models have RANDOM weights (synthetic test models): the rankings below are meaningless. ***\n' +
              '*** Bring real GGUFs: qrank models pull qwen3-reranker-0.6b qwen3-embedding-0.6b, then set QRANK_RERANKER and QRANK_EMBEDDER ***\n',
          );
        }
        io.stdout.write(`\nreranker: ${rr.info.description} (${rr.info.recipe}), embedder: ${em.info.description} (${em.info.recipe})\n`);
        const catalog = await demoCatalog(Number(flags.products));
        const docs = await em.embed(catalog, { kind: 'document' });
        for (const query of DEMO_QUERIES) {
          const t0 = performance.now();
          const [q] = await em.embed([query], { kind: 'query' });
          const recalled = docs
            .map((d, index) => ({ index, recall: cosine(q, d) }))
            .sort((a, b) => b.recall - a.recall)
            .slice(0, Number(flags.recallK));
          const t1 = performance.now();
          const ranked = await rr.rerank(query, recalled.map((r) => catalog[r.index]), { topN: Number(flags.topN) });
          const t2 = performance.now();
          io.stdout.write(`\n${query}   (recall ${(t1 - t0).toFixed(1)} ms, rerank ${(t2 - t1).toFixed(1)} ms)\n`);
          for (const r of ranked) {
            const hit = recalled[r.index];
            io.stdout.write(`  ${r.score.toFixed(3)}  recall ${hit.recall.toFixed(3)}  ${catalog[hit.index]}\n`);
          }
        }
      } finally {
        await Promise.all([rr.close(), em.close()]);
      }
    });
}
