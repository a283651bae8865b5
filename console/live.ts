// The runs page's live part: each unfinished run's stage progress (the pipeline's `progress` query)
// and why it is not moving (pending activity failures, worker/pending.ts), read from Temporal. Served
// in the page and as JSON that static/runs-live.js polls.
import type { Client } from '@temporalio/client';
import { describePending, pendingFailures } from '../worker/pending.js';
import { progressQuery, type StageProgress } from '../workflows/types.js';

export interface LiveRun {
  id: number;
  status: string;
  stages: StageProgress[];
  /** One line per failing activity, e.g. "runStageBatch retrying (attempt 3): … is unreachable". */
  pending: string[];
  /** Set when Temporal could not be asked (down, or the workflow is gone). */
  note?: string;
}

/** Statuses whose workflow is still there to ask. */
export const liveStatuses = new Set(['pending', 'running', 'paused']);
/** Runs asked per request: the newest unfinished ones. */
const maxLive = 20;
/** A query on a workflow no worker serves waits; the page does not. */
const askTimeoutMs = 2_000;

function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms / 1000} s`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export const stageText = (s: StageProgress) => `${s.stage} ${s.done}/${s.total}${s.failed ? ` (${s.failed} failed)` : ''}`;

/** The live state of the unfinished runs among `rows`; finished ones get their status only. */
export async function liveRuns(temporal: (() => Promise<Client>) | undefined, rows: { id: number; workflowId: string; status: string }[]): Promise<LiveRun[]> {
  const unfinished = rows.filter((r) => liveStatuses.has(r.status)).slice(0, maxLive);
  let client: Client | undefined;
  let note: string | undefined;
  if (unfinished.length > 0) {
    if (!temporal) note = 'no Temporal client';
    else client = await within(temporal(), askTimeoutMs, 'Temporal').catch((error: unknown) => ((note = `Temporal unreachable: ${(error as Error).message}`), undefined));
  }
  const asked = new Map(
    await Promise.all(
      unfinished.map(async (r): Promise<[number, LiveRun]> => {
        if (!client) return [r.id, { id: r.id, status: r.status, stages: [], pending: [], note }];
        const handle = client.workflow.getHandle(r.workflowId);
        const [stages, pending] = await Promise.all([
          within(handle.query(progressQuery), askTimeoutMs, 'progress').then(
            (value) => ({ value }),
            (error: unknown) => ({ error: (error as Error).message }),
          ),
          within(pendingFailures(client.workflow, r.workflowId), askTimeoutMs, 'pending activities').catch(() => []),
        ]);
        return [r.id, { id: r.id, status: r.status, stages: 'value' in stages ? stages.value : [], pending: pending.map(describePending), ...('error' in stages ? { note: stages.error } : {}) }];
      }),
    ),
  );
  return rows.map((r) => asked.get(r.id) ?? { id: r.id, status: r.status, stages: [], pending: [] });
}
