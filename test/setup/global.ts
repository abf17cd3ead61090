/**
 * Once per test run: generate the tiny synthetic models the tests use (deterministic: the same
 * bytes every time) into test/.models/, and compile lib/ to dist/ for the tests that run qrank in
 * child processes (the CLI, kill -9, process exit), so they never see a stale build.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { makeTestModel } from '../../lib/synthetic/model';
import { MODELS, MODEL_DIR, ROOT } from '../helpers';

export default async function setup(): Promise<void> {
  mkdirSync(MODEL_DIR, { recursive: true });
  for (const [kind, path] of Object.entries(MODELS)) {
    if (!existsSync(path)) await makeTestModel({ kind: kind as keyof typeof MODELS, shape: 'tiny', out: path });
  }
  execFileSync(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json'], { cwd: ROOT, stdio: 'inherit' });
}
