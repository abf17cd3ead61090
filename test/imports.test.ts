/**
 * The layering of lib/ has no import cycle (a module that imports one importing it back runs with
 * half-initialised bindings): every relative import of lib/**.ts, type-only imports included, since
 * they tie the files just as much for a reader. And the CLI keeps one file per command: `qrank X`
 * is registered by lib/cli/commands/X.ts and by no other file there.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from './helpers';

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? sources(p) : p.endsWith('.ts') ? [p] : [];
  });
}

function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const out: string[] = [];
  for (const m of text.matchAll(/(?:^|\n)\s*(?:import|export)\b[^'";]*?\bfrom\s+'(\.{1,2}\/[^']+)'/g)) {
    const target = resolve(dirname(file), m[1]);
    for (const candidate of [`${target}.ts`, join(target, 'index.ts')]) {
      try {
        if (statSync(candidate).isFile()) out.push(candidate);
      } catch {
        // not this form
      }
    }
  }
  return out;
}

/** The cycles of the import graph, each as the files along it. */
function cycles(files: string[]): string[][] {
  const graph = new Map(files.map((f) => [f, importsOf(f)]));
  const state = new Map<string, 'open' | 'done'>();
  const path: string[] = [];
  const found: string[][] = [];
  const visit = (f: string) => {
    state.set(f, 'open');
    path.push(f);
    for (const g of graph.get(f) ?? []) {
      if (state.get(g) === 'open') found.push([...path.slice(path.indexOf(g)), g]);
      else if (!state.has(g)) visit(g);
    }
    path.pop();
    state.set(f, 'done');
  };
  for (const f of files) if (!state.has(f)) visit(f);
  return found;
}

describe('imports', () => {
  it('lib/ has no import cycle', () => {
    const files = sources(join(ROOT, 'lib'));
    expect(files.length).toBeGreaterThan(30);
    expect(importsOf(join(ROOT, 'lib', 'cli', 'main.ts')).length).toBeGreaterThan(5); // the scan sees imports
    const found = cycles(files).map((c) => c.map((f) => relative(ROOT, f)).join(' -> '));
    expect(found).toEqual([]);
  });

  it('each CLI command lives in the file named after it, and each file there holds one command', () => {
    const dir = join(ROOT, 'lib', 'cli', 'commands');
    const files = readdirSync(dir).filter((f) => f.endsWith('.ts')).sort();
    const registered = files.map((f) => ({
      file: f,
      // top-level commands only: `program.command('x')` (models' subcommands hang off their own command)
      commands: [...readFileSync(join(dir, f), 'utf8').matchAll(/\bprogram\s*\.command\('([a-z-]+)'\)/g)].map((m) => m[1]),
    }));
    expect(registered.length).toBeGreaterThan(8);
    expect(registered.filter((r) => r.commands.length !== 1 || `${r.commands[0]}.ts` !== r.file)).toEqual([]);
  });

  it('the program registers every command file (and nothing else)', async () => {
    const { buildProgram } = await import('../lib/cli/main');
    const sink = { write: () => true };
    const names = buildProgram({ stdout: sink, stderr: sink }).commands.map((c) => `${c.name()}.ts`).sort();
    expect(names).toEqual(readdirSync(join(ROOT, 'lib', 'cli', 'commands')).filter((f) => f.endsWith('.ts')).sort());
  });
});
