// The fault matrix's harness: every part of a run as a separate process it can SIGKILL and start
// again — the Temporal dev server with its state file, an embedded Postgres on a free port (never
// the machine's own), a worker child process and the scripted model endpoint — plus a small
// pipeline with fixed seeds, its rows read back in a form that does not depend on database ids,
// and one table row per case.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { startPipelineRun } from '../../cli/start-run.js';
import { runConfigSchema, type RunConfigInput } from '../../core/run-config.js';
import { applyMigrations } from '../../db/migrate.js';
import { createDatabase, type Database } from '../../db/pool.js';
import { dataConverterFor } from '../../worker/data-converter.js';
import { describePending, pendingFailures } from '../../worker/pending.js';
import { startEmbeddedPostgres, type EmbeddedPostgresHandle } from '../../worker/postgres.js';
import { isAlive, portInUse, stopProcess, waitFor } from '../../worker/processes.js';
import { defaultReply, fencedBlock, startScriptedEndpoint, type AdapterLoad, type RecordedRequest, type ScriptedEndpoint, type ScriptedReply } from '../../worker/scripted-endpoint.js';
import { startTemporalDevServer, type TemporalServerHandle } from '../../worker/temporal.js';
import type { pipeline } from '../../workflows/pipeline.js';
import { cliEntry, cliEnv, defaultConstitution, freePort, temporalCli, tempDir } from '../helpers.js';

export const latencyMs = 40;
export const maxConcurrency = 4;
const promptCount = 12;
const namespace = 'default';

export type CallKind = 'sample' | 'critique' | 'revision' | 'label' | 'score';

/** Which stage a model call belongs to, read from the prompt the way the scripted endpoint answers it. */
export function callKind(request: RecordedRequest): CallKind {
  const prompt = request.body.messages.find((m) => m.role === 'user')?.content ?? '';
  if (fencedBlock(prompt, 'response_a') !== undefined) return 'label';
  if (fencedBlock(prompt, 'response') !== undefined && /Revision request:/.test(prompt)) return 'revision';
  if (fencedBlock(prompt, 'response') !== undefined && /Critique request:/.test(prompt)) return 'critique';
  if (fencedBlock(prompt, 'response') !== undefined && /Score:/.test(prompt)) return 'score';
  return 'sample';
}

interface Call {
  prefix: string;
  kind: CallKind;
  body: string;
  at: number;
  /** When its answer is due; undefined for a scripted failure. */
  answeredAt: number | undefined;
}

/** A fault the endpoint itself plays for one case: every call fails this way until `until`. */
export interface EndpointFault {
  prefix: string;
  until: number;
  reply: ScriptedReply;
}

/** A hook fired once, when the nth call of a kind arrives for a case (the call stays in flight). */
interface Trigger {
  prefix: string;
  kind: CallKind;
  nth: number;
  fire: () => void;
}

class WorkerProcess {
  child: ChildProcess | undefined;
  output = '';

  constructor(
    private readonly env: Record<string, string>,
    private readonly queue: 'cpu' | 'all',
  ) {}

