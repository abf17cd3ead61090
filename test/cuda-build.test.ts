/**
 * The CUDA build (`npm run build:cuda`, in build-cuda/) on a machine without a GPU: its addon loads,
 * knows it was built with the CUDA engine and says why it cannot run here, refuses `device: 'cuda'`
 * with that reason (UNSUPPORTED), runs `device: 'auto'` on llama.cpp's CPU engine, and references
 * cuBLASLt through a run path where the library is. The addon is loaded in a child process with
 * QRANK_PREBUILD pointing at the CUDA build (node-gyp-build's override), so this test never touches the
 * CPU addon the other tests load. Skipped, with the reason, when the CUDA build is not there; on a
 * machine with a GPU the no-device checks are skipped and scripts/gpu-check.sh is the check.
 *
 * QRANK_CUDA_BUILD_DIR names another CUDA build tree (default: build-cuda/).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MODELS, ROOT } from './helpers';

const buildDir = process.env.QRANK_CUDA_BUILD_DIR ?? join(ROOT, 'build-cuda');
const addon = join(buildDir, 'build', 'Release', 'qrank.node');
interface BuildInfo {
  cuda: boolean;
  cudaEngine: boolean;
  cublasLt: string;
}
const info: BuildInfo | null = existsSync(join(buildDir, 'qrank-build.json'))
  ? (JSON.parse(readFileSync(join(buildDir, 'qrank-build.json'), 'utf8')) as BuildInfo)
  : null;
const built = info?.cuda === true && existsSync(addon);
const skipReason = built ? '' : ` (skipped: no CUDA build in ${buildDir}; run npm run build:cuda)`;

interface ChildReport {
  status: { built: boolean; devices: number; reason: string };
  cuda: { code?: string; message?: string; backend?: string };
  auto: { code?: string; message?: string; backend?: string };
}

// Runs the addon of the CUDA build in a fresh Node process (dist/ is compiled by the global setup).
function childReport(): ChildReport {
  const script = `
    const { binding } = require(${JSON.stringify(join(ROOT, 'dist', 'binding.js'))});
    const { Reranker } = require(${JSON.stringify(join(ROOT, 'dist', 'index.js'))});
    const model = ${JSON.stringify(MODELS.reranker)};
    const attempt = (device) => Reranker.load({ model, device, threads: 1 }).then(
      async (r) => { const backend = r.info.backend; await r.close(); return { backend }; },
      (e) => ({ code: e.code, message: e.message }));
    (async () => {
      const status = binding().cudaStatus();
      const cuda = await attempt('cuda');
      const auto = await attempt('auto');
      process.stdout.write(JSON.stringify({ status, cuda, auto }));
    })().catch((e) => { console.error(e); process.exit(1); });`;
  const r = spawnSync(process.execPath, ['-e', script], {
    encoding: 'utf8', timeout: 60_000, env: { ...process.env, QRANK_PREBUILD: buildDir },
  });
  expect(r.status, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as ChildReport;
}

function dynamicSection(file: string): string {
  const r = spawnSync('readelf', ['-d', file], { encoding: 'utf8' });
  expect(r.status, `readelf: ${r.stderr}`).toBe(0);
  return r.stdout;
}

describe.skipIf(!built)(`the CUDA build${skipReason}`, () => {
  it('is the addon QRANK_PREBUILD selects, and it loads on this machine', () => {
    const r = spawnSync(process.execPath, ['-p', `require('node-gyp-build').path(${JSON.stringify(ROOT)})`], {
      encoding: 'utf8', cwd: ROOT, env: { ...process.env, QRANK_PREBUILD: buildDir },
    });
    expect(r.stdout.trim()).toBe(addon);
  });

  it('references cuBLASLt, with a run path to where it was found', (ctx) => {
    if (!info!.cudaEngine) ctx.skip('native/cuda/ does not define the CUDA engine yet: nothing calls cuBLASLt');
    const dyn = dynamicSection(addon);
    expect(dyn).toMatch(/NEEDED.*\[libcublasLt\.so\.\d+\]/);
    const runpath = dyn.match(/(?:RUNPATH|RPATH).*\[(.*)\]/)?.[1].split(':') ?? [];
    expect(runpath).toContain(dirname(info!.cublasLt));
    expect(existsSync(info!.cublasLt)).toBe(true);
  });

  it("answers device: 'cuda' with UNSUPPORTED and the reason, and runs device: 'auto' on the CPU", (ctx) => {
    const report = childReport();
    if (report.status.devices > 0) ctx.skip(`a GPU is present (${report.status.devices}): scripts/gpu-check.sh checks this machine`);
    expect(report.status.built).toBe(info!.cudaEngine);
    expect(report.status.reason).not.toBe('');
    if (info!.cudaEngine) expect(report.status.reason).toMatch(/device/i);  // the no-device reason, not "no CUDA build"
    expect(report.cuda.code).toBe('UNSUPPORTED');
    expect(report.cuda.message).toContain(report.status.reason);
    expect(report.auto.code).toBeUndefined();
    expect(report.auto.backend).toBe('llama.cpp-cpu');
  });
});
