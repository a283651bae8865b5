// One trainer job as its own workflow (the pipeline starts it as a child, `tenet train` directly):
// a GPU-queue activity that heartbeats on every progress line, resumes from its last checkpoint
// when retried, and stops the trainer with SIGTERM when cancelled.
import { ActivityCancellationType, proxyActivities } from '@temporalio/workflow';
import type { GpuActivities } from '../activities/index.js';
import type { TrainedModel, TrainerJob } from '../activities/trainer.js';
import { taskQueues } from '../core/queues.js';

export interface TrainerJobInput extends TrainerJob {
  /** Seconds without a progress line or timer heartbeat before the job counts as lost (default 120). */
  heartbeatTimeoutS?: number;
  /** Attempts before the job fails (default 5). */
  maxAttempts?: number;
}

export async function trainerJob(input: TrainerJobInput): Promise<TrainedModel> {
  const { heartbeatTimeoutS, maxAttempts, ...job } = input;
  const gpu = proxyActivities<GpuActivities>({
    taskQueue: taskQueues.gpu,
    startToCloseTimeout: '7 days',
    heartbeatTimeout: (heartbeatTimeoutS ?? 120) * 1000,
    // Cancellation waits until the trainer has written its checkpoint and exited.
    cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
    retry: {
      initialInterval: '2 seconds',
      backoffCoefficient: 2,
      maximumInterval: '1 minute',
      maximumAttempts: maxAttempts ?? 5,
      nonRetryableErrorTypes: ['TrainerUserError', 'TrainerMissing', 'NoTrainingData', 'ModelMissing'],
    },
  });
  return gpu.runTrainerJob(job);
}
