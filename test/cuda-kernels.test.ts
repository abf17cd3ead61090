/**
 * The CUDA kernels of the coming GPU engine (native/cuda/, issue 5). Where nvcc is installed they
 * are compiled for Hopper (sm_90) with their check program, warnings as errors; where a GPU is also
 * present the check runs (every kernel against a float64 CPU reference, fresh random inputs).
 * CI machines have nvcc but no GPU: there the compile is the check, and the run says so.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ROOT } from './helpers';

const nvcc = ['/usr/local/cuda/bin/nvcc', '/usr/local/bin/nvcc', '/usr/bin/nvcc'].find(existsSync) ??
  (spawnSync('sh', ['-c', 'command -v nvcc'], { encoding: 'utf8' }).stdout.trim() || undefined);
const out = mkdtempSync(join(tmpdir(), 'qrank-cuda-'));
afterAll(() => rmSync(out, { recursive: true, force: true }));

describe.skipIf(!nvcc)(`CUDA kernels${nvcc ? '' : ' (skipped: no nvcc on this machine)'}`, () => {
  it('compile for sm_90 without warnings, and pass their check where a GPU is present', () => {
    const bin = join(out, 'kernel_check');
    const build = spawnSync(nvcc!, ['-std=c++17', '-O2', '-Werror', 'all-warnings', '-gencode=arch=compute_90,code=sm_90',
      join(ROOT, 'native/cuda/kernels.cu'), join(ROOT, 'native/cuda/kernel_check.cu'), '-o', bin], { encoding: 'utf8', timeout: 300_000 });
    expect(build.status, build.stderr + build.stdout).toBe(0);
    expect(existsSync(bin)).toBe(true);
    const run = spawnSync(bin, [], { encoding: 'utf8', timeout: 120_000 });
    if (run.status === 77) {
      // no GPU: the compile above was the check
      expect(run.stdout).toContain('no CUDA device');
      return;
    }
    expect(run.status, run.stdout + run.stderr).toBe(0);
    expect(run.stdout).toMatch(/^PASS: 0 check\(s\) failed$/m);
  }, 300_000);
});
