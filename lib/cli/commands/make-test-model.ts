/**
 * `qrank make-test-model`: writes a deterministic synthetic Qwen3 GGUF (random weights, the real Qwen3 tokenizer)
 * for tests and benchmarks, and prints its path, size and SHA-256.
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import type { CliIO } from '../io';
import { progressBar } from '../shared';
import { DEFAULT_SEEDS, TEST_MODEL_KINDS, TEST_MODEL_SHAPE_NAMES, TEST_MODEL_TYPES, TestModelKind, TestModelShapeName, TestModelType } from '../../synthetic/layout';
import { makeTestModel } from '../../synthetic/model';

interface MakeTestModelFlags {
  kind: TestModelKind;
  out: string;
  shape: TestModelShapeName;
  type?: TestModelType;
  seed?: number;
  tied?: boolean;
  headScale?: string;
  eos?: 'endoftext' | 'im_end';
  addEos?: boolean;
}

function parseSeed(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n > 0xffffffff) {
    throw new InvalidArgumentError('must be an integer in 0..4294967295.');
  }
  return n;
}

const MIB = 1024 * 1024;

function formatSize(bytes: number): string {
  if (bytes >= 1024 * MIB) return `${(bytes / (1024 * MIB)).toFixed(2)} GiB`;
  return `${(bytes / MIB).toFixed(1)} MiB`;
}

export function registerMakeTestModel(program: Command, io: CliIO): void {
  program
    .command('make-test-model')
    .description('write a synthetic Qwen3 GGUF model (random weights, real Qwen3 tokenizer) for tests and benchmarks')
    .addOption(new Option('--kind <kind>', 'model kind').choices(TEST_MODEL_KINDS).makeOptionMandatory())
    .requiredOption('--out <file>', 'output .gguf path (parent directories are created)')
    .addOption(new Option('--shape <shape>', 'hyper-parameters').choices(TEST_MODEL_SHAPE_NAMES).default('tiny'))
    .addOption(
      new Option('--type <type>', 'type of the 2-D weights; norms are always f32 (default: f32 for tiny, else f16)')
        .choices(TEST_MODEL_TYPES),
    )
    .option(
      '--seed <n>',
      `PRNG seed (default: ${TEST_MODEL_KINDS.map((k) => `${DEFAULT_SEEDS[k]} ${k}`).join(', ')})`,
      parseSeed,
    )
    .option('--tied', 'causal: no output.weight, the head is tied to token_embd (as Qwen3-0.6B)')
    .option('--head-scale <x>', 'reranker: scale the yes/no head, so P(yes) saturates as in a trained model')
    .addOption(new Option('--eos <token>', 'the EOS id the file declares').choices(['endoftext', 'im_end']))
    .option('--add-eos', 'set tokenizer.ggml.add_eos_token (some conversions do)')
    .action(async (flags: MakeTestModelFlags) => {
      const bar = progressBar(io, `writing ${flags.out} (MiB)`);
      const { tied, headScale, eos, addEos, ...rest } = flags;
      const variant = { tied, headScale: headScale === undefined ? undefined : Number(headScale), eos, addEosToken: addEos };
      try {
        const result = await makeTestModel({ ...rest, variant, onProgress: (done, total) => bar.update(Math.round(done / MIB), Math.round(total / MIB)) });
        bar.stop();
        io.stdout.write(
          `path    ${result.path}\n` +
            `size    ${result.bytes} bytes (${formatSize(result.bytes)})\n` +
            `sha256  ${result.sha256}\n`,
        );
      } finally {
        bar.stop();
      }
    });
}
