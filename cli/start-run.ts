// Starting a pipeline run: store the constitution version, the run and its prompts (all idempotent),
// then start the workflow under a meaningful id. Used by `tenet run`, the demo and the tests.
import type { Client } from '@temporalio/client';
import type { Constitution } from '../core/constitution/schema.js';
import type { PromptRecord } from '../core/prompts-file.js';
import { taskQueues } from '../core/queues.js';
import type { RunConfig } from '../core/run-config.js';
import { storeConstitution } from '../db/constitutions.js';
import type { Database } from '../db/pool.js';
import { upsertPrompts, upsertRun } from '../db/runs.js';
import type { pipeline } from '../workflows/pipeline.js';
import type { PipelineInput, StageName } from '../workflows/types.js';

export interface StartedRun {
  runId: number;
  workflowId: string;
  stages: StageName[];
  constitution: { id: number; name: string; version: number; contentHash: string };
}

export function plannedStages(config: RunConfig, constitution: Constitution): { stages: StageName[]; unitsPerPrompt: PipelineInput['unitsPerPrompt'] } {
  const n = config.sample.n;
  const stages: StageName[] = ['sample'];
  const unitsPerPrompt: PipelineInput['unitsPerPrompt'] = { sample: n };
  if (config.critique.enabled && constitution.principles.some((p) => p.critique)) {
    stages.push('critique');
    unitsPerPrompt.critique = n * (config.critique.rounds ?? constitution.defaults.critique_rounds);
  }
  if (config.label.enabled && n >= 2 && constitution.principles.some((p) => p.comparisons)) {
    stages.push('label');
    const ensemble = Math.min(config.label.ensemble ?? constitution.defaults.principles_per_comparison, constitution.principles.filter((p) => p.comparisons).length);
    unitsPerPrompt.label = ((n * (n - 1)) / 2) * ensemble * 2;
  }
  if (config.score.enabled) {
    stages.push('score');
    unitsPerPrompt.score = n * constitution.principles.length;
  }
  return { stages, unitsPerPrompt };
}

export async function startPipelineRun(input: {
  db: Database;
  client: Client;
  constitution: Constitution;
  constitutionSource: string;
  constitutionPath?: string;
  config: RunConfig;
  prompts: PromptRecord[];
  workflowId?: string;
}): Promise<StartedRun> {
  const stored = await storeConstitution(input.db, { constitution: input.constitution, source: input.constitutionSource, sourcePath: input.constitutionPath });
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\..*/, '');
  const workflowId = input.workflowId ?? `run-${stored.name}-v${stored.version}-${stamp}`;
  const runId = await upsertRun(input.db, { workflowId, kind: 'pipeline', constitutionId: stored.id, config: input.config });
  for (let i = 0; i < input.prompts.length; i += 1_000) await upsertPrompts(input.db, runId, input.prompts.slice(i, i + 1_000));
  const { stages, unitsPerPrompt } = plannedStages(input.config, input.constitution);
  const scale = input.config.scale;
  await input.client.workflow.start<typeof pipeline>('pipeline', {
    taskQueue: taskQueues.cpu,
    workflowId,
    args: [
      {
        runId,
        stages,
        iteration: 0,
        unitsPerPrompt,
        scale: { batchSize: scale.batch_size, shardSize: scale.shard_size, maxShardsInFlight: scale.max_shards_in_flight, maxBatchesInFlight: scale.max_batches_in_flight, heartbeatTimeoutS: scale.heartbeat_timeout_s },
      },
    ],
  });
  return { runId, workflowId, stages, constitution: stored };
}
