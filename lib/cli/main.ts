#!/usr/bin/env node
/**
 * The `qrank` command line. Each subcommand lives in its own module under ./commands, named after it
 * (`qrank rerank` in commands/rerank.ts), and registers itself on the program; this file wires up output, exit codes and error reporting:
 *   0  success (including --help and --version)
 *   1  the command failed (one line on stderr: `qrank: <message>`)
 *   2  bad command-line arguments
 *   3  partial success (qrank index: some records were rejected; the others were stored)
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Command, CommanderError } from 'commander';
import { registerDemo } from './commands/demo';
import { registerMakeTestModel } from './commands/make-test-model';
import { registerServe } from './commands/serve';
import { registerIndex } from './commands/index';
import { registerSearch } from './commands/search';
import { registerEval } from './commands/eval';
import { registerModels } from './commands/models';
import { registerRerank } from './commands/rerank';
import { registerEmbed } from './commands/embed';
import { registerBench } from './commands/bench';
import { type CliIO, UsageError } from './io';
import { ConfigError, applyConfig, readConfig } from './shared';


function packageVersion(): string {
  try {
    // lib/cli or dist/cli: the package root is two levels up either way.
    const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', 'package.json'), 'utf8'));
    return String(pkg.version);
  } catch {
    return 'unknown';
  }
}

/** Builds the program with every subcommand registered. */
export function buildProgram(io: CliIO): Command {
  const program = new Command('qrank')
    .description('In-process multilingual search core: Qwen3 embedding and reranking through llama.cpp')
    .version(packageVersion(), '-V, --version')
    .option('--config <file>', 'JSON config file (env QRANK_CONFIG; default ./qrank.config.json when present); flags and environment take precedence')
    // Errors become exceptions (handled in runCli) instead of process.exit, in the program and its subcommands.
    .exitOverride()
    .configureOutput({
      writeOut: (s) => io.stdout.write(s),
      writeErr: (s) => io.stderr.write(s),
      outputError: (s, write) => write(`qrank: ${s.replace(/^error: /, '')}`),
    });
  registerMakeTestModel(program, io);
  registerDemo(program, io);
  registerServe(program, io);
  registerIndex(program, io);
  registerSearch(program, io);
  registerEval(program, io);
  registerRerank(program, io);
  registerEmbed(program, io);
  registerBench(program, io);
  registerModels(program, io);
  // options that neither a flag nor the environment set come from the config file
  program.hook('preAction', (root, action) => {
    const names = root.commands.map((c) => c.name());
    applyConfig(action, readConfig(root.opts().config as string | undefined), names);
  });
  return program;
}

/** Collapses an error to the one-line message printed after `qrank: `. */
function oneLine(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  return message.replace(/\s*\n\s*/g, ' ').trim() || 'unknown error';
}

/** Runs the CLI on `args` (without node and script path) and returns the exit code. */
export async function runCli(args: string[], io: CliIO = { stdout: process.stdout, stderr: process.stderr }): Promise<number> {
  const program = buildProgram(io);
  try {
    await program.parseAsync(args, { from: 'user' });
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2; // commander already printed the message
    io.stderr.write(`qrank: ${oneLine(err)}\n`);
    return err instanceof UsageError || err instanceof ConfigError ? 2 : 1;
  }
}

// Run only as the entry point (not when imported by tests; ESM-style test runners define no `module`).
if (typeof module !== 'undefined' && require.main === module) {
  runCli(process.argv.slice(2)).then((code) => {
    // a command may report partial success itself (qrank index: 3 when records were rejected)
    process.exitCode = code !== 0 ? code : (process.exitCode ?? 0);
  });
}
