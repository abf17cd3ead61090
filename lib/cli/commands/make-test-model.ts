/**
 * `qrank make-test-model`: writes a deterministic synthetic Qwen3 GGUF (random weights, the real Qwen3 tokenizer)
 * for tests and benchmarks, and prints its path, size and SHA-256.
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import type { CliIO } from '../main';
import {
  DEFAULT_SEEDS,
  TEST_MODEL_KINDS,
  TEST_MODEL_SHAPE_NAMES,
  TEST_MODEL_TYPES,
  TestModelKind,
  TestModelShapeName,
  TestModelType,
  makeTestModel,
} from '../../models/test-model';

interface MakeTestModelFlags {
  kind: TestModelKind;
  out: string;
  shape: TestModelShapeName;
  type?: TestModelType;
  seed?: number;
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

/** A progress reporter that redraws one stderr line at most every 100 ms, or nothing when stderr is not a TTY. */
function progressLine(io: CliIO, label: string): { update(done: number, total: number): void; clear(): void } {
  if (!io.stderr.isTTY) return { update() {}, clear() {} };
  let last = 0;
  let drawn = false;
  return {
    update(done, total) {
      const now = Date.now();
      if (now - last < 100 && done < total) return;
      last = now;
      drawn = true;
      const pct = total > 0 ? Math.floor((100 * done) / total) : 0;
      io.stderr.write(`\r${label} ${String(pct).padStart(3)}% (${formatSize(done)} / ${formatSize(total)})\x1b[K`);
    },
    clear() {
      if (drawn) io.stderr.write('\r\x1b[K');
    },
  };
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
    .action(async (flags: MakeTestModelFlags) => {
      const progress = progressLine(io, `qrank: writing ${flags.out}`);
      try {
        const result = await makeTestModel({ ...flags, onProgress: progress.update });
        progress.clear();
        io.stdout.write(
          `path    ${result.path}\n` +
            `size    ${result.bytes} bytes (${formatSize(result.bytes)})\n` +
            `sha256  ${result.sha256}\n`,
        );
      } catch (err) {
        progress.clear();
        throw err;
      }
    });
}
