// Live progress bars per stage (cli-progress), fed by the pipeline's `progress` query, and a line
// whenever an activity keeps failing (endpoint unreachable, a trainer crash): what failed, why and
// how many attempts so far, instead of bars that sit still with no word.
import type { WorkflowHandle } from '@temporalio/client';
import cliProgress from 'cli-progress';
import { describePending, pendingFailures } from '../worker/pending.js';
import { progressQuery, type StageProgress } from '../workflows/types.js';

/** How often the run's pending activities are read (a describe call per workflow waited on). */
const failurePollMs = 2_000;

export async function followRun<T>(handle: WorkflowHandle, result: () => Promise<T>): Promise<T> {
  const interactive = process.stdout.isTTY;
  const bars = new cliProgress.MultiBar(
    { format: ' {stage} [{bar}] {value}/{total}  failed {failed}', hideCursor: true, clearOnComplete: false, noTTYOutput: !interactive, notTTYSchedule: 5_000, barsize: 30 },
    cliProgress.Presets.shades_classic,
  );
  const byStage = new Map<string, cliProgress.SingleBar>();
  const update = (stages: StageProgress[]) => {
    for (const s of stages) {
      let bar = byStage.get(s.stage);
      if (!bar) {
        bar = bars.create(Math.max(s.total, 1), 0, { stage: s.stage.padEnd(8), failed: 0 });
        byStage.set(s.stage, bar);
      }
      bar.setTotal(Math.max(s.total, 1));
      bar.update(s.done + s.failed, { stage: s.stage.padEnd(8), failed: s.failed });
    }
  };
  const timer = setInterval(() => {
    handle.query(progressQuery).then(update, () => undefined);
  }, 500);
  const reported = new Set<string>();
  const failures = setInterval(() => {
    pendingFailures(handle.client, handle.workflowId).then((pending) => {
      for (const p of pending) {
        const line = describePending(p);
        if (reported.has(line)) continue;
        reported.add(line);
        if (interactive) bars.log(`${line}\n`);
        else console.log(line);
      }
    }, () => undefined);
  }, failurePollMs);
  try {
    const value = await result();
    await handle.query(progressQuery).then(update, () => undefined);
    return value;
  } finally {
    clearInterval(timer);
    clearInterval(failures);
    bars.stop();
  }
}
