// Code verifier, the pure half: the test-suite schema, and the verdict on what a sandbox run reported
// (activities/verifiers/sandbox.ts runs it). Test cases are data — arguments in, expected output out — and
// only the arguments enter the sandbox; outputs are compared here. A pass needs the harness's nonce-stamped
// 'done' record after one result per case, intact test files, and no tamper attempt; an exit code never counts.
import { z } from 'zod';
import { verdict, type Verdict } from './verdict.js';

export const codeLanguages = ['python', 'javascript'] as const;
export type CodeLanguage = (typeof codeLanguages)[number];

export const codeCaseSchema = z.strictObject({
  /** Positional arguments of the entry function. */
  args: z.array(z.unknown(), { error: 'expected args (a list of arguments)' }),
  expected: z.unknown().refine((value) => value !== undefined, { error: 'expected an expected output' }),
});
export type CodeCase = z.output<typeof codeCaseSchema>;

export const codeTestsSchema = z.strictObject({
  /** Shown in the prompt. */
  visible: z.array(codeCaseSchema, { error: 'expected visible (a list of {args, expected})' }).default([]),
  /** Never shown; a candidate that passes the visible cases and fails these is flagged 'hardcode-suspect'. */
  hidden: z.array(codeCaseSchema, { error: 'expected hidden (a list of {args, expected})' }).default([]),
});
export type CodeTests = z.output<typeof codeTestsSchema>;

export const sandboxLimitsSchema = z.strictObject({
  wall_ms: z.number().int().min(100).max(600_000).default(5_000),
  cpu_s: z.number().int().min(1).max(600).default(3),
  memory_mb: z.number().int().min(32).max(65_536).default(256),
  /** Bytes of results the harness may report; more ends the run as an error. */
  output_bytes: z.number().int().min(1_024).default(1 << 20),
  /** Processes and threads (only enforced where each run gets its own user). */
  processes: z.number().int().min(1).max(4_096).default(64),
  file_bytes: z.number().int().min(0).default(16 << 20),
  /** Bytes the run may write in all (its folder is a tmpfs of this size; tmpfs takes 0 as unlimited, hence the floor). */
  disk_bytes: z.number().int().min(1 << 16).max(2 ** 32).default(64 << 20),
});
export type SandboxLimits = z.output<typeof sandboxLimitsSchema>;

export const codeOptionsSchema = z.strictObject({
  /** all: 1 only when every case passes; fraction: the share of cases that pass. */
  scoring: z.enum(['all', 'fraction'], { error: "expected scoring 'all' or 'fraction'" }).default('all'),
  rel_tol: z.number().min(0).max(1).default(1e-9),
  abs_tol: z.number().min(0).default(1e-12),
  limits: sandboxLimitsSchema.default(sandboxLimitsSchema.parse({})),
});
export type CodeOptions = z.output<typeof codeOptionsSchema>;

export type CodeCode = 'match' | 'mismatch' | 'hardcode-suspect' | 'tamper' | 'timeout' | 'memory' | 'error';

/** What the sandbox observed, with no judgement yet. */
export interface SandboxRun {
  nonce: string;
  /** Everything the harness channel (fd 3) carried. */
  channel: string;
  exit: { code: number | null; signal: string | null };
  /** The parent's wall-clock limit fired. */
  timedOut: boolean;
  /** The channel outgrew limits.output_bytes and the run was stopped. */
  outputLimit: boolean;
  stderrTail: string;
  /** Test or harness files whose sha256 changed or that vanished during the run. */
  changedFiles: string[];
  durationMs: number;
}

interface ParsedChannel {
  outputs: Map<number, { out?: unknown; err?: string; mem?: boolean }>;
  done?: number;
  load?: { err: string; mem?: boolean };
  tamper: string[];
  network: string[];
  blocked: string[];
}

const signalNumbers: Record<number, string> = { 6: 'SIGABRT', 7: 'SIGBUS', 9: 'SIGKILL', 11: 'SIGSEGV', 24: 'SIGXCPU', 25: 'SIGXFSZ' };

