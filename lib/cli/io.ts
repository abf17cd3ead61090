/**
 * What every CLI command shares with the entry point (lib/cli/main.ts) without importing it: where
 * output goes, and the error that means "bad arguments" (exit 2).
 */

/** Where a command writes; injectable so that tests can capture output. */
export interface CliIO {
  stdout: { write(s: string): unknown; isTTY?: boolean };
  stderr: { write(s: string): unknown; isTTY?: boolean };
}

/** Thrown by commands for invalid arguments that commander cannot check itself (exit code 2). */
export class UsageError extends Error {}
