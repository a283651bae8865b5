// Why a run is not moving: the activities Temporal keeps retrying, with their attempt count and the
// last failure's message, read from the run's workflow and the child workflows it waits on (shards,
// trainer jobs). `tenet run`'s progress and `tenet runs show` print them.
import type { WorkflowClient } from '@temporalio/client';
import { decodeOptionalFailureToOptionalError } from '@temporalio/common/lib/internal-non-workflow/index.js';
import { rootCauseMessage } from '../core/failure.js';

export interface PendingFailure {
  /** The workflow waiting on the activity: the run's own, or a shard / trainer-job child. */
  workflowId: string;
  activity: string;
  attempt: number;
  reason: string;
}

/** Children described per call: a run fans out into many shards, and one failing says enough. */
const maxChildren = 16;

export async function pendingFailures(client: WorkflowClient, workflowId: string, depth = 2): Promise<PendingFailure[]> {
  const { raw } = await client.getHandle(workflowId).describe();
  const found: PendingFailure[] = [];
  for (const activity of raw.pendingActivities ?? []) {
    if (!activity.lastFailure) continue;
    // Failure messages may be encrypted (the payload codec encodes them); the client's converter opens them.
    const error = await decodeOptionalFailureToOptionalError(client.options.loadedDataConverter, activity.lastFailure);
    found.push({ workflowId, activity: activity.activityType?.name ?? 'activity', attempt: activity.attempt ?? 1, reason: error ? rootCauseMessage(error) : 'unknown failure' });
  }
  if (depth === 0) return found;
  const children = (raw.pendingChildren ?? []).slice(0, maxChildren).flatMap((child) => (child.workflowId ? [child.workflowId] : []));
  const nested = await Promise.all(children.map((id) => pendingFailures(client, id, depth - 1).catch(() => [])));
  return [...found, ...nested.flat()];
}

export function describePending(p: PendingFailure): string {
  return `${p.activity} retrying (attempt ${p.attempt}): ${p.reason}`;
}
