// Why a run is not moving: the activities Temporal keeps retrying, with their attempt count and the
// last failure's message, read from the run's workflow and the child workflows it waits on (shards,
// trainer jobs). `tenet run`'s progress and `tenet runs show` print them.
import type { WorkflowClient } from '@temporalio/client';
import type { ProtoFailure } from '@temporalio/common';
import { decodeOptionalFailureToOptionalError } from '@temporalio/common/lib/internal-non-workflow/index.js';
import { rootCauseMessage } from '../core/failure.js';
import { CodecError, encryptedEncoding, keyIdMetadataKey } from './codec.js';

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
    found.push({ workflowId, activity: activity.activityType?.name ?? 'activity', attempt: activity.attempt ?? 1, reason: await failureReason(client, activity.lastFailure) });
  }
  if (depth === 0) return found;
  const children = (raw.pendingChildren ?? []).slice(0, maxChildren).flatMap((child) => (child.workflowId ? [child.workflowId] : []));
  const nested = await Promise.all(children.map((id) => pendingFailures(client, id, depth - 1).catch(() => [])));
  return [...found, ...nested.flat()];
}

/**
 * The failure's root-cause message. Messages travel encoded (the failure converter moves them into
 * an attribute payload, which the codec encrypts), so Temporal itself only shows "Encoded failure":
 * the client's converter opens them, and when it cannot (no key, or not the key that sealed it) the
 * reason says so rather than leaving the run's reason blank or "Encoded failure".
 */
async function failureReason(client: WorkflowClient, failure: ProtoFailure): Promise<string> {
  try {
    const error = await decodeOptionalFailureToOptionalError(client.options.loadedDataConverter, failure);
    const reason = error ? rootCauseMessage(error) : 'unknown failure';
    if (reason !== 'Encoded failure') return reason;
  } catch (error) {
    const keyId = sealedKeyId(failure);
    if (keyId !== undefined && !(error instanceof CodecError)) {
      return `the failure's message is encrypted (key id "${keyId}") and this client has no codec key: set TENET_CODEC_KEYS as on the workers to read it`;
    }
    return `the failure's message cannot be read: ${(error as Error).message}`;
  }
  return `the failure's message is encoded and this client's data converter did not open it${sealedKeyId(failure) !== undefined ? ` (encrypted with key id "${sealedKeyId(failure)}")` : ''}`;
}

/** The key id of the first encrypted attribute payload in a failure's cause chain. */
function sealedKeyId(failure: ProtoFailure | null | undefined): string | undefined {
  for (let current = failure, depth = 0; current && depth < 10; current = current.cause, depth++) {
    const metadata = current.encodedAttributes?.metadata;
    if (metadata && Buffer.from(metadata.encoding ?? []).toString('utf8') === encryptedEncoding) return Buffer.from(metadata[keyIdMetadataKey] ?? []).toString('utf8');
  }
  return undefined;
}

export function describePending(p: PendingFailure): string {
  return `${p.activity} retrying (attempt ${p.attempt}): ${p.reason}`;
}
