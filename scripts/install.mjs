#!/usr/bin/env node
// npm's install step. A prebuild for this platform (prebuilds/<platform>-<arch>/, made by
// `npm run prebuilds`) needs no compiler and is used as it is; otherwise the addon is built from
// source (llama.cpp from the npm registry, FAISS-free CPU build) with cmake-js.
// QRANK_BUILD_FROM_SOURCE=1 forces a source build.
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);

function existingBinary() {
  try {
    return require('node-gyp-build').path(root);
  } catch {
    return null;
  }
}

const found = process.env.QRANK_BUILD_FROM_SOURCE ? null : existingBinary();
if (found) {
  console.error(`qrank: using ${found.startsWith(join(root, 'prebuilds')) ? 'the prebuild' : 'the existing build'} ${found}`);
} else {
  console.error('qrank: no prebuild for this platform; building from source (cmake, a C++17 compiler)');
  execFileSync(process.execPath, [join(root, 'scripts', 'build-core.mjs'), '--addon'], { cwd: root, stdio: 'inherit' });
}
