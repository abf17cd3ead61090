/**
 * The CUDA kernels' check program (native/cuda/kernel_check.cu), as the CUDA build compiles it with
 * the engine library sources (CMake target qrank_kernel_check: nvcc for sm_90, warnings as errors;
 * `npm run build:cuda`, which CI runs before the tests). Where a GPU is present the check runs
 * (every kernel against a float64 CPU reference, fresh random inputs); on a machine without one,
 * such as CI's, the compile was the check and the program must say so with exit status 77.
 * scripts/cuda-check.sh runs it on a GPU, with compute-sanitizer.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from './helpers';

const buildDir = process.env.QRANK_CUDA_BUILD_DIR ?? join(ROOT, 'build-cuda');
const bin = join(buildDir, 'qrank_kernel_check');
const built = existsSync(bin);

describe.skipIf(!built)(`CUDA kernels${built ? '' : ` (skipped: no ${bin}; run npm run build:cuda on a machine with nvcc)`}`, () => {
  it('were compiled for the configured architecture with warnings as errors', () => {
    const info = JSON.parse(readFileSync(join(buildDir, 'qrank-build.json'), 'utf8')) as { cudaArch: string; werror: boolean };
    expect(info.cudaArch).toBe('90');
    const flags = readFileSync(join(buildDir, 'build.ninja'), 'utf8');
    expect(flags).toContain('arch=compute_90,code=[compute_90,sm_90]');
    expect(flags).toContain('-Werror all-warnings');
  });

  it('pass their check where a GPU is present, and say there is none otherwise', () => {
    const run = spawnSync(bin, [], { encoding: 'utf8', timeout: 120_000 });
    if (run.status === 77) {
      expect(run.stdout).toContain('no CUDA device');
      return;
    }
    expect(run.status, run.stdout + run.stderr).toBe(0);
    expect(run.stdout).toMatch(/^PASS: 0 check\(s\) failed$/m);
  }, 120_000);

  it('refuse an argument they do not know (exit 2, the flags named) instead of reading it as a seed, GPU or not', () => {
    for (const [program, own] of [['qrank_kernel_check', '--small'], ['qrank_vector_check', '--budget VALUE']] as const) {
      const path = join(buildDir, program);
      expect(existsSync(path), path).toBe(true);
      const run = spawnSync(path, ['--smal'], { encoding: 'utf8', timeout: 30_000 });
      expect(run.status, run.stdout + run.stderr).toBe(2);
      expect(run.stderr).toContain("unknown argument '--smal'");
      expect(run.stderr).toContain(own);
    }
  });
});
