/**
 * The CUDA engine's host-side pieces (native/cuda/host/), which build on every machine, GPU or not:
 * the batch planner (packing, prefix groups, splits, tiles), the bf16 weight conversion reference
 * against ggml's own dequantisation, the model layout checks, the workspace and input layouts and
 * the output form the pipeline receives. The checks live in the C++ program
 * native/cuda/host/host_test.cc (CMake target qrank_cuda_host_test, built into build-core/ with
 * the rest of the native build); this file runs it with a fresh seed and with a fixed one.
 * QRANK_CUDA_HOST_TEST points at another build of the program.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from './helpers';

const bin = process.env.QRANK_CUDA_HOST_TEST ?? join(ROOT, 'build-core', 'qrank_cuda_host_test');
const built = existsSync(bin);

function run(...args: string[]) {
  const r = spawnSync(bin, args, { encoding: 'utf8', timeout: 120_000 });
  return { status: r.status, out: `${r.stdout ?? ''}${r.stderr ?? ''}` };
}

describe.skipIf(!built)(`CUDA engine host checks${built ? '' : ` (skipped: ${bin} is not built; build the CMake target qrank_cuda_host_test)`}`, () => {
  it('pass on fresh random inputs', () => {
    const r = run();
    expect(r.out).not.toMatch(/^FAIL/m);
    expect(r.out).toMatch(/^PASS: \d+ checks$/m);
    expect(r.status, r.out).toBe(0);
  });

  it('repeat exactly with a given seed', () => {
    const a = run('12345');
    const b = run('12345');
    expect(a.status, a.out).toBe(0);
    expect(a.out).toContain('seed 12345');
    expect(b.out).toBe(a.out);
  });
});
