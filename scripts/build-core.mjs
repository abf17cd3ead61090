#!/usr/bin/env node
// The one entry point of the native build.
//   node scripts/build-core.mjs --addon       fetch llama.cpp and USearch, configure with cmake-js, build everything
//                                              (the addon lands in build/Release/qrank.node)
//   node scripts/build-core.mjs --gyp-libs    used by binding.gyp: build qrank_core and print the static
//                                              libraries node-gyp links (prebuildify's path)
//   node scripts/build-core.mjs --target T    build one CMake target (qrank_bench, llama-embedding)
//   node scripts/build-core.mjs --cuda [--llama-cuda] [--target T ...]
//                                              (npm run build:cuda) the CUDA build, in build-cuda/: qrank's
//                                              CUDA engine for sm_${QRANK_CUDA_ARCH:-90}, warnings as errors;
//                                              the addon lands in build-cuda/build/Release/qrank.node and is
//                                              used with QRANK_PREBUILD=<repo>/build-cuda. It reuses the CPU
//                                              build's llama.cpp libraries (build-core/) when they are there;
//                                              --llama-cuda adds llama.cpp's ggml-cuda (compiles llama.cpp
//                                              with CUDA: long). nvcc and cuBLASLt are found by
//                                              scripts/find-cuda.cmake (QRANK_CUBLAS_DIR names a directory).
// The CMake trees live in build-core/ and build-cuda/, apart from build/, which node-gyp wipes on every rebuild.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { ensureLlamaSource } from './fetch-llama.mjs';
import { ensureUsearchSource } from './fetch-usearch.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const cpuBuildDir = join(root, 'build-core');
const cudaBuildDir = join(root, 'build-cuda');
const require = createRequire(import.meta.url);
const jobs = String(Number(process.env.QRANK_BUILD_JOBS) || availableParallelism());

function run(cmd, args, { quiet = false } = {}) {
  // stdout of this script is read by gyp when --gyp-libs is given, so build logs go to stderr.
  execFileSync(cmd, args, { cwd: root, stdio: ['ignore', quiet ? 'ignore' : process.stderr, process.stderr] });
}

function fail(message) {
  console.error(message);
  process.exit(1);
}

function need(tool, pkg) {
  try {
    execFileSync(tool, ['--version'], { stdio: 'ignore' });
  } catch {
    fail(`qrank: '${tool}' is required to build the native addon from source; install it (Debian: apt-get install ${pkg}).`);
  }
}

// -DNAME=value flags from $QRANK_CMAKE_ARGS, then `defines`, as cmake-js --CD options.
function cmakeJs(args, outDir, defines = []) {
  const cli = join(dirname(require.resolve('cmake-js/package.json')), 'bin', 'cmake-js');
  const given = (process.env.QRANK_CMAKE_ARGS ?? '').split(/\s+/).filter(Boolean);
  const extra = [...given, ...defines].map((a) => `--CD${a.replace(/^-D/, '')}`);
  run(process.execPath, [cli, ...args, '--out', outDir, '--parallel', jobs, ...extra]);
}

function configured(dir) {
  return existsSync(join(dir, 'CMakeCache.txt'));
}

function buildTargets(dir, targets) {
  run('cmake', ['--build', dir, '--parallel', jobs, ...targets.flatMap((t) => ['--target', t])]);
}

function targetsAfter(argv) {
  const t = argv.indexOf('--target');
  return t >= 0 ? argv.slice(t + 1).filter((a) => !a.startsWith('--')) : [];
}

// A value of an earlier configuration of build-cuda/ ('' when none).
function cachedValue(name) {
  const cache = join(cudaBuildDir, 'CMakeCache.txt');
  if (!existsSync(cache)) return '';
  return readFileSync(cache, 'utf8').match(new RegExp(`^${name}:[A-Z]+=(.*)$`, 'm'))?.[1] ?? '';
}