  async start(): Promise<void> {
    const child = spawn(process.execPath, [cliEntry, 'worker', '--queue', this.queue], { env: cliEnv(this.env), stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    let output = '';
    const collect = (chunk: Buffer) => {
      output += chunk.toString();
      this.output = output.slice(-4_000);
    };
    child.stdout.on('data', collect);
    child.stderr.on('data', collect);
    let exited: string | undefined;
    child.once('exit', (code, signal) => (exited = `${signal ?? `code ${code}`}`));
    await waitFor('the worker to poll its task queues', 90_000, () => {
      if (exited) throw new Error(`the worker exited (${exited}) during start-up:\n${output.slice(-2_000)}`);
      return Promise.resolve(output.includes('worker ready') ? true : undefined);
    });
  }

  kill(): void {
    this.child?.kill('SIGKILL');
  }

  async stop(): Promise<void> {
    if (this.child?.pid && this.child.exitCode === null && this.child.signalCode === null) await stopProcess(this.child.pid, { signal: 'SIGTERM', graceMs: 10_000 });
  }
}

export interface CaseRow {
  case: string;
  rowsLost: number | string;
  rowsDuplicated: number | string;
  /** What was done twice: model calls, or a trainer's steps. */
  repeated: string;
  outcome: string;
  recoverS: number | undefined;
}

/** Rows of a run keyed without database ids: run ids, completion ids and sequence gaps differ between runs. */
export type KeyedRows = Map<string, string[]>;

export class ChaosStack {
  readonly home = tempDir('tenet-chaos-');
  temporal!: TemporalServerHandle;
  postgres!: EmbeddedPostgresHandle;
  endpoint!: ScriptedEndpoint;
  worker!: WorkerProcess;
  db!: Database;
  client!: Client;
  private connection!: Connection;
  private ports!: { temporal: number; ui: number; postgres: number; endpoint: number };
  readonly calls: Call[] = [];
  fault: EndpointFault | undefined;
  private triggers: Trigger[] = [];
  /** Runs while the endpoint loads an adapter (see `startEndpoint`). */
  onAdapterLoad: ((load: AdapterLoad) => Promise<void> | void) | undefined;
  private readonly log = () => undefined;

  /** `queue: 'all'` runs the worker on the GPU queue too, for trainer jobs (on CPU here). */
  constructor(private readonly options: { queue: 'cpu' | 'all' } = { queue: 'cpu' }) {}

  async start(): Promise<void> {
    mkdirSync(path.join(this.home, 'logs'), { recursive: true });
    this.ports = { temporal: await freePort(), ui: await freePort(), postgres: await freePort(), endpoint: await freePort() };
    [this.temporal, this.postgres, this.endpoint] = await Promise.all([this.startTemporal(), this.startPostgres(), this.startEndpoint()]);
    await applyMigrations(this.postgres.url);
    this.db = createDatabase(this.postgres.url);
    this.connection = await Connection.connect({ address: this.temporal.address });
    // The worker's failure converter, so the failures it reports read as their messages.
    this.client = new Client({ connection: this.connection, namespace, dataConverter: dataConverterFor(undefined) });
    this.worker = new WorkerProcess({ TEMPORAL_ADDRESS: this.temporal.address, TEMPORAL_NAMESPACE: namespace, DATABASE_URL: this.postgres.url, TENET_HOME: this.home }, this.options.queue);
    await this.worker.start();
  }

  startTemporal(): Promise<TemporalServerHandle> {
    return startTemporalDevServer({ cli: temporalCli, home: this.home, port: this.ports.temporal, uiPort: this.ports.ui, namespace });
  }

  startPostgres(): Promise<EmbeddedPostgresHandle> {
    return startEmbeddedPostgres({ home: this.home, port: this.ports.postgres, log: this.log });
  }

  startEndpoint(): Promise<ScriptedEndpoint> {
    return startScriptedEndpoint({ port: this.ports.endpoint, latencyMs, script: (request) => this.answer(request), loadAdapter: (load) => this.onAdapterLoad?.(load), adapters: 'vllm' });
  }

  /** SIGKILL, then wait until the process is gone and its port is free. */
  async kill(pid: number, port: number): Promise<void> {
    process.kill(pid, 'SIGKILL');
    await waitFor(`pid ${pid} to exit`, 30_000, () => Promise.resolve(!isAlive(pid) ? true : undefined));
    await waitFor(`port ${port} to be free`, 30_000, async () => ((await portInUse(port)) ? undefined : true));
  }

  async killTemporal(): Promise<void> {
    await this.kill(this.temporal.pid, this.ports.temporal);
  }

  get postgresPort(): number {
    return this.ports.postgres;
  }

  async killPostgres(): Promise<void> {
    await this.kill(this.postgres.pid, this.ports.postgres);
  }

  private answer(request: RecordedRequest): ScriptedReply | undefined {
    const prefix = request.path.split('/')[1] ?? '';
    const now = Date.now();
    const kind = callKind(request);
    const fault = this.fault?.prefix === prefix && now < this.fault.until ? this.fault.reply : undefined;
    this.calls.push({ prefix, kind, body: JSON.stringify(request.body), at: now, answeredAt: fault ? undefined : now + latencyMs });
    const seen = this.calls.filter((c) => c.prefix === prefix && c.kind === kind).length;
    for (const trigger of this.triggers.filter((t) => t.prefix === prefix && t.kind === kind && t.nth === seen)) {
      this.triggers = this.triggers.filter((t) => t !== trigger);
      trigger.fire();
    }
    return fault ?? defaultReply(request);
  }

  /** Resolves when the nth call of `kind` arrives for the case, with the time it arrived. */
  when(prefix: string, kind: CallKind, nth: number): Promise<number> {
    return new Promise((resolve) => this.triggers.push({ prefix, kind, nth, fire: () => resolve(Date.now()) }));
  }

  /** Bodies of the case the endpoint answered more than once. */
  repeatedCalls(prefix: string): number {
    const answered = new Map<string, number>();
    for (const call of this.calls) if (call.prefix === prefix && call.answeredAt !== undefined) answered.set(call.body, (answered.get(call.body) ?? 0) + 1);
    return [...answered.values()].filter((n) => n > 1).length;
  }

  /** Calls of the case that were in flight when the fault struck or arrived before the part was back. */
  callsAtRisk(prefix: string, from: number, back: number): number {
    return this.calls.filter((c) => c.prefix === prefix && c.answeredAt !== undefined && c.answeredAt >= from - 250 && c.at <= back).length;
  }

  /** Seconds from the part being back to the case's next answered model call. */
  recoverySeconds(prefix: string, back: number): number | undefined {
    const next = this.calls.find((c) => c.prefix === prefix && c.answeredAt !== undefined && c.at >= back);
    return next ? (next.at - back) / 1000 : undefined;
  }

  /** The case's run config; `overrides` replace top-level sections (e.g. a training loop). */
  config(prefix: string, overrides: Partial<RunConfigInput> = {}) {
    const base = `http://127.0.0.1:${this.ports.endpoint}/${prefix}/v1`;
    const endpoint = { base_url: base, model: 'scripted', max_concurrency: maxConcurrency, max_retries: 2, timeout_s: 10 };
    return runConfigSchema.parse({
      endpoints: { policy: endpoint, rater: endpoint },
      sample: { n: 2, seed: 11 },
      critique: { enabled: true, rounds: 1 },
      label: { ensemble: 2 },
      scale: { batch_size: 4, shard_size: promptCount, max_batches_in_flight: 2, heartbeat_timeout_s: 3 },
      ...overrides,
    });
  }

  /** Starts the case's run: the same prompts and seeds every time; the endpoint path keeps its request cache apart. */
  async startRun(prefix: string, overrides: Partial<RunConfigInput> = {}) {
    const { constitution, source } = defaultConstitution();
    const prompts = Array.from({ length: promptCount }, (_, i) => ({
      key: `p${i}`,
      messages: [{ role: 'user' as const, content: `Question number ${i}: what should I know about topic ${i}?` }],
      split: 'train' as const,
      metadata: {},
    }));
    return startPipelineRun({ db: this.db, client: this.client, constitution, constitutionSource: source, config: this.config(prefix, overrides), prompts, workflowId: `chaos-${prefix}` });
  }

  /**
   * The run's result within `timeoutMs`. A run that has not finished by then fails the case with
   * why it is waiting (the activities Temporal retries and their last failure), never silently.
   */
  async outcome(workflowId: string, timeoutMs = 150_000): Promise<string> {
    const handle = this.client.workflow.getHandle<typeof pipeline>(workflowId);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        void this.waitingFor(workflowId).then((why) => reject(new Error(`the run did not finish within ${timeoutMs / 1000} s; waiting on: ${why}\nworker log tail:\n${this.worker.output}`)));
      }, timeoutMs);
    });
    try {
      await Promise.race([handle.result(), timeout]);
      const rows = await this.db.$client.query<{ status: string }>('select status from runs where workflow_id = $1', [workflowId]);
      return rows.rows[0]?.status ?? 'missing';
    } finally {
      clearTimeout(timer);
    }
  }

  /** What the run's pending activities last failed with, as `tenet runs show` prints it. */
  async waitingFor(workflowId: string): Promise<string> {
    const pending = await pendingFailures(this.client.workflow, workflowId).catch((error: unknown) => [{ workflowId, activity: 'describe', attempt: 0, reason: String(error) }]);
    return pending.length > 0 ? pending.map(describePending).join('; ') : 'nothing reported';
  }

  /** Polls until a pending activity of the run reports a failure matching `pattern`; returns its text. */
  async pendingReason(workflowId: string, pattern: RegExp, timeoutMs: number): Promise<string> {
    let last = 'nothing asked yet';
    try {
      return await waitFor(`a pending failure matching ${pattern}`, timeoutMs, async () => {
        last = await this.waitingFor(workflowId);
        return pattern.test(last) ? last : undefined;
      });
    } catch (error) {
      throw new Error(`${(error as Error).message}; the run last said: ${last}\nworker log tail:\n${this.worker.output}`);
    }
  }

  async rows(runId: number): Promise<KeyedRows> {
    return keyedRows(this.db, runId);
  }

  async stop(): Promise<void> {
    await this.worker?.stop().catch(() => undefined);
    await this.endpoint?.close().catch(() => undefined);
    await this.connection?.close().catch(() => undefined);
    await this.db?.$client.end().catch(() => undefined);
    await this.temporal?.stop().catch(() => undefined);
    await this.postgres?.stop().catch(() => undefined);
    rmSync(this.home, { recursive: true, force: true });
  }
}

