// Runs a candidate program against its test cases in an isolated child process and returns the verdict.
//
// Each run gets its own folder: the harness (runner.py / runner.cjs), the candidate and the test inputs are
// read-only, their sha256 checked after the run; the candidate works in work/, which is also its HOME and
// TMPDIR. The process chain is
//   bwrap --unshare-net --unshare-pid …       bubblewrap.ts: own mount, network (no interface up), pid, ipc and
//                                             uts namespaces and a minimal root: the candidate sees its folder
//                                             (/sandbox, work/ a tmpfs of limits.disk_bytes) and the
//                                             interpreter's files, no host process, nothing left behind
//   setpriv --reuid=U --regid=U …             as root: a fresh unprivileged uid per run, no new privileges
//   prlimit --cpu --as|--data --nproc …       CPU seconds, memory, processes, file size, open files, no core
//   timeout -s KILL                           a wall-clock bound even if this process dies
//   python -I -S | node --experimental-permission …  the harness, which loads the candidate
// with a scrubbed environment. On the wall-clock limit the namespace's first process is killed, which takes
// every process inside with it, even ones that left the process group; bwrap exits only once it is empty.
// Not root: the same through a user namespace (bwrap --unshare-user), without the own uid and process cap.
// isolation 'hooks' (asked for by name, never chosen for the caller) runs without namespaces: the network is
// refused by in-process hooks, and the candidate reads what its uid may read, with no cap on its total writes.
import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes, randomInt } from 'node:crypto';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { bwrapCommand, bwrapProblem, findInterpreter, sandboxDir, sandboxWork } from './bubblewrap.js';
import { codeOptionsSchema, judgeCodeRun, sandboxLimitsSchema, type CodeLanguage, type CodeOptions, type CodeTests, type SandboxLimits, type SandboxRun } from '../../core/verifiers/code.js';
import type { Verdict } from '../../core/verifiers/verdict.js';

export type IsolationMode = 'namespaces' | 'hooks';

export interface SandboxSettings {
  /** auto and namespaces: bubblewrap, an error where the machine does not allow it; hooks: see above. */
  isolation?: 'auto' | IsolationMode;
  /** Run with -I -S: the standard library only, no site-packages. Default /usr/bin/python3; its prefix is shown to the candidate. */
  python?: string;
  /** Default: the Node running this; its prefix is shown to the candidate. */
  node?: string;
  /** Where run folders are made (default: the OS temporary folder); other users must be able to pass through it. */
  root?: string;
}

export interface CodeProgram {
  language: CodeLanguage;
  source: string;
  /** The function the cases call. */
  entry: string;
}

export interface SandboxResult extends SandboxRun {
  isolation: Isolation;
  /** The uid the candidate ran as, when this process is root. */
  uid?: number;
  dir: string;
}

export interface Isolation {
  network: IsolationMode;
  pidNamespace: boolean;
  /** Each run as its own unprivileged uid (only when this process is root). */
  ownUser: boolean;
  /** The candidate sees only its folder and the interpreter (bubblewrap), its writes capped in total. */
  minimalRoot: boolean;
}

const here = path.dirname(fileURLToPath(import.meta.url));
const runners: Record<CodeLanguage, { file: string; source: string }> = {
  python: { file: 'runner.py', source: readFileSync(path.join(here, 'runner.py'), 'utf8') },
  javascript: { file: 'runner.cjs', source: readFileSync(path.join(here, 'runner.cjs'), 'utf8') },
};
const candidateFile: Record<CodeLanguage, string> = { python: 'candidate.py', javascript: 'candidate.js' };
const stderrTailBytes = 4_096;

export async function verifyCode(program: CodeProgram, tests: CodeTests, options: Partial<CodeOptions> = {}, settings: SandboxSettings = {}): Promise<Verdict> {
  const parsed = codeOptionsSchema.parse(options);
  const run = await runSandboxed(program, tests, parsed.limits, settings);
  const judged = judgeCodeRun(run, tests, parsed);
  return { ...judged, reason: { ...judged.reason, isolation: run.isolation.network } };
}

/** Runs the harness and the candidate in the sandbox and reports what happened; judging is core/verifiers/code.ts's. */
export async function runSandboxed(program: CodeProgram, tests: CodeTests, limits: Partial<SandboxLimits> = {}, settings: SandboxSettings = {}): Promise<SandboxResult> {
  const limit = sandboxLimitsSchema.parse(limits);
  const isolation = chooseIsolation(settings.isolation ?? 'auto');
  const uid = isolation.ownUser ? randomInt(10_000_000, 2_000_000_000) : undefined;
  const folder = prepareFolder(program, tests, uid, settings.root);
  const nonce = randomBytes(16).toString('hex');
  const command = buildCommand(program, folder, isolation, limit, uid, settings);
  const started = performance.now();
  try {
    const outcome = await supervise(command, folder.work, nonce, limit);
    return {
      ...outcome,
      nonce,
      durationMs: performance.now() - started,
      changedFiles: changedFiles(folder.dir, folder.hashes),
      isolation,
      ...(uid === undefined ? {} : { uid }),
      dir: folder.dir,
    };
  } finally {
    removeFolder(folder.dir);
  }
}

