// A run's progress while a command waits on it, fed by the pipeline's `progress` query, in one of
// three forms: live bars per stage on a terminal (cli-progress); plain lines elsewhere (one when a
// stage starts or finishes, and at most one summary line every few seconds); or NDJSON events a
// script can follow. In every form, a word whenever an activity keeps failing (endpoint unreachable,
// a trainer crash): what failed, why and how many attempts so far, instead of progress that sits
// still with no word.
import type { WorkflowHandle } from '@temporalio/client';
import cliProgress from 'cli-progress';
import { Option } from 'commander';
import { describePending, pendingFailures, type PendingFailure } from '../worker/pending.js';
import { progressQuery, type StageProgress } from '../workflows/types.js';

export const progressModes = ['bars', 'lines', 'json'] as const;
export type ProgressMode = (typeof progressModes)[number];

/** `--progress bars|lines|json`; commander refuses any other value in one line. */
export function progressOption(): Option {
  return new Option('--progress <mode>', 'bars (live, for a terminal), lines (a line per stage change, a summary every few seconds) or json (NDJSON events); default: bars on a terminal, else lines').choices(progressModes);
}

/** The mode asked for, else bars on a terminal and lines anywhere else. */
export function progressMode(asked: ProgressMode | undefined): ProgressMode {
  return asked ?? (process.stdout.isTTY ? 'bars' : 'lines');
}

/** How often the run's pending activities are read (a describe call per workflow waited on). */
const failurePollMs = 2_000;
/** Lines mode: at most one summary line this often, and only when something moved. */
const summaryEveryMs = 10_000;

/** One form of progress output. */
interface ProgressView {
  update(stages: StageProgress[]): void;
  failure(pending: PendingFailure, line: string): void;
  stop(): void;
}

export async function followRun<T>(handle: WorkflowHandle, result: () => Promise<T>, mode: ProgressMode = progressMode(undefined)): Promise<T> {
  const view = mode === 'bars' ? barsView() : mode === 'json' ? jsonView() : linesView();
  const timer = setInterval(() => {
    handle.query(progressQuery).then((stages) => view.update(stages), () => undefined);
  }, 500);
  const reported = new Set<string>();
  const failures = setInterval(() => {
    pendingFailures(handle.client, handle.workflowId).then((pending) => {
      for (const p of pending) {
        const line = describePending(p);
        if (reported.has(line)) continue;
        reported.add(line);
        view.failure(p, line);
      }
    }, () => undefined);
  }, failurePollMs);
  try {
    const value = await result();
    await handle.query(progressQuery).then((stages) => view.update(stages), () => undefined);
    return value;
  } finally {
    clearInterval(timer);
    clearInterval(failures);
    view.stop();
  }
}

/** An NDJSON event on stdout: `{"event": ..., "time": ..., ...}`. */
export function emitEvent(event: string, fields: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify({ event, time: new Date().toISOString(), ...fields })}\n`);
}

function barsView(): ProgressView {
  const interactive = process.stdout.isTTY;
  const bars = new cliProgress.MultiBar(
    { format: ' {stage} [{bar}] {value}/{total}  failed {failed}', hideCursor: true, clearOnComplete: false, noTTYOutput: !interactive, notTTYSchedule: 5_000, barsize: 30 },
    cliProgress.Presets.shades_classic,
  );
  const byStage = new Map<string, cliProgress.SingleBar>();
  return {
    update(stages) {
      for (const s of stages) {
        let bar = byStage.get(s.stage);
        if (!bar) {
          bar = bars.create(Math.max(s.total, 1), 0, { stage: s.stage.padEnd(8), failed: 0 });
          byStage.set(s.stage, bar);
        }
        bar.setTotal(Math.max(s.total, 1));
        bar.update(s.done + s.failed, { stage: s.stage.padEnd(8), failed: s.failed });
      }
    },
    failure(_pending, line) {
      if (interactive) bars.log(`${line}\n`);
      else console.log(line);
    },
    stop: () => bars.stop(),
  };
}

type StageState = 'waiting' | 'running' | 'finished';

function stageState(s: StageProgress): StageState {
  const handled = s.done + s.failed;
  if (handled === 0) return 'waiting';
  return s.total > 0 && handled >= s.total ? 'finished' : 'running';
}

type Phase = 'idle' | 'started' | 'finished';

/**
 * Calls `changed(stage, phase)` when a stage starts or finishes. A stage has started once it has
 * handled anything, when every stage listed before it has finished (the loop's steps report only
 * when done), or when it appears after the first listing. A finished stage back at 0 (the next
 * iteration resets every stage) waits to start again by the same rules.
 */
export function phaseTracker(changed: (s: StageProgress, phase: 'started' | 'finished') => void) {
  const phases = new Map<string, Phase>();
  let listed = false;
  return (stages: StageProgress[]) => {
    stages.forEach((s, index) => {
      const before = phases.get(s.stage);
      const state = stageState(s);
      const appeared = before === undefined && listed;
      const next = index > 0 && stages.slice(0, index).every((p) => stageState(p) === 'finished');
      const phase: Phase = state === 'finished' ? 'finished' : state === 'running' || next || appeared || before === 'started' ? 'started' : 'idle';
      if (phase !== 'idle' && phase !== before) changed(s, phase);
      phases.set(s.stage, phase);
    });
    listed ||= stages.length > 0;
  };
}

function stageText(s: StageProgress): string {
  return `${s.stage} ${s.done}/${s.total}${s.failed ? ` (${s.failed} failed)` : ''}`;
}

function linesView(): ProgressView {
  let lastLine = Date.now();
  let shown = '';
  let latest: StageProgress[] = [];
  const track = phaseTracker((s, phase) => {
    console.log(phase === 'started' ? `progress: ${s.stage} started (${s.done + s.failed}/${s.total})` : `progress: ${s.stage} finished: ${s.done} done, ${s.failed} failed`);
    lastLine = Date.now();
  });
  const summary = () => latest.filter((s) => stageState(s) !== 'waiting').map(stageText).join(', ');
  return {
    update(stages) {
      latest = stages;
      track(stages);
      const now = summary();
      // A summary says how running stages move; finished ones were each said once already.
      const moving = stages.some((s) => stageState(s) === 'running');
      if (moving && now !== shown && Date.now() - lastLine >= summaryEveryMs) {
        console.log(`progress: ${now}`);
        lastLine = Date.now();
        shown = now;
      }
    },
    failure(_pending, line) {
      console.log(line);
    },
    stop() {},
  };
}

function jsonView(): ProgressView {
  let shown = '';
  const track = phaseTracker((s, phase) => emitEvent('stage', { ...s, state: phase }));
  return {
    update(stages) {
      track(stages);
      const now = JSON.stringify(stages);
      if (now === shown) return;
      shown = now;
      emitEvent('progress', { stages });
    },
    failure(pending, line) {
      emitEvent('failure', { ...pending, message: line });
    },
    stop() {},
  };
}
