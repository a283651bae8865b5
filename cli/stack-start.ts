// Starting the dev stack from a command, so that a Ctrl-C during start-up leaves nothing running.
import { abortStart, startDevStack, type DevStack } from '../worker/dev-stack.js';
import type { Settings } from '../worker/settings.js';

export async function startStackInterruptibly(settings: Settings, log: (line: string) => void): Promise<DevStack> {
  let aborting: Promise<void> | undefined;
  const onSignal = () => {
    if (aborting) return;
    log('interrupted during start-up; stopping what was started');
    aborting = abortStart(settings.home).finally(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    const stack = await startDevStack(settings, { log });
    // A signal that came while the last part was coming up still wins.
    if (aborting) await aborting;
    return stack;
  } catch (error) {
    // A part that fails because it was interrupted is not an error to report.
    if (aborting) await aborting;
    throw error;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

/** Stops the stack on SIGINT/SIGTERM while `work` runs, then exits 130. */
export async function stopStackOnSignal<T>(stack: DevStack, log: (line: string) => void, work: () => Promise<T>): Promise<T> {
  let stopping = false;
  const onSignal = () => {
    if (stopping) return;
    stopping = true;
    log('interrupted; stopping the stack');
    void stack.stop().finally(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    return await work();
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
