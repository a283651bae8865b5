// Starting a pipeline run: store the constitution version, the run and its prompts (all idempotent),
// then start the workflow under a meaningful id. Used by `tenet run`, the demo and the tests.
import type { Client } from '@temporalio/client';
import type { Constitution } from '../core/constitution/schema.js';
import type { PromptRecord } from '../core/prompts-file.js';
import { taskQueues } from '../core/queues.js';
import { stableHash } from '../core/rater/principles.js';
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
  if (config.loop.mode === 'online') {
    stages.push('rollout');
    unitsPerPrompt.rollout = config.loop.rollouts.group_size;
  }
  return { stages, unitsPerPrompt };
}

export class RunPlanError extends Error {
  override name = 'RunPlanError';
}

/** What a training loop needs from the data stages, checked before anything starts. */
export function checkLoopPlan(config: RunConfig, stages: StageName[]): void {
  if (config.loop.mode === 'none') return;
  if (!stages.includes('label')) {
    throw new RunPlanError('loop.mode needs preferences: enable label, with sample.n of 2 or more and a constitution with comparison questions');
  }
}

/**
 * Held-out prompts for evaluation: the file's `eval` split, or, when it marks none and a loop runs,
 * a stable share of the prompts (by key hash) so the same file always holds out the same prompts.
 */
export function assignHeldout(config: RunConfig, records: PromptRecord[]): PromptRecord[] {
  if (config.loop.mode === 'none' || records.some((r) => r.split === 'eval') || config.loop.evaluate.heldout_fraction === 0) return records;
  const share = config.loop.evaluate.heldout_fraction;
  const marked = records.map((r) => ({ ...r, split: (stableHash(`heldout:${r.key}`) % 10_000) / 10_000 < share ? ('eval' as const) : r.split }));
  // Never all, never none: keep at least one prompt on each side when there are two or more.
  if (records.length >= 2 && marked.every((r) => r.split === 'eval')) marked[0] = { ...marked[0]!, split: 'train' };
  if (records.length >= 2 && !marked.some((r) => r.split === 'eval')) marked[marked.length - 1] = { ...marked.at(-1)!, split: 'eval' };
  return marked;
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
  const { stages, unitsPerPrompt } = plannedStages(input.config, input.constitution);
  checkLoopPlan(input.config, stages);
  const records = assignHeldout(input.config, input.prompts);
  const runId = await upsertRun(input.db, { workflowId, kind: 'pipeline', constitutionId: stored.id, config: input.config });
  for (let i = 0; i < records.length; i += 1_000) await upsertPrompts(input.db, runId, records.slice(i, i + 1_000));
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
        ...(input.config.loop.mode !== 'none' ? { loop: { mode: input.config.loop.mode, iterations: input.config.loop.iterations } } : {}),
        scale: { batchSize: scale.batch_size, shardSize: scale.shard_size, maxShardsInFlight: scale.max_shards_in_flight, maxBatchesInFlight: scale.max_batches_in_flight, heartbeatTimeoutS: scale.heartbeat_timeout_s },
      },
    ],
  });
  return { runId, workflowId, stages, constitution: stored };
}
