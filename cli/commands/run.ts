// `tenet run` and `tenet runs list|show|cancel|pause|resume`
import type { Client } from '@temporalio/client';
import proto from '@temporalio/proto';
import { Command } from 'commander';
import { z } from 'zod';
import { taskQueues } from '../../core/queues.js';
import { findRun as findRunRow, listRuns, runMetrics } from '../../db/queries/runs.js';
import { runStatuses } from '../../db/schema.js';
import { checkQueue } from '../../worker/health.js';
import { describePending, pendingFailures, type PendingFailure } from '../../worker/pending.js';
import { controlRun, RunWorkflowMissing, type RunAction } from '../../worker/run-control.js';
import type { pipeline } from '../../workflows/pipeline.js';
import { progressQuery } from '../../workflows/types.js';
import { requireConstitution } from '../constitution-file.js';
import { closeAll, openDatabase, openTemporal } from '../context.js';
import { exitCodes, UserError } from '../errors.js';
import { parseOptions, printJson } from '../options.js';
import { emitEvent, followRun, progressMode, progressModes, progressOption } from '../progress.js';
import { readPrompts, readRunConfig } from '../run-files.js';
import { startPipelineRun } from '../start-run.js';

/** Without --config a run talks to a local OpenAI-compatible server, e.g. `trainer serve`. */
export const localEndpoints = {
  endpoints: {
    policy: { base_url: 'http://127.0.0.1:8000/v1', model: 'local' },
    rater: { base_url: 'http://127.0.0.1:8000/v1', model: 'local' },
  },
};

const runOptions = z.object({
  constitution: z.string().min(1),
  prompts: z.string().min(1),
  config: z.string().min(1).optional(),
  workflowId: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._/-]{0,200}$/, { error: "expected letters, digits, '.', '_', '-', '/'" }).optional(),
  detach: z.boolean().default(false),
  json: z.boolean().default(false),
  progress: z.enum(progressModes).optional(),
});

export const runCommand = new Command('run')
  .description('start a pipeline run (sample → critique/revise → label); everything is validated before anything starts')
  .requiredOption('--constitution <file>', 'constitution YAML')
  .requiredOption('--prompts <file>', 'prompts JSONL: {"id"?, "prompt"} or {"id"?, "messages": [...]} per line; or verifiable tasks (lines with a "verifier")')
  .option('--config <file>', 'run config YAML (endpoints, sampling, label and scale settings); default: a local endpoint on 127.0.0.1:8000')
  .option('--workflow-id <id>', 'workflow id (default: run-<constitution>-v<version>-<time>)')
  .option('--detach', 'return once the run has started')
  .option('--json', 'print the started run as JSON (and, while it runs, progress as NDJSON events unless --progress says otherwise)')
  .addOption(progressOption())
  .action(async (raw: unknown) => {
    const options = parseOptions(runOptions, raw);
    const progress = progressMode(options.progress ?? (options.json && !options.detach ? 'json' : undefined));
    const constitution = requireConstitution(options.constitution);
    const config = readRunConfig(options.config, localEndpoints);
    const prompts = readPrompts(options.prompts);
    const db = await openDatabase();
    const client = await openTemporal();
    try {
      const started = await startPipelineRun({
        db,
        client,
        constitution: constitution.constitution,
        constitutionSource: constitution.source,
        constitutionPath: options.constitution,
        config,
        prompts,
        workflowId: options.workflowId,
      });
      await warnWithoutWorker(client);
      if (progress === 'json' && !options.detach) emitEvent('started', { ...started, prompts: prompts.length });
      else if (options.json) printJson({ ...started, prompts: prompts.length });
      else console.log(`run ${started.runId} started: workflow ${started.workflowId}, ${prompts.length} prompts, stages ${started.stages.join(' → ')}`);
      if (options.detach) return;
      const handle = client.workflow.getHandle<typeof pipeline>(started.workflowId);
      const result = await followRun(handle, () => handle.result(), progress);
      if (progress === 'json') emitEvent('finished', { runId: started.runId, workflowId: started.workflowId, progress: result.progress });
      else if (!options.json) {
        for (const p of result.progress) console.log(`  ${p.stage.padEnd(9)} ${p.done} done, ${p.failed} failed`);
        console.log(`audit it: npx tenet audit list --run ${started.runId}   npx tenet audit stats ${started.runId}   npx tenet export preferences ${started.runId}`);
      }
    } finally {
      await closeAll(client);
    }
  });

