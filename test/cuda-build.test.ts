/**
 * The CUDA build (`npm run build:cuda`, in build-cuda/) on a machine without a GPU: its addon loads,
 * knows it was built with the CUDA engine and says why it cannot run here, refuses `device: 'cuda'`
 * with that reason (UNSUPPORTED) for a model the engine would serve, runs `device: 'auto'` on
 * llama.cpp's CPU engine, and references cuBLASLt through a run path where the library is. The
 * engine is chosen from a file's metadata before any weight is read, so the model it would serve is
 * a metadata-only Qwen3 GGUF with the engine's head size (the tiny test models' 16-value heads are
 * refused for their shape first). The addon is loaded in a child process with
 * QRANK_PREBUILD pointing at the CUDA build (node-gyp-build's override), so this test never touches the
 * CPU addon the other tests load. Skipped, with the reason, when the CUDA build is not there; on a
 * machine with a GPU the no-device checks are skipped and scripts/gpu-check.sh is the check.
 *
 * QRANK_CUDA_BUILD_DIR names another CUDA build tree (default: build-cuda/).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { GGMLType, GGUFValue, GGUFValueType } from '../lib/gguf/format';
import { writeGGUF } from '../lib/gguf/writer';
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

const scratch = mkdtempSync(join(tmpdir(), 'qrank-cuda-build-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

// A Qwen3 file of the shape the CUDA engine serves (heads of 128), metadata and one small tensor.
function engineShapedModel(): string {
  const path = join(scratch, 'qwen3-head128.gguf');
  const u32 = (value: number): GGUFValue => ({ type: GGUFValueType.UINT32, value });
  const metadata: [string, GGUFValue][] = [
    ['general.architecture', { type: GGUFValueType.STRING, value: 'qwen3' }],
    ['qwen3.block_count', u32(1)], ['qwen3.context_length', u32(512)], ['qwen3.embedding_length', u32(128)],
    ['qwen3.feed_forward_length', u32(128)], ['qwen3.attention.head_count', u32(1)], ['qwen3.attention.head_count_kv', u32(1)],
    ['qwen3.attention.key_length', u32(128)], ['qwen3.attention.value_length', u32(128)],
  ];
  const data = Float32Array.from({ length: 128 * 4 }, (_, i) => Math.sin(i + 1));
  writeGGUF(path, metadata, [{ name: 'token_embd.weight', dims: [128, 4], type: GGMLType.F16, data }]);
  return path;
}

interface Attempt {
  code?: string;
  message?: string;
  backend?: string;
}
interface ChildReport {
  status: { built: boolean; devices: number; reason: string };
  cuda: Attempt;
  cudaTiny: Attempt;
  auto: Attempt;
}

// Runs the addon of the CUDA build in a fresh Node process (dist/ is compiled by the global setup).
function childReport(): ChildReport {
  const script = `
    const { binding } = require(${JSON.stringify(join(ROOT, 'dist', 'native.js'))});
    const { Reranker } = require(${JSON.stringify(join(ROOT, 'dist', 'index.js'))});
    const attempt = (model, device) => Reranker.load({ model, device, threads: 1 }).then(
      async (r) => { const backend = r.info.backend; await r.close(); return { backend }; },
      (e) => ({ code: e.code, message: e.message }));
    (async () => {
      const status = binding().cudaStatus();
      const cuda = await attempt(${JSON.stringify(engineShapedModel())}, 'cuda');
      const cudaTiny = await attempt(${JSON.stringify(MODELS.reranker)}, 'cuda');
      const auto = await attempt(${JSON.stringify(MODELS.reranker)}, 'auto');
      process.stdout.write(JSON.stringify({ status, cuda, cudaTiny, auto }));
    })().catch((e) => { console.error(e); process.exit(1); });`;
  const r = spawnSync(process.execPath, ['-e', script], {
    encoding: 'utf8', timeout: 60_000, env: { ...process.env, QRANK_PREBUILD: buildDir },
  });
  expect(r.status, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as ChildReport;
}

// The vector index's device: 'cuda' in the CUDA build's addon (a fresh Node process, as above).
function vectorReport(): Record<string, Attempt> {
  const script = `
    const { VectorIndex } = require(${JSON.stringify(join(ROOT, 'dist', 'index.js'))});
    const attempt = (f) => Promise.resolve().then(f).then(() => ({}), (e) => ({ code: e.code, message: e.message }));
    (async () => {
      const path = ${JSON.stringify(join(scratch, 'cpu-flat.qrix'))};
      const ix = VectorIndex.create({ dim: 8, kind: 'flat', storage: 'f16' });
      await ix.add([1, 2], new Float32Array(16).fill(0.5));
      await ix.save(path);
      process.stdout.write(JSON.stringify({
        flat: await attempt(() => VectorIndex.create({ dim: 8, kind: 'flat', storage: 'f16', device: 'cuda' })),
        ivf: await attempt(() => VectorIndex.create({ dim: 8, kind: 'ivf', device: 'cuda' })),
        hnsw: await attempt(() => VectorIndex.create({ dim: 8, kind: 'hnsw', device: 'cuda' })),
        i8: await attempt(() => VectorIndex.create({ dim: 8, kind: 'flat', storage: 'i8', device: 'cuda' })),
        load: await attempt(() => VectorIndex.load(path, { device: 'cuda' })),
        cpu: await attempt(() => VectorIndex.load(path, { device: 'cpu' })),
      }));
    })().catch((e) => { console.error(e); process.exit(1); });`;
  const r = spawnSync(process.execPath, ['-e', script], {
    encoding: 'utf8', timeout: 60_000, env: { ...process.env, QRANK_PREBUILD: buildDir },
  });
  expect(r.status, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as Record<string, Attempt>;
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
    expect(report.cudaTiny.code).toBe('UNSUPPORTED');  // for its shape, or the same reason
    expect(report.auto.code).toBeUndefined();
    expect(report.auto.backend).toBe('llama.cpp-cpu');
  });

  it("answers VectorIndex device: 'cuda' with UNSUPPORTED: no device here, or a kind the GPU does not serve", (ctx) => {
    if (childReport().status.devices > 0) ctx.skip('a GPU is present: scripts/gpu-check.sh checks the GPU index');
    const r = vectorReport();
    for (const kind of ['flat', 'ivf', 'load']) {
      expect(r[kind].code, kind).toBe('UNSUPPORTED');
      expect(r[kind].message, kind).toMatch(/no CUDA device/);
    }
    for (const kind of ['hnsw', 'i8']) {
      expect(r[kind].code, kind).toBe('UNSUPPORTED');
      expect(r[kind].message, kind).toMatch(/serves kind 'flat'/);
    }
    expect(r.cpu.code).toBeUndefined();  // the same file on the CPU
  });
});