export function judgeCodeRun(run: SandboxRun, tests: CodeTests, options: Partial<CodeOptions> = {}): Verdict<CodeCode> {
  const settings = codeOptionsSchema.parse(options);
  const total = tests.visible.length + tests.hidden.length;
  const channel = parseChannel(run.channel, run.nonce, total);
  const flags: string[] = [];
  if (channel.network.length > 0) flags.push('network-attempt');
  if (channel.blocked.length > 0) flags.push('blocked-call');
  // A process that died by a signal, told by the chain of wrappers as 128 + the signal's number.
  const signal = run.exit.signal ?? (run.exit.code !== null && run.exit.code > 128 ? (signalNumbers[run.exit.code - 128] ?? `signal ${run.exit.code - 128}`) : null);
  const base = { durationMs: Math.round(run.durationMs), exit: { ...run.exit, signal } };

  const tamper = [
    ...run.changedFiles.map((file) => `changed ${file}`),
    ...channel.tamper,
    ...(channel.done === undefined && !run.timedOut && signal === null && run.exit.code === 0 ? ['exited before the harness finished'] : []),
    ...(channel.done !== undefined && channel.load === undefined && (channel.done !== total || channel.outputs.size !== total)
      ? [`harness finished with ${channel.outputs.size} results for ${total} cases`]
      : []),
  ];
  if (tamper.length > 0) return verdict(0, 'tamper', { ...base, why: [...new Set(tamper)].slice(0, 10) }, [...flags, 'tamper']);

  const reportedMemory = channel.load?.mem === true || [...channel.outputs.values()].some((output) => output.mem);
  const memory = reportedMemory || looksOutOfMemory(run.stderrTail);
  if (channel.done === undefined) {
    // A case that ran out of memory was the first limit the candidate hit: it stays the verdict when the
    // CPU or wall limit then stops the run (each case fills memory again, and freeing it costs CPU).
    if (reportedMemory) return verdict(0, 'memory', { ...base, completed: channel.outputs.size, total }, flags);
    if (run.timedOut || signal === 'SIGXCPU' || (signal === 'SIGKILL' && !memory)) {
      return verdict(0, 'timeout', { ...base, completed: channel.outputs.size, total, limit: run.timedOut ? 'wall' : 'cpu' }, flags);
    }
    if (memory) return verdict(0, 'memory', { ...base, completed: channel.outputs.size, total }, flags);
    if (run.outputLimit) return verdict(0, 'error', { ...base, why: 'output-limit' }, flags);
    return verdict(0, 'error', { ...base, why: 'crashed', stderr: run.stderrTail.slice(-500) }, flags);
  }
  if (memory) return verdict(0, 'memory', { ...base, completed: channel.outputs.size, total }, flags);
  if (channel.load) return verdict(0, 'error', { ...base, why: 'load', error: channel.load.err }, flags);

  const failed = { visible: [] as number[], hidden: [] as number[] };
  const errors: Record<number, string> = {};
  [...tests.visible, ...tests.hidden].forEach((testCase, index) => {
    const output = channel.outputs.get(index);
    const passed = output !== undefined && output.err === undefined && outputsEqual(testCase.expected, output.out, settings);
    if (passed) return;
    (index < tests.visible.length ? failed.visible : failed.hidden).push(index < tests.visible.length ? index : index - tests.visible.length);
    if (output?.err !== undefined && Object.keys(errors).length < 5) errors[index] = output.err;
  });
  const passed = total - failed.visible.length - failed.hidden.length;
  const reward = settings.scoring === 'all' ? (passed === total ? 1 : 0) : total === 0 ? 0 : passed / total;
  const detail = {
    ...base,
    passed,
    total,
    visible: { passed: tests.visible.length - failed.visible.length, total: tests.visible.length, failed: failed.visible.slice(0, 20) },
    hidden: { passed: tests.hidden.length - failed.hidden.length, total: tests.hidden.length, failed: failed.hidden.length },
    ...(Object.keys(errors).length > 0 ? { errors } : {}),
  };
  if (passed === total) return verdict(reward, 'match', detail, flags);
  if (tests.hidden.length > 0 && failed.visible.length === 0) return verdict(reward, 'hardcode-suspect', detail, [...flags, 'hardcode-suspect']);
  return verdict(reward, 'mismatch', detail, flags);
}

