/**
 * The package as users get it: `npm run prebuilds` makes prebuilds/linux-x64/, `npm pack` makes the
 * tarball, and an empty project installs it and scores with it on a PATH that has no compiler,
 * cmake or make. Runs in a copy of the package so the running suite's build/ is never touched.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { MODELS, ROOT } from './helpers';

const work = mkdtempSync(join(tmpdir(), 'qrank-pack-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function run(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = process.env): string {
  return execFileSync(cmd, args, { cwd, env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 << 20 });
}

/** Starts `qrank serve --port 0`, waits for it to listen, posts one rerank request, stops it with SIGTERM. */
async function serveOnce(cli: string, cwd: string, env: NodeJS.ProcessEnv): Promise<{ rerank: { results: unknown[] }; log: string }> {
  const child = spawn(process.execPath, [cli, 'serve', '--port', '0', '--threads', '1'], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  const address = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`qrank serve did not start: ${log}`)), 120_000);
    const onData = (chunk: Buffer) => {
      log += chunk.toString();
      const m = /"address":"(http:[^"]+)"/.exec(log);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('exit', (code) => reject(new Error(`qrank serve exited with ${code}: ${log}`)));
  });
  try {
    const res = await fetch(`${address}/v1/rerank`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ query: 'auriculares bluetooth', documents: ['wireless headphones', 'kitchen knife'] }),
    });
    expect(res.status).toBe(200);
    return { rerank: (await res.json()) as { results: unknown[] }, log };
  } finally {
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
  }
}

describe('packaging', () => {
  it('prebuilds, packs, installs in an empty project and loads and serves without a compiler', { timeout: 600_000 }, async () => {
    const pkg = join(work, 'pkg');
    mkdirSync(pkg);
    for (const f of ['package.json', 'binding.gyp', 'CMakeLists.txt', 'tsconfig.json', 'tsconfig.build.json', 'addon', 'native', 'lib', 'scripts', 'bench', 'vocab', 'web', 'eval']) {
      cpSync(join(ROOT, f), join(pkg, f), { recursive: true });
    }
    // the dependencies, the llama.cpp source and the CMake tree of this checkout are reused
    for (const d of ['node_modules', 'deps', 'build-core']) symlinkSync(join(ROOT, d), join(pkg, d));

    run('npm', ['run', 'prebuilds', '--silent'], pkg);
    const prebuilt = readdirSync(join(pkg, 'prebuilds', `${process.platform}-${process.arch}`));
    expect(prebuilt.some((f) => f.endsWith('.node'))).toBe(true);

    const tarball = run('npm', ['pack', '--silent'], pkg).trim().split('\n').pop()!;
    const listing = run('tar', ['tzf', join(pkg, tarball)], pkg);
    expect(listing).toContain(`package/prebuilds/${process.platform}-${process.arch}/`);
    expect(listing).toContain('package/dist/index.js');
    expect(listing).not.toContain('package/test/');

    // a PATH with node and sh alone (npm runs install scripts with sh): no cc, c++, make, cmake, python
    const bin = join(work, 'bin');
    mkdirSync(bin);
    symlinkSync(process.execPath, join(bin, 'node'));
    symlinkSync('/bin/sh', join(bin, 'sh'));
    const npmCli = realpathSync(run('sh', ['-c', 'command -v npm'], ROOT).trim());
    const bare = { ...process.env, PATH: bin, CC: '/bin/false', CXX: '/bin/false' };

    const app = join(work, 'app');
    mkdirSync(app);
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true }));
    const install = spawnSync(process.execPath, [npmCli, 'install', '--no-audit', '--no-fund', '--prefer-offline', '--foreground-scripts', join(pkg, tarball)], {
      cwd: app,
      env: bare,
      encoding: 'utf8',
    });
    expect(install.status, install.stderr).toBe(0);
    expect(install.stderr + install.stdout).toContain('qrank: using the prebuild');
    expect(existsSync(join(app, 'node_modules', 'qrank', 'build'))).toBe(false);

    // the optional better-sqlite3 could not be compiled here: scoring works, collections say what is missing
    const script = `
      const { Reranker, Embedder, SearchEngine } = require('qrank');
      (async () => {
        const rr = await Reranker.load({ model: ${JSON.stringify(MODELS.reranker)}, threads: 1 });
        const em = await Embedder.load({ model: ${JSON.stringify(MODELS.embedder)}, threads: 1 });
        const results = await rr.rerank('auriculares bluetooth', ['wireless headphones', 'kitchen knife']);
        const se = await SearchEngine.open({ dir: ${JSON.stringify(join(work, 'data'))}, embedder: em, reranker: rr });
        const collection = await se.collection('p').then(() => 'opened', (e) => e.code + ': ' + e.message);
        console.log(JSON.stringify({ results, collection }));
        await rr.close();
        await em.close();
      })();`;
    const out = JSON.parse(run(process.execPath, ['-e', script], app, bare));
    expect(out.results).toHaveLength(2);
    expect(out.results[0].score).toBeGreaterThan(0);
    expect(out.results[0].score).toBeLessThan(1);
    expect(out.collection).toMatch(/^UNSUPPORTED: .*npm install better-sqlite3/);

    // `npx qrank serve` with no models: the synthetic demo models are generated from the vocabulary
    // the package ships (there is no llama.cpp source tree here), and the APIs answer
    const serveEnv = { ...bare, XDG_CACHE_HOME: join(work, 'cache'), XDG_DATA_HOME: join(work, 'share'), QRANK_LOG_LEVEL: 'info' };
    const served = await serveOnce(join(app, 'node_modules', 'qrank', 'dist', 'cli', 'main.js'), app, serveEnv);
    expect(served.rerank.results).toHaveLength(2);
    expect(served.log).toContain('SYNTHETIC');
  });
});