async function keyedRows(db: Database, runId: number): Promise<KeyedRows> {
  const q = async <T extends object>(sql: string) => (await db.$client.query<T & object>(sql, [runId])).rows;
  const completions = await q<{ id: string; prompt_key: string; stage: string; iteration: number; sample_index: number; parent_id: string | null; text: string }>(
    'select c.id, p.key as prompt_key, c.stage, c.iteration, c.sample_index, c.parent_id, c.text from completions c join prompts p on p.id = c.prompt_id where c.run_id = $1',
  );
  const names = new Map(completions.map((c) => [String(c.id), `${c.prompt_key}/${c.stage}/${c.iteration}/${c.sample_index}`]));
  const name = (id: string | number | null) => (id === null ? '-' : (names.get(String(id)) ?? `unknown completion ${id}`));
  const rows: KeyedRows = new Map();
  const add = (key: string, content: string) => rows.set(key, [...(rows.get(key) ?? []), content]);
  for (const c of completions) add(`completion ${name(c.id)}`, `${name(c.parent_id)} ${c.text}`);
  for (const c of await q<{ source: string; round: number; critique: string; revision: string }>(
    'select source_completion_id as source, round, critique, revision_completion_id as revision from critiques where run_id = $1',
  )) {
    add(`critique ${name(c.source)}#${c.round}`, `${c.critique} -> ${name(c.revision)}`);
  }
  // The principle drawn for a pair is keyed by run and completion ids, so it is left out of the key.
  for (const d of await q<{ decision_key: string; parsed_choice: string | null; outcome: string }>('select decision_key, parsed_choice, outcome from rater_decisions where run_id = $1')) {
    const [base, attempt] = d.decision_key.split('#') as [string, string];
    const parts = base.split(':');
    // score:<iteration>:<completion>:<principle> and process:<iteration>:<completion>:<step>:<principle> name one completion.
    const key = parts[0] === 'score' || parts[0] === 'process' ? [parts[0], parts[1], name(parts[2]!), ...parts.slice(3)].join(':') : `${parts[0]}:${parts[1]}:${name(parts[2]!)}:${name(parts[3]!)}:${parts.at(-2)}:${parts.at(-1)}`;
    add(`decision ${key}#${attempt}`, `${d.parsed_choice} ${d.outcome}`);
  }
  for (const p of await q<{ iteration: number; low: string; high: string; chosen: string; soft_label: number; orders_agree: boolean | null; source: string }>(
    'select iteration, completion_low_id as low, completion_high_id as high, chosen_id as chosen, soft_label, orders_agree, source from preferences where run_id = $1',
  )) {
    add(`preference ${p.iteration}:${name(p.low)}:${name(p.high)}:${p.source}`, `${name(p.chosen)} ${p.soft_label.toFixed(9)} ${p.orders_agree}`);
  }
  // A training loop's rows: each rollout's reward, and the models it trained with their metrics.
  for (const r of await q<{ completion: string; iteration: number; components: Record<string, number>; total: number }>(
    'select completion_id as completion, iteration, components, total from rollout_rewards where run_id = $1',
  )) {
    add(`rollout reward ${r.iteration}:${name(r.completion)}`, `${r.total.toFixed(9)} ${JSON.stringify(Object.entries(r.components).sort())}`);
  }
  for (const m of await q<{ kind: string; iteration: number; metrics: Record<string, unknown> }>('select kind, iteration, metrics from models where run_id = $1')) {
    add(`model ${m.kind} ${m.iteration}`, JSON.stringify(Object.entries(m.metrics).sort()));
  }
  return rows;
}

