#!/usr/bin/env node
// Builds FAISS 1.7.3 from Debian's own source package with AVX2 kernels (FAISS_OPT_LEVEL=avx2), for
// the side-by-side benchmark of the vector index (bench/ann-bench.mjs); qrank itself links the
// system's libfaiss (IVF kinds) and needs none of this.
//
//   node scripts/build-faiss.mjs   -> build-faiss/lib/debian-avx2/libfaiss_avx2.a  (Debian's source as is)
//                                     build-faiss/lib/fixed-avx2/libfaiss_avx2.a   (+ the HNSW fix)
//                                     headers: build-faiss/src (the same for both)
//
// The source comes through apt with a private sources list (a deb-src line for bookworm, lists and
// downloads under build-faiss/apt; the system's apt setup is not touched), is checked against the
// pinned sha256 sums below, unpacked with dpkg-source (which applies Debian's patches), and built
// twice: once as Debian ships it, once with scripts/patches/faiss-1.7.3-hnsw-minimax-nvalid.patch
// (the HNSW search bug upstream fixed in 1.7.4). Static libraries,
// Release (-O3), OpenMP and OpenBLAS as Debian's build; no GPU, Python or C API.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const FAISS_SOURCE = {
  package: 'faiss',
  version: '1.7.3-2',
  suite: 'bookworm',
  sha256: {
    'faiss_1.7.3-2.dsc': '432937bbdfc7e14783685762e360b68f9ab74f1599319697d756b27585e83dbd',
    'faiss_1.7.3.orig.tar.gz': '3e4fac26d8c9e9008ecea4ae5fc414c658998fce4ba75835058b1a71d3516002',
    'faiss_1.7.3-2.debian.tar.xz': 'a351977533afa5575b21de74a58cacb66d846006b1ef971bed85e01e66eb7f94',
  },
};

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const out = process.env.QRANK_FAISS_BUILD_DIR ? resolve(process.env.QRANK_FAISS_BUILD_DIR) : join(root, 'build-faiss');
const aptDir = join(out, 'apt');
const srcDir = join(out, 'src');
const patch = join(root, 'scripts', 'patches', 'faiss-1.7.3-hnsw-minimax-nvalid.patch');
const jobs = String(Number(process.env.QRANK_BUILD_JOBS) || availableParallelism());

function run(cmd, args, opts = {}) {
  execFileSync(cmd, args, { stdio: ['ignore', process.stderr, process.stderr], ...opts });
}

const sha256 = (file) => createHash('sha256').update(readFileSync(file)).digest('hex');

function download() {
  const files = Object.keys(FAISS_SOURCE.sha256).map((f) => join(aptDir, 'src', f));
  if (files.every((f) => existsSync(f) && sha256(f) === FAISS_SOURCE.sha256[f.slice(f.lastIndexOf('/') + 1)])) return files;
  mkdirSync(join(aptDir, 'lists', 'partial'), { recursive: true });
  mkdirSync(join(aptDir, 'cache', 'archives', 'partial'), { recursive: true });
  mkdirSync(join(aptDir, 'src'), { recursive: true });
  writeFileSync(join(aptDir, 'sources.list'), `deb-src http://deb.debian.org/debian ${FAISS_SOURCE.suite} main\n`);
  const o = [
    `-oDir::Etc::SourceList=${join(aptDir, 'sources.list')}`, '-oDir::Etc::SourceParts=/dev/null',
    `-oDir::State::Lists=${join(aptDir, 'lists')}`, `-oDir::Cache=${join(aptDir, 'cache')}`,
  ];
  run('apt-get', [...o, 'update']);
  run('apt-get', [...o, 'source', '--download-only', `${FAISS_SOURCE.package}=${FAISS_SOURCE.version}`], { cwd: join(aptDir, 'src') });
  for (const f of files) {
    const name = f.slice(f.lastIndexOf('/') + 1);
    if (sha256(f) !== FAISS_SOURCE.sha256[name]) throw new Error(`qrank: ${name} does not match its pinned sha256`);
  }
  return files;
}

function unpack(dsc) {
  const stamp = join(srcDir, '.qrank-source.json');
  if (existsSync(stamp) && readFileSync(stamp, 'utf8') === JSON.stringify(FAISS_SOURCE)) return;
  rmSync(srcDir, { recursive: true, force: true });
  run('dpkg-source', ['--no-check', '-x', dsc, srcDir]);  // the sums were checked above
  writeFileSync(stamp, JSON.stringify(FAISS_SOURCE));
}

// One CMake build of faiss_avx2 from `source` into `build`.
function build(source, build) {
  if (!existsSync(join(build, 'CMakeCache.txt'))) {
    run('cmake', ['-S', source, '-B', build, '-DCMAKE_BUILD_TYPE=Release', '-DFAISS_OPT_LEVEL=avx2',
      '-DFAISS_ENABLE_GPU=OFF', '-DFAISS_ENABLE_PYTHON=OFF', '-DFAISS_ENABLE_C_API=OFF', '-DBUILD_TESTING=OFF',
      '-DBUILD_SHARED_LIBS=OFF', '-DBLA_VENDOR=OpenBLAS', '-DCMAKE_POSITION_INDEPENDENT_CODE=ON']);
  }
  run('cmake', ['--build', build, '--parallel', jobs, '--target', 'faiss_avx2']);
  return join(build, 'faiss', 'libfaiss_avx2.a');
}

// Debian's source as it is, or with the fix: the patch is applied (or reverted) in place, so the
// second build recompiles the one file it touches.
function setPatched(want) {
  const mark = join(srcDir, '.qrank-patched');
  if (existsSync(mark) === want) return;
  run('patch', ['-p1', ...(want ? [] : ['-R']), '-i', patch], { cwd: srcDir });
  if (want) writeFileSync(mark, readFileSync(patch));
  else rmSync(mark);
}

function main() {
  const [dsc] = download();
  unpack(dsc);
  const libs = { plain: join(out, 'lib', 'debian-avx2', 'libfaiss_avx2.a'), fixed: join(out, 'lib', 'fixed-avx2', 'libfaiss_avx2.a') };
  for (const [variant, lib] of Object.entries(libs)) {
    if (existsSync(lib) && variant === 'plain') continue;
    setPatched(variant === 'fixed');
    const built = build(srcDir, join(out, 'build'));
    mkdirSync(dirname(lib), { recursive: true });
    cpSync(built, lib);
  }
  console.log(JSON.stringify({ include: srcDir, debianAvx2: libs.plain, fixedAvx2: libs.fixed }));
}

main();
