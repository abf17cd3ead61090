/**
 * `qrank demo`: the two stages, in the terminal, on a small multilingual catalog. Queries in
 * Chinese, Spanish and English are embedded with the Embedder, matched by cosine against the
 * catalog (brute force, no collection needed), and the candidates are reranked by the
 * Reranker. Real GGUFs come from --reranker/--embedder or QRANK_RERANKER/QRANK_EMBEDDER; without
 * them synthetic models are generated once into the cache, and the output says plainly that their
 * rankings mean nothing.
 */
import type { Command } from 'commander';
import type { CliIO } from '../io';
import { envOption, loadModelPair } from '../shared';

export const DEMO_CATALOG = [
  'Sony WH-1000XM5 wireless noise cancelling headphones, 30 h battery, black',
  '索尼 WH-1000XM5 无线蓝牙降噪耳机 30小时续航 黑色',
  'Auriculares inalámbricos Bluetooth con cancelación de ruido, estuche de carga',
  'Juego de cuchillos de cocina de acero inoxidable, 6 piezas',
  '不锈钢厨房刀具套装 6件套',
  'Stainless steel kitchen knife set with block, 6 pieces',
  'Zapatillas de running para hombre, suela amortiguada, talla 42',
  '男士跑步鞋 缓震鞋底 42码',
  'Waterproof hiking jacket for women, breathable, size M',
  'Chaqueta impermeable de senderismo para mujer, talla M',
  '100% cotton crew-neck T-shirt, white, pack of 3',
  '纯棉圆领T恤 白色 三件装',
];

export const DEMO_QUERIES = ['无线蓝牙降噪耳机', 'auriculares bluetooth', 'kitchen knife set', 'zapatillas para correr'];

interface DemoFlags {
  reranker?: string;
  embedder?: string;
  recallK: string;
  topN: string;
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
        const docs = await em.embed(DEMO_CATALOG, { kind: 'document' });
        for (const query of DEMO_QUERIES) {
          const t0 = performance.now();
          const [q] = await em.embed([query], { kind: 'query' });
          const recalled = docs
            .map((d, index) => ({ index, recall: cosine(q, d) }))
            .sort((a, b) => b.recall - a.recall)
            .slice(0, Number(flags.recallK));
          const t1 = performance.now();
          const ranked = await rr.rerank(query, recalled.map((r) => DEMO_CATALOG[r.index]), { topN: Number(flags.topN) });
          const t2 = performance.now();
          io.stdout.write(`\n${query}   (recall ${(t1 - t0).toFixed(1)} ms, rerank ${(t2 - t1).toFixed(1)} ms)\n`);
          for (const r of ranked) {
            const hit = recalled[r.index];
            io.stdout.write(`  ${r.score.toFixed(3)}  recall ${hit.recall.toFixed(3)}  ${DEMO_CATALOG[hit.index]}\n`);
          }
        }
      } finally {
        await Promise.all([rr.close(), em.close()]);
      }
    });
}