/** A run with no CPU worker polling waits silently; say so. */
async function warnWithoutWorker(client: Client): Promise<void> {
  const cpu = await checkQueue(client.connection, client.options.namespace, taskQueues.cpu, [proto.temporal.api.enums.v1.TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW]).catch(() => undefined);
  if (cpu && !cpu.ok) console.error(`warning: no worker polls ${taskQueues.cpu}; the run waits until one does (\`tenet dev\`, or \`tenet worker --queue cpu\`)`);
}

const listOptions = z.object({
  status: z.enum(runStatuses, { error: `expected one of ${runStatuses.join(', ')}` }).optional(),
  limit: z.coerce.number().int().min(1).max(10_000).default(50),
  json: z.boolean().default(false),
});

async function findRun(ref: string) {
  const db = await openDatabase();
  const row = await findRunRow(db, ref);
  if (!row) throw new UserError(`no run ${ref} (give a run id or a workflow id; \`tenet runs list\` shows them)`);
  return { db, row };
}

function signalCommand(name: RunAction, description: string) {
  return new Command(name)
    .description(description)
    .argument('<run>', 'run id or workflow id')
    .action(async (ref: string) => {
      const { row } = await findRun(ref);
      const client = await openTemporal();
      try {
        console.log(await controlRun(client, row, name));
      } catch (error) {
        if (error instanceof RunWorkflowMissing) throw new UserError(error.message, exitCodes.invalidInput);
        throw error;
      } finally {
        await closeAll(client);
      }
    });
}

export const runsCommand = new Command('runs')
  .description('list, inspect and control runs')
  .addCommand(
    new Command('list')
      .description('runs, newest first')
      .option('--status <status>', `only runs with this status (${runStatuses.join(', ')})`)
      .option('--limit <n>', 'how many', '50')
      .option('--json', 'print as JSON')
      .action(async (raw: unknown) => {
        const options = parseOptions(listOptions, raw);
        const db = await openDatabase();
        try {
          const rows = await listRuns(db, options);
          if (options.json) return printJson(rows);
          if (rows.length === 0) return console.log('no runs');
          for (const r of rows) console.log(`${String(r.id).padStart(5)}  ${r.status.padEnd(9)}  ${r.kind.padEnd(8)}  ${r.createdAt.toISOString()}  ${r.workflowId}${r.error ? `  (${r.error.slice(0, 80)})` : ''}`);
        } finally {
          await closeAll();
        }
      }),
  )
  .addCommand(
    new Command('show')
      .description('one run: status, config, live progress and metrics')
      .argument('<run>', 'run id or workflow id')
      .option('--json', 'print as JSON')
      .action(async (ref: string, raw: unknown) => {
        const options = parseOptions(z.object({ json: z.boolean().default(false) }), raw);
        const { db, row } = await findRun(ref);
        let client;
        try {
          const metricRows = await runMetrics(db, row.id);
          let progress: unknown = null;
          let pending: PendingFailure[] = [];
          try {
            client = await openTemporal();
            progress = await client.workflow.getHandle(row.workflowId).query(progressQuery);
            if (!row.finishedAt) pending = await pendingFailures(client.workflow, row.workflowId);
          } catch {
            // Temporal down or the workflow gone: the rows above still say what is known.
          }
          if (options.json) return printJson({ ...row, progress, pending, metrics: metricRows });
          console.log(`run ${row.id}  ${row.status}  ${row.workflowId}`);
          console.log(`  created ${row.createdAt.toISOString()}${row.startedAt ? `  started ${row.startedAt.toISOString()}` : ''}${row.finishedAt ? `  finished ${row.finishedAt.toISOString()}` : ''}`);
          if (row.error) console.log(row.status === 'paused' ? `  alert: ${row.error}\n  (\`tenet runs resume ${row.id}\` goes on)` : `  error: ${row.error}`);
          const alerts = metricRows.filter((m) => m.name === 'monitor.alerts' && m.value > 0);
          for (const a of alerts) console.log(`  monitors: ${a.value} alert(s) after iteration ${a.iteration}`);
          if (Array.isArray(progress)) for (const p of progress as { stage: string; done: number; total: number; failed: number }[]) console.log(`  ${p.stage.padEnd(9)} ${p.done}/${p.total}  failed ${p.failed}`);
          for (const p of pending) console.log(`  waiting: ${describePending(p)}`);
          for (const m of metricRows) console.log(`  metric  iteration ${m.iteration}  ${m.name} = ${m.value}`);
        } finally {
          await closeAll(client);
        }
      }),
  )
  .addCommand(signalCommand('cancel', 'cancel a run; rows already written stay, none is half-written'))
  .addCommand(signalCommand('pause', 'pause a run: no new batches start until it is resumed'))
  .addCommand(signalCommand('resume', 'resume a paused run'));
