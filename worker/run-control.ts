// Pausing, resuming and cancelling a run's workflow: what `tenet runs pause|resume|cancel` and the
// console's buttons send to Temporal (a signal the pipeline and its shards handle, or a cancellation).
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import { pauseSignal, resumeSignal } from '../workflows/types.js';

export const runActions = ['pause', 'resume', 'cancel'] as const;
export type RunAction = (typeof runActions)[number];

/** The workflow of a run is not known to Temporal (its history expired, or another namespace). */
export class RunWorkflowMissing extends Error {
  override name = 'RunWorkflowMissing';
}

/** Sends `action` to the run's workflow; a one-line description of what was done. */
export async function controlRun(client: Client, run: { id: number; workflowId: string }, action: RunAction): Promise<string> {
  const handle = client.workflow.getHandle(run.workflowId);
  try {
    if (action === 'cancel') await handle.cancel();
    else await handle.signal(action === 'pause' ? pauseSignal : resumeSignal);
  } catch (error) {
    if (error instanceof WorkflowNotFoundError) throw new RunWorkflowMissing(`run ${run.id}: its workflow ${run.workflowId} is not known to Temporal`);
    throw error;
  }
  return `${action === 'cancel' ? 'cancellation requested for' : `${action}d`} run ${run.id} (${run.workflowId})`;
}
