// `tenet run`: start a pipeline run and follow it (`tenet runs` lists, inspects and controls runs).
import type { Client } from '@temporalio/client';
import proto from '@temporalio/proto';
import { Command } from 'commander';
import { z } from 'zod';
import { taskQueues } from '../../core/queues.js';
import { checkQueue } from '../../worker/health.js';
import type { pipeline } from '../../workflows/pipeline.js';
import { requireConstitution } from '../constitution-file.js';
import { withDatabase, withTemporal } from '../database.js';
import { parseOptions, printJson } from '../options.js';
import { emitEvent, followRun, progressMode, progressModes, progressOption } from '../progress.js';
import { localEndpoints, readPrompts, readRunConfig } from '../run-files.js';
import { startPipelineRun } from '../start-run.js';

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
    await withDatabase((db) =>
      withTemporal(async (client) => {
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
      }),
    );
  });

/** A run with no CPU worker polling waits silently; say so. */
async function warnWithoutWorker(client: Client): Promise<void> {
  const cpu = await checkQueue(client.connection, client.options.namespace, taskQueues.cpu, [proto.temporal.api.enums.v1.TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW]).catch(() => undefined);
  if (cpu && !cpu.ok) console.error(`warning: no worker polls ${taskQueues.cpu}; the run waits until one does (\`tenet dev\`, or \`tenet worker --queue cpu\`)`);
}
