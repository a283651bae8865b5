// Verifier throughput. Code: candidates per second through the sandbox (namespaces, own uid, limits, read-only
// tests and their hashes, the harness), beside a bare spawn of the same interpreter running the same harness
// and candidate on the same cases, in the same run, alternating in rounds so both see the same machine load;
// prints the sandbox's per-run overhead. Math: final answers extracted and compared per second. Last line
// `ratio=<sandboxed/bare>` (wall time for the same code runs).
//   npm run bench -- verify        (BENCH_CODE_RUNS=40 per language and mode, BENCH_CONCURRENCY=2, BENCH_MATH_SECONDS=2)
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { chooseIsolation, runSandboxed, type CodeProgram } from '../activities/verifiers/sandbox.js';
import { judgeCodeRun, type CodeTests, type SandboxRun } from '../core/verifiers/code.js';
import { verifyMath } from '../core/verifiers/math.js';

const runsPerMode = Number(process.env.BENCH_CODE_RUNS ?? 40);
const concurrency = Number(process.env.BENCH_CONCURRENCY ?? 2);
const mathSeconds = Number(process.env.BENCH_MATH_SECONDS ?? 2);
const rounds = 4;

const tests: CodeTests = {
  visible: Array.from({ length: 5 }, (_, i) => ({ args: [[i, i + 3, 2 * i, 7]], expected: [...[i, i + 3, 2 * i, 7]].sort((a, b) => a - b) })),
  hidden: Array.from({ length: 10 }, (_, i) => ({ args: [[9 - i, i * i, -i, 4]], expected: [...[9 - i, i * i, -i, 4]].sort((a, b) => a - b) })),
};
const programs: CodeProgram[] = [
  { language: 'python', entry: 'sort_numbers', source: 'def sort_numbers(xs):\n    return sorted(xs)\n' },
  { language: 'javascript', entry: 'sortNumbers', source: 'function sortNumbers(xs) { return [...xs].sort((a, b) => a - b); }' },
];
const limits = { wall_ms: 10_000, cpu_s: 5, memory_mb: 256 };

const runnerDir = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'activities', 'verifiers');
const bareRoot = mkdtempSync(path.join(tmpdir(), 'tenet-bench-bare-'));

/** The baseline: the same harness and candidate, spawned directly — no namespaces, no uid change, no limits, no permission flags. */
function bareFolder(program: CodeProgram): string[] {
  const dir = path.join(bareRoot, program.language);
  mkdirSync(path.join(dir, 'tests'), { recursive: true });
  const runner = path.join(dir, program.language === 'python' ? 'runner.py' : 'runner.cjs');
  const candidate = path.join(dir, program.language === 'python' ? 'candidate.py' : 'candidate.js');
  writeFileSync(runner, readFileSync(path.join(runnerDir, path.basename(runner))));
  writeFileSync(candidate, program.source);
  writeFileSync(path.join(dir, 'tests', 'visible.json'), JSON.stringify(tests.visible.map((testCase) => testCase.args)));
  writeFileSync(path.join(dir, 'tests', 'hidden.json'), JSON.stringify(tests.hidden.map((testCase) => testCase.args)));
  const interpreter = program.language === 'python' ? ['/usr/bin/python3', '-I', '-S', '-B'] : [process.execPath];
  return [...interpreter, runner, candidate, path.join(dir, 'tests'), program.entry, '0'];
}

function bareRun(command: string[]): Promise<SandboxRun> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const nonce = randomBytes(16).toString('hex');
    // The sandbox's minimal environment: inherited variables such as NODE_EXTRA_CA_CERTS slow a start far more than isolation does.
    const child = spawn(command[0]!, command.slice(1), { stdio: ['pipe', 'pipe', 'pipe', 'pipe'], env: { PATH: '/usr/local/bin:/usr/bin:/bin', HOME: bareRoot, LANG: 'C.UTF-8' } });
    const chunks: Buffer[] = [];
    (child.stdio[3] as NodeJS.ReadableStream).on('data', (chunk: Buffer) => chunks.push(chunk));
    child.stdout.resume();
    child.stderr.resume();
    child.stdin.end(`${nonce}\n`);
    child.once('error', reject);
    child.once('close', (code, signal) =>
      resolve({ nonce, channel: Buffer.concat(chunks).toString(), exit: { code, signal }, timedOut: false, outputLimit: false, stderrTail: '', changedFiles: [], durationMs: performance.now() - started }),
    );
  });
}

