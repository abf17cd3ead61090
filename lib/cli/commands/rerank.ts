/**
 * `qrank rerank`: rank documents for a query (Qwen3-Reranker). Documents come from arguments, a file
 * (one per line) or standard input (`--file -`).
 */
import type { Command } from 'commander';
import type { CliIO } from '../io';
import { inputs, loadModels, positiveInt, withModelOptions } from '../shared';

export function registerRerank(program: Command, io: CliIO): void {
  withModelOptions(program.command('rerank'), { reranker: 'required' })
    .description('rank documents by relevance to a query (Qwen3-Reranker)')
    .argument('<query>', 'the query, in any language')
    .argument('[documents...]', 'documents (or --file)')
    .option('--file <path>', 'documents, one per line (- for standard input)')
    .option('--top-n <n>', 'keep the best n')
    .option('--instruction <text>', 'task instruction for the reranker')
    .option('--json', 'print JSON')
    .action(async (query: string, args: string[], flags: { file?: string; topN?: string; instruction?: string; json?: boolean; reranker?: string; threads?: string }) => {
      const docs = inputs(args, flags.file, 'documents');
      const topN = flags.topN ? positiveInt(flags.topN, '--top-n') : undefined;
      const { reranker } = await loadModels(flags, { reranker: true, embedder: false });
      try {
        const results = await reranker!.rerank(query, docs, { topN, instruction: flags.instruction });
        if (flags.json) return void io.stdout.write(JSON.stringify(results.map((r) => ({ ...r, document: docs[r.index] }))) + '\n');
        for (const r of results) io.stdout.write(`${r.score.toFixed(4)}\t${r.index}\t${docs[r.index]}\n`);
      } finally {
        await reranker!.close();
      }
    });
}
