/**
 * Generates the tiny synthetic models the tests use (deterministic: same bytes every time) into
 * test/.models/, once per run. Tests read their paths from test/helpers.ts.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { makeTestModel } from '../../lib/models/test-model';
import { MODELS, MODEL_DIR } from '../helpers';

export default async function setup(): Promise<void> {
  mkdirSync(MODEL_DIR, { recursive: true });
  for (const [kind, path] of Object.entries(MODELS)) {
    if (!existsSync(path)) await makeTestModel({ kind: kind as keyof typeof MODELS, shape: 'tiny', out: path });
  }
}
