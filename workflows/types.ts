// Inputs, outputs, queries and signals of the workflows: the contract between clients and workers.
import { defineQuery } from '@temporalio/workflow';

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