/** Rows of the reference missing from the run, and rows of the run beyond one per reference key. */
export function compareRows(reference: KeyedRows, run: KeyedRows): { lost: number; duplicated: number; differing: string[] } {
  let lost = 0;
  let duplicated = 0;
  const differing: string[] = [];
  for (const [key, expected] of reference) {
    const got = run.get(key);
    if (!got) lost++;
    else if (got[0] !== expected[0]) differing.push(`${key}: expected ${expected[0]}, got ${got[0]}`);
  }
  for (const [key, got] of run) duplicated += reference.has(key) ? got.length - 1 : got.length;
  return { lost, duplicated, differing };
}

/** Prints a case's table row and keeps it for the summary. */
export function recordRow(row: CaseRow): void {
  console.log(`fault matrix: ${tableRow(row)}`);
  appendFileSync(tablePath, `${JSON.stringify(row)}\n`);
}

/** Checks a pipeline case against the reference run and records its row. */
export function recordCase(
  row: Omit<CaseRow, 'repeated'> & { callsRepeated: number; callsInFlight: number; /** What else was done again, e.g. an adapter load. */ alsoRepeated?: string },
  reference: KeyedRows,
  compared: ReturnType<typeof compareRows>,
): void {
  const { callsRepeated, callsInFlight, alsoRepeated, ...rest } = row;
  recordRow({ ...rest, repeated: `${callsRepeated} (≤ ${callsInFlight} in flight)${alsoRepeated ? `; ${alsoRepeated}` : ''}` });
  assert.ok(reference.size > 100, `the reference has ${reference.size} rows`);
  assert.deepEqual(compared.differing, [], 'rows that differ from the uninterrupted run');
  assert.equal(compared.lost, 0, 'rows lost');
  assert.equal(compared.duplicated, 0, 'rows duplicated');
  assert.equal(row.outcome, 'completed');
  assert.ok(callsRepeated <= callsInFlight, `${callsRepeated} model calls were repeated; at most the ${callsInFlight} in flight during the fault may be`);
}

/** Where the cases of one `node --test` run collect their rows for the summary table. */
const tablePath = path.join(tmpdir(), `tenet-fault-matrix-${process.ppid}.jsonl`);

export function tableRow(row: CaseRow): string {
  const recover = row.recoverS === undefined ? '-' : `${row.recoverS.toFixed(1)} s`;
  return `| ${row.case} | ${row.rowsLost} | ${row.rowsDuplicated} | ${row.repeated} | ${row.outcome} | ${recover} |`;
}

/** The table of every case run so far by this test run. */
export function printTable(): void {
  let lines: string[] = [];
  try {
    lines = readFileSync(tablePath, 'utf8').trim().split('\n').filter(Boolean);
  } catch {
    return;
  }
  const rows = lines.map((line) => JSON.parse(line) as CaseRow);
  console.log(['| case | rows lost | rows duplicated | model calls (or trainer steps) repeated | run outcome | time to recover |', '|---|---|---|---|---|---|', ...rows.map(tableRow)].join('\n'));
}
