// Activity proxies with named timeout presets, created once per workflow module.
import { proxyActivities, proxyLocalActivities, type ActivityOptions } from '@temporalio/workflow';
import type { CpuActivities, GpuActivities } from '../activities/index.js';
import { taskQueues } from '../core/queues.js';

/** Database bookkeeping: quick, retried freely. */
export const db = proxyActivities<CpuActivities>({
  taskQueue: taskQueues.cpu,
  startToCloseTimeout: '1 minute',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '30 seconds', maximumAttempts: 10 },
});

/**
 * The same bookkeeping as local activities: run by the worker that runs the workflow, within its
 * workflow task, without a round trip through the server's task queue (run status, prompt counts,
 * stage metrics at the start and end of every pipeline).
 */
export const localDb = proxyLocalActivities<CpuActivities>({
  startToCloseTimeout: '1 minute',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '30 seconds', maximumAttempts: 10 },
});

/** Jobs on the GPU queue next to the trainer. */
export const gpu = proxyActivities<GpuActivities>({
  taskQueue: taskQueues.gpu,
  startToCloseTimeout: '5 minutes',
  retry: { initialInterval: '2 seconds', backoffCoefficient: 2, maximumInterval: '1 minute', maximumAttempts: 5 },
});

/**
 * Stage batches that call model endpoints: long, heartbeating after each prompt, retried without a
 * limit so a run waits out an endpoint that is down and resumes when it is back. Requests an
 * endpoint rejects (400/401/404) fail at once as non-retryable.
 */
export const stageBatchOptions = {
  taskQueue: taskQueues.cpu,
  startToCloseTimeout: '4 hours',
  heartbeatTimeout: '2 minutes',
  retry: { initialInterval: '2 seconds', backoffCoefficient: 2, maximumInterval: '1 minute' },
  // Not handed straight back to the worker that scheduled it: batches go to whichever worker process
  // polls, so every worker on the queue takes its share (bench/workers.ts).
  allowEagerDispatch: false,
} satisfies ActivityOptions;
export const stageBatches = proxyActivities<CpuActivities>(stageBatchOptions);

/**
 * Loop steps on the CPU queue: planning trainer jobs, loading adapters into the policy endpoint,
 * evaluation (held-out sampling and rating). Retried without a limit while an endpoint is down.
 */
export const loopStepOptions = {
  taskQueue: taskQueues.cpu,
  startToCloseTimeout: '4 hours',
  heartbeatTimeout: '5 minutes',
  retry: { initialInterval: '2 seconds', backoffCoefficient: 2, maximumInterval: '1 minute', nonRetryableErrorTypes: ['ModelMissing', 'NoLoop', 'AdapterRejected', 'RewardModelBroken'] },
} satisfies ActivityOptions;
export const loopSteps = proxyActivities<CpuActivities>(loopStepOptions);

/** Measurements by the trainer on the GPU queue (KL to the reference on evaluation samples). */
export const measure = proxyActivities<GpuActivities>({
  taskQueue: taskQueues.gpu,
  startToCloseTimeout: '4 hours',
  heartbeatTimeout: '2 minutes',
  retry: { initialInterval: '2 seconds', backoffCoefficient: 2, maximumInterval: '1 minute', maximumAttempts: 5, nonRetryableErrorTypes: ['ModelMissing', 'TrainerUserError', 'TrainerMissing'] },
});
