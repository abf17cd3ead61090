#!/usr/bin/env node
// The one entry point of the native build.
//   node scripts/build-core.mjs --addon       fetch llama.cpp, configure with cmake-js, build everything
//                                              (the addon lands in build/Release/qrank.node)
//   node scripts/build-core.mjs --gyp-libs    used by binding.gyp: build qrank_core and print the static
//                                              libraries node-gyp links (prebuildify's path)
//   node scripts/build-core.mjs --target T    build one CMake target (qrank_bench, llama-embedding)
// The CMake tree lives in build-core/, apart from build/, which node-gyp wipes on every rebuild.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { ensureLlamaSource } from './fetch-llama.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const buildDir = join(root, 'build-core');
const require = createRequire(import.meta.url);
const jobs = String(Number(process.env.QRANK_BUILD_JOBS) || availableParallelism());

function run(cmd, args, { quiet = false } = {}) {
  // stdout of this script is read by gyp when --gyp-libs is given, so build logs go to stderr.
  execFileSync(cmd, args, { cwd: root, stdio: ['ignore', quiet ? 'ignore' : process.stderr, process.stderr] });
}

function need(tool, pkg) {
  try {
    execFileSync(tool, ['--version'], { stdio: 'ignore' });
  } catch {
    console.error(`qrank: '${tool}' is required to build the native addon from source; install it (Debian: apt-get install ${pkg}).`);
    process.exit(1);
  }
}

function cmakeJs(args) {
  const cli = join(dirname(require.resolve('cmake-js/package.json')), 'bin', 'cmake-js');
  const extra = (process.env.QRANK_CMAKE_ARGS ?? '').split(/\s+/).filter(Boolean).map((a) => `--CD${a.replace(/^-D/, '')}`);
  run(process.execPath, [cli, ...args, '--out', 'build-core', '--parallel', jobs, ...extra]);
}

function configured() {
  return existsSync(join(buildDir, 'CMakeCache.txt'));
}

function buildTargets(targets) {
  if (!configured()) cmakeJs(['configure']);
  run('cmake', ['--build', buildDir, '--parallel', jobs, ...targets.flatMap((t) => ['--target', t])]);
}

function main(argv) {
  need('cmake', 'cmake');
  ensureLlamaSource();
  if (argv.includes('--gyp-libs')) {
    buildTargets(['qrank_core']);
    // CMake writes the link line (its own static libraries, libfaiss and what FAISS needs)
    process.stdout.write(readFileSync(join(buildDir, 'gyp-libs.txt'), 'utf8'));
    return;
  }
  const t = argv.indexOf('--target');
  if (t >= 0) {
    buildTargets(argv.slice(t + 1).filter((a) => !a.startsWith('--')));
    return;
  }
  cmakeJs(['compile']);
}

main(process.argv.slice(2));
