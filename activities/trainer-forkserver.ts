// A CPU-only worker's trainer processes, forked from a pre-imported interpreter
// (`python -m tenet_trainer.forkserver`, see trainer/tenet_trainer/forkserver.py): a fresh trainer
// spends 4–8 CPU-seconds importing torch, transformers and peft before its first step, and a CPU worker
// runs several short jobs per iteration. The server starts at the worker's first job and lives as long
// as the worker process (it exits when its parent does). Each job is still a process of its own, with
// its own pid (killed and signalled as before), environment, working folder and exit status; its stdout
// and stderr go to files the caller names, which the caller reads as they grow.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { constants, tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';

export interface ForkRequest {
  args: string[];
  env: NodeJS.ProcessEnv;
  cwd: string;
  stdout: string;
  stderr: string;
  /** Append to the two files (a retried job's log keeps its earlier attempts) rather than truncate them. */
  append: boolean;
}

export interface ForkedRun {
  pid: number;
  /** The exit code, or the signal that ended it; `lost` when the server went away before saying. */
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null; lost: boolean }>;
}

const STARTUP_TIMEOUT_MS = 180_000;
const signalNumbers = constants.signals as Record<string, number>;

export class TrainerForkServer {
  private static readonly shared = new Map<string, TrainerForkServer>();

  /** One server per Python in a process, whatever number of workers it runs. */
  static for(python: string): TrainerForkServer {
    let server = TrainerForkServer.shared.get(python);
    if (!server) TrainerForkServer.shared.set(python, (server = new TrainerForkServer(python)));
    return server;
  }

  private started: Promise<{ socket: string; child: ChildProcess }> | undefined;

  private constructor(private readonly python: string) {}

  private start(): Promise<{ socket: string; child: ChildProcess }> {
    const dir = mkdtempSync(path.join(tmpdir(), 'tenet-trainer-'));
    const socket = path.join(dir, 'fork.sock');
    const child = spawn(this.python, ['-m', 'tenet_trainer.forkserver', socket], { env: { ...process.env, PYTHONUNBUFFERED: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
    const stderr: string[] = [];
    createInterface({ input: child.stderr }).on('line', (line) => {
      stderr.push(line);
      if (stderr.length > 10) stderr.shift();
    });
    // The worker may exit while the server waits for jobs: nothing here keeps it alive.
    child.unref();
    (child.stdout as unknown as net.Socket).unref();
    (child.stderr as unknown as net.Socket).unref();
    const forget = () => {
      if (this.started === ready) this.started = undefined; // the next job starts a new server
      rmSync(dir, { recursive: true, force: true });
    };
    const ready = new Promise<{ socket: string; child: ChildProcess }>((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`the trainer's fork server (${this.python} -m tenet_trainer.forkserver) did not start within ${STARTUP_TIMEOUT_MS / 1000} s`));
      }, STARTUP_TIMEOUT_MS);
      timer.unref();
      child.once('error', (error) => {
        clearTimeout(timer);
        forget();
        reject(error);
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        forget();
        reject(new Error(`the trainer's fork server exited (${signal ?? `code ${code}`}) before it was ready: ${stderr.join('\n') || 'no output'}`));
      });
      createInterface({ input: child.stdout }).once('line', (line) => {
        clearTimeout(timer);
        if (line.trim() === 'ready') resolve({ socket, child });
        else {
          child.kill('SIGKILL');
          reject(new Error(`the trainer's fork server said ${JSON.stringify(line)} instead of "ready"`));
        }
      });
    });
    this.started = ready;
    ready.catch(() => undefined);
    return ready;
  }

  /** Starts the run; resolves once it has a pid. Rejects (ENOENT and all) when the server cannot start. */
  async run(request: ForkRequest): Promise<ForkedRun> {
    const { socket } = await (this.started ?? this.start());
    const connection = net.createConnection(socket);
    const lines = createInterface({ input: connection });
    const answers: string[] = [];
    const waiting: ((line: string | undefined) => void)[] = [];
    let ended = false;
    lines.on('line', (line) => (waiting.length > 0 ? waiting.shift()!(line) : answers.push(line)));
    const onEnd = () => {
      ended = true;
      for (const wake of waiting.splice(0)) wake(undefined);
    };
    lines.on('close', onEnd);
    connection.on('error', onEnd);
    const next = () => (answers.length > 0 ? Promise.resolve(answers.shift()) : ended ? Promise.resolve(undefined) : new Promise<string | undefined>((resolve) => waiting.push(resolve)));
    connection.write(JSON.stringify({ ...request, env: Object.fromEntries(Object.entries(request.env).filter((entry): entry is [string, string] => entry[1] !== undefined)) }) + '\n');
    const pidLine = await next();
    const pid = Number(pidLine);
    if (!pidLine || !Number.isInteger(pid) || pid <= 0) {
      connection.destroy();
      throw new Error(`the trainer's fork server did not start the run (answered ${JSON.stringify(pidLine ?? 'nothing')})`);
    }
    const exit = next().then((line) => {
      connection.destroy();
      const status = line === undefined ? Number.NaN : Number(line);
      if (!Number.isInteger(status)) return { code: null, signal: null, lost: true };
      if (status >= 0) return { code: status, signal: null, lost: false };
      const name = Object.entries(signalNumbers).find(([, n]) => n === -status)?.[0] as NodeJS.Signals | undefined;
      return name ? { code: null, signal: name, lost: false } : { code: 128 - status, signal: null, lost: false };
    });
    return { pid, exit };
  }
}