/** The harness's records: lines "<nonce> <json>". A line without the nonce, a second result for a case or anything after 'done' is tampering. */
export function parseChannel(text: string, nonce: string, total: number): ParsedChannel {
  const parsed: ParsedChannel = { outputs: new Map(), tamper: [], network: [], blocked: [] };
  const prefix = `${nonce} `;
  const lines = text.split('\n');
  if (lines.at(-1) === '') lines.pop();
  for (const line of lines) {
    if (!line.startsWith(prefix)) {
      parsed.tamper.push('a record without the harness nonce');
      continue;
    }
    if (parsed.done !== undefined) {
      parsed.tamper.push('a record after the harness finished');
      continue;
    }
    let record: Record<string, unknown>;
    try {
      record = JSON.parse(line.slice(prefix.length)) as Record<string, unknown>;
    } catch {
      parsed.tamper.push('an unreadable harness record');
      continue;
    }
    switch (record.t) {
      case 'case': {
        const index = record.i;
        if (typeof index !== 'number' || !Number.isInteger(index) || index < 0 || index >= total || parsed.outputs.has(index)) {
          parsed.tamper.push(`a duplicate or unknown case ${String(index)}`);
          break;
        }
        parsed.outputs.set(index, {
          ...('out' in record ? { out: record.out } : {}),
          ...(typeof record.err === 'string' ? { err: record.err } : {}),
          ...(record.mem === true ? { mem: true } : {}),
        });
        break;
      }
      case 'done':
        parsed.done = typeof record.n === 'number' ? record.n : -1;
        break;
      case 'load':
        parsed.load = { err: String(record.err), ...(record.mem === true ? { mem: true } : {}) };
        break;
      case 'tamper':
        parsed.tamper.push(`${String(record.op)} ${String(record.path)}`);
        break;
      case 'net':
        parsed.network.push(`${String(record.op)} ${String(record.addr)}`);
        break;
      case 'blocked':
        parsed.blocked.push(String(record.op));
        break;
      default:
        parsed.tamper.push(`an unknown harness record ${String(record.t)}`);
    }
  }
  return parsed;
}

function looksOutOfMemory(stderr: string): boolean {
  return /MemoryError|heap out of memory|Reached heap limit|Fatal process OOM|Cannot allocate memory|std::bad_alloc|Array buffer allocation failed/.test(stderr);
}

/** Equal JSON, with numbers compared within tolerance (1 and 1.0 are the same; key order is ignored). */
export function outputsEqual(expected: unknown, actual: unknown, tolerance: { rel_tol: number; abs_tol: number }): boolean {
  if (typeof expected === 'number' && typeof actual === 'number') {
    return expected === actual || Math.abs(expected - actual) <= Math.max(tolerance.abs_tol, tolerance.rel_tol * Math.max(Math.abs(expected), Math.abs(actual)));
  }
  if (Array.isArray(expected) || Array.isArray(actual)) {
    return Array.isArray(expected) && Array.isArray(actual) && expected.length === actual.length && expected.every((value, i) => outputsEqual(value, actual[i], tolerance));
  }
  if (expected !== null && actual !== null && typeof expected === 'object' && typeof actual === 'object') {
    const left = expected as Record<string, unknown>;
    const right = actual as Record<string, unknown>;
    const keys = Object.keys(left);
    return keys.length === Object.keys(right).length && keys.every((key) => key in right && outputsEqual(left[key], right[key], tolerance));
  }
  return expected === actual;
}

const languageTags: Record<CodeLanguage, string[]> = { python: ['python', 'python3', 'py'], javascript: ['javascript', 'js', 'node', 'mjs', 'cjs'] };

/** The program in a model's response: its last fenced code block in the language (or untagged), else the whole text. */
export function extractProgram(response: string, language: CodeLanguage): string {
  const blocks = [...response.matchAll(/```[ \t]*([\w+-]*)[^\n]*\n([\s\S]*?)```/g)];
  const fitting = blocks.filter((block) => block[1] === '' || languageTags[language].includes(block[1]!.toLowerCase()));
  return fitting.at(-1)?.[2] ?? response;
}
