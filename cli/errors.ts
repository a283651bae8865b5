// Exit codes and the one error handler every command goes through.
import { RunPlanError } from './start-run.js';
import { ZodError } from 'zod';
import { SettingsError } from '../worker/settings.js';

export const exitCodes = {
  ok: 0,
  /** Bad input: a malformed file, a flag value out of range, an unknown id. */
  invalidInput: 1,
  /** Bad usage: unknown command or option, missing argument (commander). */
  usage: 2,
  /** A part of the stack is down or unreachable. */
  unavailable: 3,
  /** `tenet dev` found a stack already running. */
  alreadyRunning: 4,
  /** A bug: an error nobody anticipated. */
  internal: 70,
} as const;

/** An error whose message is for the user, printed without a stack trace. */
export class UserError extends Error {
  override name = 'UserError';
  constructor(
    message: string,
    readonly exitCode: number = exitCodes.invalidInput,
  ) {
    super(message);
  }
}

export function handleError(error: unknown): never {
  if (error instanceof UserError) {
    console.error(`error: ${error.message}`);
    process.exit(error.exitCode);
  }
  if (error instanceof SettingsError || error instanceof RunPlanError) {
    console.error(`error: ${error.message}`);
    process.exit(exitCodes.invalidInput);
  }
  if (error instanceof ZodError) {
    console.error('error: invalid input');
    for (const issue of error.issues) console.error(`  ${issue.path.join('.') || '(root)'}: ${issue.message}`);
    process.exit(exitCodes.invalidInput);
  }
  if (isConnectionError(error)) {
    console.error(`error: ${(error as Error).message}`);
    console.error('hint: is the stack up? `tenet status` shows each part; `tenet dev` starts the embedded one.');
    process.exit(exitCodes.unavailable);
  }
  console.error('tenet: internal error (this is a bug; please report it with the trace below)');
  console.error(error instanceof Error ? (error.stack ?? error.message) : String(error));
  process.exit(exitCodes.internal);
}

function isConnectionError(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const code = (error as NodeJS.ErrnoException).code;
  return (
    code === 'ECONNREFUSED' ||
    code === 'ENOTFOUND' ||
    code === 'ETIMEDOUT' ||
    error.name === 'TransportError' ||
    /connect(ion)? (refused|failed|timed out)|Failed to connect|tcp connect error/i.test(error.message)
  );
}