async function pool(count: number, task: () => Promise<void>): Promise<number> {
  const started = performance.now();
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, async () => {
    while (next++ < count) await task();
  }));
  return (performance.now() - started) / 1000;
}

console.log(`isolation: ${JSON.stringify(chooseIsolation('auto'))}, concurrency ${concurrency}, ${runsPerMode} runs per language and mode, ${tests.visible.length + tests.hidden.length} cases per run`);
let sandboxedTotal = 0;
let bareTotal = 0;
try {
  for (const program of programs) {
    const bare = bareFolder(program);
    const latency = { sandboxed: [] as number[], bare: [] as number[] };
    let sandboxedSeconds = 0;
    let bareSeconds = 0;
    const check = (verdict: ReturnType<typeof judgeCodeRun>, mode: string) => {
      if (verdict.reward !== 1) throw new Error(`${mode} ${program.language} run did not pass: ${JSON.stringify(verdict)}`);
    };
    // Warm-up: first spawns pay for page cache and the namespace machinery.
    check(judgeCodeRun(await runSandboxed(program, tests, limits), tests), 'sandboxed');
    check(judgeCodeRun(await bareRun(bare), tests), 'bare');
    for (let round = 0; round < rounds; round++) {
      const perRound = Math.ceil(runsPerMode / rounds);
      sandboxedSeconds += await pool(perRound, async () => {
        const started = performance.now();
        check(judgeCodeRun(await runSandboxed(program, tests, limits), tests), 'sandboxed');
        latency.sandboxed.push(performance.now() - started);
      });
      bareSeconds += await pool(perRound, async () => {
        const started = performance.now();
        check(judgeCodeRun(await bareRun(bare), tests), 'bare');
        latency.bare.push(performance.now() - started);
      });
    }
    const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
    const runs = latency.sandboxed.length;
    console.log(
      `${program.language.padEnd(10)} sandboxed ${(runs / sandboxedSeconds).toFixed(1).padStart(6)} candidates/s (median ${median(latency.sandboxed).toFixed(1)} ms)   ` +
        `bare ${(runs / bareSeconds).toFixed(1).padStart(6)} candidates/s (median ${median(latency.bare).toFixed(1)} ms)   ` +
        `overhead ${(median(latency.sandboxed) - median(latency.bare)).toFixed(1)} ms per run   ratio ${(sandboxedSeconds / bareSeconds).toFixed(2)}`,
    );
    sandboxedTotal += sandboxedSeconds;
    bareTotal += bareSeconds;
  }
} finally {
  rmSync(bareRoot, { recursive: true, force: true });
}

const responses: [string, string][] = [
  ['We compute 1/2 + 1/4 = 3/4, so the answer is \\boxed{\\frac{3}{4}}.', '0.75'],
  ['Step 1: 12 * 7 = 84.\nFinal Answer: 84', '84'],
  ['The side is 2\\sqrt{2} cm.\nAnswer: 2\\sqrt{2}', 'sqrt(8)'],
  ['Expanding gives \\boxed{x^2 + 2x + 1}', '(x+1)^2'],
  ['First 42, then correcting: the total is 41.', '42'],
  ['It costs $1,000 altogether.', '1000'],
  ['So 50% of them.', '0.5'],
  ['I am not sure.', '3'],
];
let answers = 0;
const mathStarted = performance.now();
while (performance.now() - mathStarted < mathSeconds * 1000) {
  for (const [response, reference] of responses) verifyMath(response, reference);
  answers += responses.length;
}
console.log(`math       ${Math.round(answers / ((performance.now() - mathStarted) / 1000))} answers/s (extract + compare, one core)`);
console.log(`ratio=${(sandboxedTotal / bareTotal).toFixed(2)}`);