// nvcc and cuBLASLt, or the one message that says what is missing (scripts/find-cuda.cmake). Without
// QRANK_CUBLAS_DIR in the environment, the directory an earlier configuration used is searched first.
function findCuda() {
  const remembered = process.env.QRANK_CUBLAS_DIR ? '' : cachedValue('QRANK_CUBLAS_DIR');
  const args = [...(remembered ? [`-DQRANK_CUBLAS_DIR=${remembered}`] : []), '-P', join(root, 'scripts', 'find-cuda.cmake')];
  const r = spawnSync('cmake', args, { cwd: root, encoding: 'utf8' });
  const found = Object.fromEntries(
    r.stdout.split('\n').filter((l) => l.includes('=')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );
  if (r.status !== 0) fail(found.QRANK_CUDA_MISSING ?? `qrank: scripts/find-cuda.cmake failed: ${r.stderr.trim()}`);
  return found;
}

// The CPU build's llama.cpp static libraries, brought up to date (a no-op when they are), or null.
function cpuLlamaLibs() {
  if (!configured(cpuBuildDir)) return null;
  buildTargets(cpuBuildDir, ['llama', 'ggml', 'ggml-cpu', 'ggml-base']);
  return join(cpuBuildDir, 'llama.cpp');
}

function buildCuda(argv) {
  const cuda = findCuda();
  console.error(`qrank: CUDA build with nvcc ${cuda.QRANK_NVCC_VERSION} (${cuda.QRANK_NVCC}) and ${cuda.QRANK_CUBLASLT_LIBRARY}`);
  const llamaCuda = argv.includes('--llama-cuda');
  const llamaLibs = llamaCuda ? null : cpuLlamaLibs();
  if (!llamaCuda && !llamaLibs) console.error('qrank: no CPU build in build-core/ to reuse: llama.cpp is compiled for the CUDA build too');
  const defines = [
    '-DQRANK_CUDA=ON',
    '-DQRANK_WERROR=ON',
    `-DQRANK_CUDA_ARCH=${process.env.QRANK_CUDA_ARCH || '90'}`,
    `-DQRANK_LLAMA_CUDA=${llamaCuda ? 'ON' : 'OFF'}`,
    `-DQRANK_LLAMA_LIBS=${llamaLibs ?? ''}`,
    `-DQRANK_ADDON_DIR=${join(cudaBuildDir, 'build', 'Release')}`,
    `-DQRANK_CUBLAS_DIR=${cuda.QRANK_CUBLAS_ROOT}`,
  ];
  cmakeJs(['configure'], 'build-cuda', defines);  // every time: the options above may have changed
  buildTargets(cudaBuildDir, targetsAfter(argv));
  const info = JSON.parse(readFileSync(join(cudaBuildDir, 'qrank-build.json'), 'utf8'));
  console.error(
    `qrank: CUDA build done (${info.cudaEngine ? 'with the CUDA engine' : 'native/cuda/ has no engine yet: no_cuda.cc kept'}); ` +
      `use its addon with QRANK_PREBUILD=${cudaBuildDir}`,
  );
}

function main(argv) {
  need('cmake', 'cmake');
  ensureLlamaSource();
  ensureUsearchSource();
  if (argv.includes('--cuda')) return buildCuda(argv);
  if (argv.includes('--gyp-libs')) {
    if (!configured(cpuBuildDir)) cmakeJs(['configure'], 'build-core');
    buildTargets(cpuBuildDir, ['qrank_core']);
    // CMake writes the link line (its own static libraries, libfaiss and what FAISS needs)
    process.stdout.write(readFileSync(join(cpuBuildDir, 'gyp-libs.txt'), 'utf8'));
    return;
  }
  const targets = targetsAfter(argv);
  if (targets.length > 0) {
    if (!configured(cpuBuildDir)) cmakeJs(['configure'], 'build-core');
    buildTargets(cpuBuildDir, targets);
    return;
  }
  cmakeJs(['compile'], 'build-core');
}

main(process.argv.slice(2));
