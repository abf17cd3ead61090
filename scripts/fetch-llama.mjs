#!/usr/bin/env node
// Fetches llama.cpp's source from the npm registry: the package node-llama-cpp ships it as a git
// bundle (llama/gitRelease.bundle). The tarball is pinned by version and verified against its
// sha512 integrity before anything is unpacked; nothing else is downloaded.
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync, renameSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const LLAMA_SOURCE = {
  package: 'node-llama-cpp',
  version: '3.22.1',
  integrity: 'sha512-bltIipuWmc123H7tMIgDGKSsSrhmhlQYeVUC48XTjVW7XGJJiJJyCdlTMzQ/LiWoPkGDpcL4FviDpgw7qfTiDw==',
  llamaCppTag: 'v0.5.0',
};

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const depsDir = process.env.QRANK_DEPS_DIR ? resolve(process.env.QRANK_DEPS_DIR) : join(root, 'deps');
const cacheDir = join(depsDir, 'cache');
const srcDir = join(depsDir, 'llama.cpp');
const stampFile = join(srcDir, '.qrank-source.json');
const stamp = JSON.stringify(LLAMA_SOURCE);

export function fail(message) {
  console.error(`qrank: ${message}`);
  process.exit(1);
}

export function run(cmd, args, opts = {}) {
  try {
    return execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
  } catch (err) {
    if (err.code === 'ENOENT') fail(`'${cmd}' was not found on PATH; install it (Debian: apt-get install ${cmd === 'git' ? 'git' : cmd}).`);
    fail(`'${cmd} ${args.join(' ')}' failed:\n${err.stderr?.toString() ?? err.message}`);
  }
}

function sha512Integrity(file) {
  return 'sha512-' + createHash('sha512').update(readFileSync(file)).digest('base64');
}

/**
 * The npm package `pkg@version` as a tarball in `cacheDir`, fetched with `npm pack` when missing and
 * verified against its pinned sha512 `integrity` (the registry's own field) before it is used.
 */
export function fetchPinnedTarball({ package: pkg, version, integrity }, dir = cacheDir, why = '') {
  mkdirSync(dir, { recursive: true });
  const name = `${pkg.replace(/^@/, '').replace('/', '-')}-${version}.tgz`;
  const tarball = join(dir, name);
  if (!existsSync(tarball) || sha512Integrity(tarball) !== integrity) {
    console.error(`qrank: fetching ${pkg}@${version} from the npm registry${why ? ` (${why})` : ''}`);
    const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
    run(npm, ['pack', `${pkg}@${version}`, '--pack-destination', dir, '--silent'], { cwd: dir });
  }
  const got = sha512Integrity(tarball);
  if (got !== integrity) {
    rmSync(tarball, { force: true });
    fail(`integrity check failed for ${name}: expected ${integrity}, got ${got}`);
  }
  return tarball;
}

function unpack(tarball) {
  const work = join(cacheDir, 'unpack');
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  run('tar', ['-xzf', tarball, '-C', work, 'package/llama/gitRelease.bundle']);
  const bundle = join(work, 'package/llama/gitRelease.bundle');
  const tmpSrc = `${srcDir}.tmp`;
  rmSync(tmpSrc, { recursive: true, force: true });
  run('git', ['clone', '--quiet', bundle, tmpSrc]);
  rmSync(join(tmpSrc, '.git'), { recursive: true, force: true });
  writeFileSync(join(tmpSrc, '.qrank-source.json'), stamp);
  rmSync(srcDir, { recursive: true, force: true });
  renameSync(tmpSrc, srcDir);
  rmSync(work, { recursive: true, force: true });
}

export function ensureLlamaSource() {
  if (existsSync(stampFile) && readFileSync(stampFile, 'utf8') === stamp && readdirSync(srcDir).includes('CMakeLists.txt')) {
    return srcDir;
  }
  unpack(fetchPinnedTarball(LLAMA_SOURCE, cacheDir, `llama.cpp ${LLAMA_SOURCE.llamaCppTag} source`));
  console.error(`qrank: llama.cpp ${LLAMA_SOURCE.llamaCppTag} source ready in ${srcDir}`);
  return srcDir;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  console.log(ensureLlamaSource());
}
