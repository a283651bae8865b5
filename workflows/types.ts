// Inputs, outputs, queries and signals of the workflows: the contract between clients and workers.
import { defineQuery, defineSignal } from '@temporalio/workflow';

export interface SmokeInput {
  constitutionId: number;
  constitutionHash: string;
  promptCount: number;
}

export interface SmokeResult {
  runId: number;
  promptIds: number[];
  principleKeys: string[];
  trainer: { torch: string; cuda: boolean; devices: number };
}

export interface StageProgress {
  stage: string;
  done: number;
  total: number;
  failed: number;
}

export const progressQuery = defineQuery<StageProgress[]>('progress');

export type StageName = 'sample' | 'critique' | 'label' | 'score' | 'rollout';

export interface ScaleSettings {
  /** Prompts per activity. */
  batchSize: number;
  /** Prompts per child workflow. */
  shardSize: number;
  maxShardsInFlight: number;
  maxBatchesInFlight: number;
  /** Seconds without a heartbeat before a batch counts as lost and is retried. */
  heartbeatTimeoutS?: number;
}

/** The training loop after the data stages (from the run config's `loop`). */
export interface LoopPlan {
  mode: 'dpo' | 'online';
  iterations: number;
}

/** A policy the loop trained and put into service. */
export interface PolicyRef {
  modelId: number;
  /** Its served model name on the policy endpoint. */
  name: string;
}

export interface PipelineInput {
  runId: number;
  stages: StageName[];
  iteration: number;
  loop?: LoopPlan;
  /** The policy this iteration samples from; absent in the first iteration (the endpoint's own model). */
  policy?: PolicyRef;
  /** Work units per prompt for each stage (completions, critique rounds, comparisons), for progress totals. */
  unitsPerPrompt: Partial<Record<StageName, number>>;
  scale: ScaleSettings;
  /** Carried across continue-as-new. */
  resume?: PipelineState;
}

export interface PipelineState {
  promptCount: number;
  stageIndex: number;
  nextShard: number;
  paused: boolean;
  progress: StageProgress[];
  /**
   * The stages the shards now in progress run batch by batch, from `stageIndex` on; absent while a
   * run begun before chained stages existed finishes the stage it was in, one stage at a time.
   */
  chain?: StageName[];
  /** The next batch of a chain that runs in the pipeline itself (one shard), carried across continue-as-new. */
  nextBatch?: number;
  /** Loop results of this iteration so far. */
  rewardModelId?: number;
  newPolicy?: PolicyRef;
}

export interface PipelineResult {
  runId: number;
  progress: StageProgress[];
  /** The newest policy, after the last iteration of a loop. */
  policy?: PolicyRef;
  iterations?: number;
}

export interface ShardInput {
  runId: number;
  /** The (first) stage of this shard. */
  stage: StageName;
  /**
   * Every stage each batch of prompts goes through, in order, starting with `stage` (sample, then
   * label as soon as that batch is sampled). Absent in shards started before chains existed: they
   * run `stage` alone.
   */
  chain?: StageName[];
  iteration: number;
  offset: number;
  limit: number;
  batchSize: number;
  maxBatchesInFlight: number;
  heartbeatTimeoutS?: number;
  /** Where to report each finished batch. */
  parentWorkflowId: string;
  paused: boolean;
  policyModel?: string;
  rewardModelId?: number;
  /** Carried across continue-as-new. */
  nextBatch?: number;
}

export interface BatchReport {
  stage: StageName;
  done: number;
  failed: number;
}

export const pauseSignal = defineSignal('pause');
export const resumeSignal = defineSignal('resume');
export const batchDoneSignal = defineSignal<[BatchReport]>('batchDone');
