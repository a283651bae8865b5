// Live progress bars per stage (cli-progress), fed by the pipeline's `progress` query.
import type { WorkflowHandle } from '@temporalio/client';
import cliProgress from 'cli-progress';
import { progressQuery, type StageProgress } from '../workflows/types.js';

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
  try {
    const value = await result();
    await handle.query(progressQuery).then(update, () => undefined);
    return value;
  } finally {
    clearInterval(timer);
    bars.stop();
  }
}
