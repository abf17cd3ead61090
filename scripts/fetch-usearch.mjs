#!/usr/bin/env node
// Fetches USearch's C++ source from the npm registry: the package `usearch` carries its header-only
// HNSW library (include/usearch/) and NumKong, its SIMD distance kernels with runtime CPU dispatch
// (numkong/include, numkong/c). The tarball is pinned by version and verified against its sha512
// integrity before anything is unpacked; only those directories (and the licence) are kept. Its
// JavaScript binding is not used: qrank compiles the headers into native/vector_index.cc.
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { fetchPinnedTarball, run } from './fetch-llama.mjs';

export const USEARCH_SOURCE = {
  package: 'usearch',
  version: '2.26.2',
  integrity: 'sha512-jz4MKg09LFn6CP/fh9MwY7NV3qQUcXrQIt92LV7CMx44AEnGP1QenhHReua3ETqzgoIYcISJ+SsDoX0DOpFh9Q==',
};
const KEEP = ['package/LICENSE', 'package/include/usearch', 'package/numkong/include', 'package/numkong/c', 'package/numkong/probes', 'package/numkong/LICENSE'];

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const depsDir = process.env.QRANK_DEPS_DIR ? resolve(process.env.QRANK_DEPS_DIR) : join(root, 'deps');
const srcDir = join(depsDir, 'usearch');
const stampFile = join(srcDir, '.qrank-source.json');
const stamp = JSON.stringify(USEARCH_SOURCE);

export function ensureUsearchSource() {
  if (existsSync(stampFile) && readFileSync(stampFile, 'utf8') === stamp && existsSync(join(srcDir, 'include/usearch/index.hpp'))) {
    return srcDir;
  }
  const tarball = fetchPinnedTarball(USEARCH_SOURCE, join(depsDir, 'cache'), 'USearch C++ headers and NumKong kernels');
  const tmp = `${srcDir}.tmp`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  run('tar', ['-xzf', tarball, '-C', tmp, '--strip-components=1', ...KEEP]);
  writeFileSync(join(tmp, '.qrank-source.json'), stamp);
  rmSync(srcDir, { recursive: true, force: true });
  renameSync(tmp, srcDir);
  console.error(`qrank: USearch ${USEARCH_SOURCE.version} source ready in ${srcDir}`);
  return srcDir;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  console.log(ensureUsearchSource());
}
