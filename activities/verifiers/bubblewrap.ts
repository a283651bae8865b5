// The code sandbox's view of the machine: a bubblewrap (bwrap, Debian's `bubblewrap`) command line that puts a
// candidate in its own mount, network, pid, ipc and uts namespaces with a minimal root made of
//   /usr, /bin, /lib* …      read-only, as the host has them (a merged-/usr symlink stays a symlink)
//   the interpreter's prefix read-only, found from the interpreter itself (sys.base_prefix, process.execPath)
//   /proc                    a fresh one of the new pid namespace: /proc/1 is bwrap's own init
//   /dev                     null, zero, random, urandom, tty, pts, shm (bwrap's minimal set)
//   /sandbox                 the run's folder (harness, candidate, tests) read-only
//   /sandbox/work            a tmpfs of limits.disk_bytes: the candidate's cwd, HOME and TMPDIR; /tmp points here
// and nothing else: no /etc, no /home or /root, no project, no other run's folder. The root itself is bwrap's
// tmpfs, owned by root and not writable by the candidate, so the work tmpfs is all it can write.
import { spawnSync } from 'node:child_process';
import { existsSync, lstatSync, readlinkSync, realpathSync } from 'node:fs';
import { homedir } from 'node:os';
import path from 'node:path';
import type { CodeLanguage } from '../../core/verifiers/code.js';

/** Where the run's folder appears inside the sandbox. */
export const sandboxDir = '/sandbox';
export const sandboxWork = `${sandboxDir}/work`;
const systemDirs = ['/usr', '/bin', '/sbin', '/lib', '/lib32', '/lib64', '/libx32'];
export const missingBwrap = 'the code sandbox needs bubblewrap (bwrap): apt-get install bubblewrap';

export interface Interpreter {
  /** The real path of the binary, run inside the sandbox. */
  executable: string;
  /** Folders outside the system ones that it needs, bound read-only at the same paths. */
  roots: string[];
}

/** The host's system folders, read-only, with symlinks (merged /usr) kept as symlinks. */
function systemMounts(): string[] {
  const args: string[] = [];
  for (const dir of systemDirs) {
    if (!existsSync(dir)) continue;
    if (lstatSync(dir).isSymbolicLink()) args.push('--symlink', readlinkSync(dir), dir);
    else args.push('--ro-bind', dir, dir);
  }
  return args;
}

/** Namespaces and the base of the root; without root bwrap needs a user namespace (and the run keeps this uid). */
function baseArgs(root: boolean): string[] {
  return [
    ...(root ? [] : ['--unshare-user']),
    '--unshare-net',
    '--unshare-pid',
    '--unshare-ipc',
    '--unshare-uts',
    '--unshare-cgroup-try',
    '--die-with-parent',
    '--new-session',
    ...systemMounts(),
    '--proc',
    '/proc',
    '--dev',
    '/dev',
  ];
}

/** Why bwrap cannot sandbox on this machine, or undefined when it can. */
export function bwrapProblem(root: boolean): string | undefined {
  const result = spawnSync('bwrap', [...baseArgs(root), '--', 'true'], { encoding: 'utf8' });
  if (result.error) return missingBwrap;
  if (result.status !== 0) return `bubblewrap cannot create the sandbox's namespaces here: ${result.stderr.trim() || `exit ${String(result.status)}`}`;
  return undefined;
}

const interpreters = new Map<string, Interpreter>();
const discover: Record<CodeLanguage, string[]> = {
  python: ['-I', '-S', '-c', 'import os, sys\nprint(os.path.realpath(sys.executable))\nprint(sys.base_prefix)\nprint(sys.base_exec_prefix)'],
  javascript: ['-e', 'const fs = require("fs"); console.log(fs.realpathSync(process.execPath))'],
};

/** The interpreter's binary and install prefix, asked of the interpreter itself (once per binary). */
export function findInterpreter(language: CodeLanguage, binary: string): Interpreter {
  const key = `${language}\0${binary}`;
  const known = interpreters.get(key);
  if (known) return known;
  const result = spawnSync(binary, discover[language], { encoding: 'utf8', env: { PATH: '/usr/local/bin:/usr/bin:/bin', LANG: 'C.UTF-8' } });
  if (result.status !== 0) throw new Error(`the ${language} interpreter ${binary} does not run: ${(result.error?.message ?? result.stderr).trim()}`);
  const [executable, ...prefixes] = result.stdout.trim().split('\n');
  // The binary's own prefix (…/bin/python3 → …), and the standard library's.
  const candidates = [path.dirname(path.dirname(executable!)), ...prefixes].map((dir) => realpathSync(dir));
  const roots = [...new Set(candidates)].filter((dir) => !systemDirs.some((system) => dir === system || dir.startsWith(`${system}/`)));
  const within = (dir: string, inner: string) => dir === '/' || inner === dir || inner.startsWith(`${dir}/`);
  for (const dir of roots) {
    // A prefix this broad would show the candidate the worker's home or the project.
    if (within(dir, homedir()) || within(dir, process.cwd())) {
      throw new Error(`the ${language} interpreter ${binary} is installed under ${dir}, too broad to show a candidate; use one installed under its own prefix`);
    }
  }
  const found = { executable: executable!, roots };
  interpreters.set(key, found);
  return found;
}

/** The bwrap command line up to `--`: the minimal root with the run's folder at /sandbox and its capped work tmpfs. */
export function bwrapCommand(options: { root: boolean; runDir: string; interpreter: Interpreter; diskBytes: number }): string[] {
  return [
    'bwrap',
    ...baseArgs(options.root),
    ...options.interpreter.roots.flatMap((dir) => ['--ro-bind', dir, dir]),
    '--ro-bind',
    options.runDir,
    sandboxDir,
    // One tmpfs for everything the run writes, so the cap is on the total; open to the run's own uid.
    '--size',
    String(options.diskBytes),
    '--tmpfs',
    sandboxWork,
    '--chmod',
    '1777',
    sandboxWork,
    '--symlink',
    sandboxWork,
    '/tmp',
    '--chdir',
    sandboxWork,
    '--',
  ];
}
