// The smoke workflow: one pass through every part of the stack (CPU queue, Postgres, GPU queue and
// the trainer's Python), recorded as a run. `make demo` runs it until the full pipeline lands.
import { CancellationScope, isCancellation, setHandler, workflowInfo } from '@temporalio/workflow';
import { rootCauseMessage } from '../core/failure.js';
import { db, gpu } from './presets.js';
import { progressQuery, type SmokeInput, type SmokeResult, type StageProgress } from './types.js';

export async function smoke(input: SmokeInput): Promise<SmokeResult> {
  const stages: StageProgress[] = [
    { stage: 'prompts', done: 0, total: input.promptCount, failed: 0 },
    { stage: 'trainer', done: 0, total: 1, failed: 0 },
  ];
  setHandler(progressQuery, () => stages);

  const runId = await db.registerRun({
    workflowId: workflowInfo().workflowId,
    kind: 'smoke',
    constitutionId: input.constitutionId,
    config: { constitutionHash: input.constitutionHash, promptCount: input.promptCount },
  });
  await db.setRunStatus({ runId, status: 'running' });
  try {
    const seeded = await db.seedSmokePrompts({ runId, constitutionId: input.constitutionId, count: input.promptCount });
    stages[0]!.done = seeded.promptIds.length;

    const trainer = await gpu.probeTrainer();
    stages[1]!.done = 1;

    await db.recordMetrics({ runId, iteration: 0, values: { 'smoke.prompts': seeded.promptIds.length, 'smoke.gpu_devices': trainer.devices } });
    await db.setRunStatus({ runId, status: 'completed' });
    return { runId, ...seeded, trainer: { torch: trainer.torch, cuda: trainer.cuda, devices: trainer.devices } };
  } catch (error) {
    const status = isCancellation(error) ? 'cancelled' : 'failed';
    // Record the outcome even when the workflow itself is being cancelled.
    await CancellationScope.nonCancellable(() =>
      db.setRunStatus({ runId, status, error: rootCauseMessage(error) }),
    );
    throw error;
  }
}
