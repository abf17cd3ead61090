/**
 * `qrank embed`: vectors as JSON lines (Qwen3-Embedding). Texts come from arguments, a file (one per
 * line) or standard input (`--file -`).
 */
import type { Command } from 'commander';
import { type CliIO, UsageError } from '../io';
import { inputs, loadModels, positiveInt, withModelOptions } from '../shared';

export function registerEmbed(program: Command, io: CliIO): void {
  withModelOptions(program.command('embed'), { embedder: true })
    .description('embed texts (Qwen3-Embedding): one JSON line per text, {"index", "embedding"}')
    .argument('[texts...]', 'texts (or --file)')
    .option('--file <path>', 'texts, one per line (- for standard input)')
    .option('--kind <kind>', 'query (adds the instruction) or document', 'document')
    .option('--instruction <text>', 'task instruction for queries')
    .option('--dimensions <n>', 'keep the first n dimensions (renormalised)')
    .action(async (args: string[], flags: { file?: string; kind: string; instruction?: string; dimensions?: string; embedder?: string; threads?: string }) => {
      const texts = inputs(args, flags.file, 'texts');
      if (flags.kind !== 'query' && flags.kind !== 'document') throw new UsageError(`--kind must be query or document, not '${flags.kind}'`);
      const dimensions = flags.dimensions ? positiveInt(flags.dimensions, '--dimensions') : undefined;
      const { embedder } = await loadModels(flags, { reranker: false, embedder: true });
      try {
        const vectors = await embedder!.embed(texts, { kind: flags.kind, instruction: flags.instruction, dimensions });
        for (const [index, v] of vectors.entries()) io.stdout.write(JSON.stringify({ index, embedding: Array.from(v) }) + '\n');
      } finally {
        await embedder!.close();
      }
    });
}