// ---- isolation ----

let probed: { root: boolean; bwrap: string | undefined } | undefined;

function probe(): { root: boolean; bwrap: string | undefined } {
  if (probed) return probed;
  for (const [tool, hint] of [['prlimit', 'util-linux'], ['timeout', 'coreutils']] as const) {
    if (spawnSync(tool, ['--version'], { stdio: 'ignore' }).status !== 0) throw new Error(`the code sandbox needs ${tool} (${hint})`);
  }
  const root = process.getuid?.() === 0;
  if (root && spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'true'], { stdio: 'ignore' }).status !== 0) {
    throw new Error('the code sandbox runs candidates as an unprivileged user and needs setpriv (util-linux)');
  }
  probed = { root, bwrap: bwrapProblem(root) };
  return probed;
}

export function chooseIsolation(requested: 'auto' | IsolationMode): Isolation {
  const machine = probe();
  if (requested !== 'hooks' && machine.bwrap !== undefined) {
    throw new Error(`${machine.bwrap} (isolation 'hooks' runs without namespaces, but does not isolate reads or cap disk use)`);
  }
  const namespaces = requested !== 'hooks';
  return { network: namespaces ? 'namespaces' : 'hooks', pidNamespace: namespaces, ownUser: machine.root, minimalRoot: namespaces };
}

interface RunFolder {
  dir: string;
  work: string;
  runner: string;
  candidate: string;
  tests: string;
  hashes: Map<string, string>;
}

function prepareFolder(program: CodeProgram, tests: CodeTests, uid: number | undefined, root = tmpdir()): RunFolder {
  const dir = mkdtempSync(path.join(root, 'tenet-sandbox-'));
  try {
    return fillFolder(dir, program, tests, uid);
  } catch (error) {
    removeFolder(dir);
    throw error;
  }
}

function fillFolder(dir: string, program: CodeProgram, tests: CodeTests, uid: number | undefined): RunFolder {
  // Others may pass through (the candidate's uid must reach work/) but not list it.
  chmodSync(dir, 0o711);
  const testsDir = path.join(dir, 'tests');
  const work = path.join(dir, 'work');
  mkdirSync(testsDir);
  mkdirSync(work, { mode: 0o700 });
  if (uid !== undefined) chownSync(work, uid, uid);
  const runner = path.join(dir, runners[program.language].file);
  const candidate = path.join(dir, candidateFile[program.language]);
  const files: [string, string][] = [
    [runner, runners[program.language].source],
    [candidate, program.source],
    [path.join(testsDir, 'visible.json'), JSON.stringify(tests.visible.map((testCase) => testCase.args))],
    [path.join(testsDir, 'hidden.json'), JSON.stringify(tests.hidden.map((testCase) => testCase.args))],
  ];
  const hashes = new Map<string, string>();
  for (const [file, content] of files) {
    writeFileSync(file, content, { mode: 0o444 });
    if (file !== candidate) hashes.set(file, sha256(content));
  }
  chmodSync(testsDir, 0o555);
  return { dir, work, runner, candidate, tests: testsDir, hashes };
}

interface Command {
  argv: string[];
  env: Record<string, string>;
}

function buildCommand(program: CodeProgram, folder: RunFolder, isolation: Isolation, limit: SandboxLimits, uid: number | undefined, settings: SandboxSettings): Command {
  const root = uid !== undefined;
  const megabytes = (mb: number) => String(mb * 1024 * 1024);
  const binary = program.language === 'python' ? (settings.python ?? defaultPython()) : (settings.node ?? process.execPath);
  // Inside the minimal root the run's folder is /sandbox; without it the candidate works in the host's paths.
  const inside = isolation.minimalRoot ? (file: string) => path.join(sandboxDir, path.relative(folder.dir, file)) : (file: string) => file;
  const argv: string[] = [];
  let interpreter = binary;
  if (isolation.minimalRoot) {
    const found = findInterpreter(program.language, binary);
    interpreter = found.executable;
    argv.push(...bwrapCommand({ root, runDir: folder.dir, interpreter: found, diskBytes: limit.disk_bytes }));
  }
  if (root) argv.push('setpriv', `--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', '--no-new-privs', '--pdeathsig', 'keep', '--');
  argv.push('prlimit', `--cpu=${limit.cpu_s}:${limit.cpu_s + 1}`, `--fsize=${limit.file_bytes}`, '--nofile=64', '--core=0');
  // A per-user process count is only meaningful when the uid is the run's own.
  if (root) argv.push(`--nproc=${limit.processes}`);
  // V8 reserves far more address space than it uses, so Node is held by its heap flag and the data limit instead.
  argv.push(program.language === 'python' ? `--as=${megabytes(limit.memory_mb)}` : `--data=${megabytes(limit.memory_mb + 256)}`, '--');
  argv.push('timeout', '-s', 'KILL', String(Math.ceil(limit.wall_ms / 1000) + 1));
  if (program.language === 'python') {
    argv.push(interpreter, '-I', '-S', '-B', inside(folder.runner));
  } else {
    argv.push(
      interpreter,
      '--experimental-permission',
      `--allow-fs-read=${inside(folder.dir)}/*`,
      `--allow-fs-write=${inside(folder.work)}/*`,
      '--no-warnings',
      `--max-old-space-size=${limit.memory_mb}`,
      inside(folder.runner),
    );
  }
  argv.push(inside(folder.candidate), inside(folder.tests), program.entry, isolation.network === 'hooks' ? '1' : '0');
  const work = isolation.minimalRoot ? sandboxWork : folder.work;
  return { argv, env: { PATH: '/usr/local/bin:/usr/bin:/bin', HOME: work, TMPDIR: work, LANG: 'C.UTF-8', PYTHONIOENCODING: 'utf-8' } };
}

let python: string | undefined;
/** An interpreter every uid can run (a pyenv shim under /root is not one). */
function defaultPython(): string {
  python ??= ['/usr/bin/python3', '/usr/local/bin/python3'].find((candidate) => spawnSync(candidate, ['-c', ''], { stdio: 'ignore' }).status === 0) ?? 'python3';
  return python;
}

// ---- the run ----

interface Outcome {
  channel: string;
  exit: { code: number | null; signal: string | null };
  timedOut: boolean;
  outputLimit: boolean;
  stderrTail: string;
}

function supervise(command: Command, work: string, nonce: string, limit: SandboxLimits): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const child = spawn(command.argv[0]!, command.argv.slice(1), {
      cwd: work,
      env: command.env,
      stdio: ['pipe', 'pipe', 'pipe', 'pipe'],
      detached: true,
    });
    const chunks: Buffer[] = [];
    let channelBytes = 0;
    let stderr = '';
    let timedOut = false;
    let outputLimit = false;
    const killGroup = () => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    };
    const stop = () => {
      // With a pid namespace, killing its first process (bwrap's child) kills everything inside, and bwrap
      // exits only once the namespace is empty; so 'close' means no process of the run is left.
      const inits = child.pid === undefined ? [] : childrenOf(child.pid);
      for (const pid of inits) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
      if (inits.length === 0) killGroup();
    };
    const timer = setTimeout(() => {
      timedOut = true;
      stop();
    }, limit.wall_ms);
    const channel = child.stdio[3] as NodeJS.ReadableStream;
    channel.on('data', (chunk: Buffer) => {
      channelBytes += chunk.length;
      if (channelBytes > limit.output_bytes) {
        if (!outputLimit) stop();
        outputLimit = true;
        return;
      }
      chunks.push(chunk);
    });
    child.stdout.resume();
    child.stderr.on('data', (chunk: Buffer) => {
      stderr = (stderr + chunk.toString()).slice(-stderrTailBytes);
    });
    child.stdin.on('error', () => {
      // the candidate side may be gone before the nonce is written
    });
    child.stdin.end(`${nonce}\n`);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once('exit', () => {
      // Nothing the candidate left in the process group outlives the run; a straggler holding the pipes open
      // (possible only without a pid namespace) does not hold up the verdict.
      killGroup();
      setTimeout(() => child.stdio.forEach((stream) => stream?.destroy()), 250).unref();
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ channel: Buffer.concat(chunks).toString(), exit: { code, signal }, timedOut, outputLimit, stderrTail: stderr });
    });
  });
}

/** Processes whose parent is `pid` (read from /proc; only needed when a run is stopped). */
function childrenOf(pid: number): number[] {
  const children: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      // The command name in parentheses may hold spaces; the parent pid is the second field after it.
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid) children.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return children;
}

function changedFiles(dir: string, hashes: Map<string, string>): string[] {
  const changed: string[] = [];
  for (const [file, hash] of hashes) {
    let now: string | undefined;
    try {
      now = sha256(readFileSync(file));
    } catch {
      now = undefined;
    }
    if (now !== hash) changed.push(path.relative(dir, file));
  }
  return changed;
}

function removeFolder(dir: string): void {
  try {
    rmSync(dir, { recursive: true, force: true });
  } catch {
    // A candidate running as this user may have taken write permission off its own folders.
    spawnSync('chmod', ['-R', 'u+rwx', dir], { stdio: 'ignore' });
    rmSync(dir, { recursive: true, force: true });
  }
}

function sha256(content: string | Buffer): string {
  return createHash('sha256').update(content).digest('hex');
}
