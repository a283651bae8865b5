// The trainer's part of the fault matrix, on the tiny model: SIGKILL mid-epoch, and a disk that
// fills up while a checkpoint is written (a small tmpfs). Either way a rerun of the same command
// resumes from the newest whole checkpoint and ends with weights bit-identical to an uninterrupted
// run's; the disk-full run first fails with a message naming the checkpoint and the full disk.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { projectRoot } from '../../worker/settings.js';
import { makeTinyModel, tempDir, venvPython } from '../helpers.js';
import { printTable, recordRow } from './harness.js';

interface TrainerEvent {
  event: string;
  step?: number;
  loss?: number;
  checkpoint?: string;
}

interface TrainerRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  events: TrainerEvent[];
  stderr: string;
  startedAt: number;
  /** When each event was read. */
  at: number[];
}

const maxSteps = 40;
const stepsPerEpoch = 6; // 24 rows, batch size 4

/** Runs `trainer sft` on the tiny model; `onEvent` may act on the child (kill it, fill its disk). */
function sft(dir: string, output: string, onEvent: (event: TrainerEvent, kill: () => void) => void = () => undefined): Promise<TrainerRun> {
  const args = ['-m', 'tenet_trainer', 'sft', '--model', path.join(dir, 'tiny'), '--data', path.join(dir, 'sft.jsonl'), '--output', output];
  args.push('--batch-size', '4', '--lr', '1e-2', '--seed', '7', '--log-every', '1', '--max-steps', String(maxSteps), '--checkpoint-every', '5');
  const child = spawn(venvPython, args, { cwd: projectRoot, env: { ...process.env, TENET_TORCH_THREADS: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
  const run: TrainerRun = { code: null, signal: null, events: [], stderr: '', startedAt: Date.now(), at: [] };
  let buffered = '';
  child.stdout.on('data', (chunk: Buffer) => {
    buffered += chunk.toString();
    const lines = buffered.split('\n');
    buffered = lines.pop()!;
    for (const line of lines.filter((l) => l.startsWith('{'))) {
      const event = JSON.parse(line) as TrainerEvent;
      run.events.push(event);
      run.at.push(Date.now());
      onEvent(event, () => child.kill('SIGKILL'));
    }
  });
  child.stderr.on('data', (chunk: Buffer) => (run.stderr += chunk.toString()));
  return new Promise((resolve) => child.once('close', (code, signal) => resolve({ ...run, code, signal })));
}

const weights = (output: string) => createHash('sha256').update(readFileSync(path.join(output, 'model', 'adapter_model.safetensors'))).digest('hex');
const losses = (run: TrainerRun) => new Map(run.events.filter((e) => e.event === 'step').map((e) => [e.step!, e.loss!]));
const lastCheckpoint = (run: TrainerRun) => run.events.filter((e) => e.event === 'checkpoint').at(-1);

/** The resumed run took up exactly where the checkpoint left off and matches the reference step for step. */
function assertResumed(resumed: TrainerRun, from: TrainerEvent, output: string, reference: TrainerRun, referenceWeights: string) {
  assert.equal(resumed.code, 0, resumed.stderr.slice(-3_000));
  const event = resumed.events.find((e) => e.event === 'resumed');
  assert.deepEqual({ step: event?.step, checkpoint: event?.checkpoint }, { step: from.step, checkpoint: from.checkpoint });
  const expected = losses(reference);
  for (const [step, loss] of losses(resumed)) assert.equal(loss, expected.get(step), `loss at step ${step}`);
  assert.equal(resumed.events.at(-1)?.event, 'done');
  assert.equal(weights(output), referenceWeights, 'the final weights equal the uninterrupted run');
}

/** Seconds from the rerun's start to its `resumed` event. */
const recovery = (resumed: TrainerRun) => (resumed.at[resumed.events.findIndex((e) => e.event === 'resumed')]! - resumed.startedAt) / 1000;

describe('fault matrix: the trainer', () => {
  const dir = tempDir('tenet-chaos-trainer-');
  let reference: TrainerRun;
  let referenceWeights: string;

  before(async () => {
    makeTinyModel(path.join(dir, 'tiny'));
    const rows = Array.from({ length: 4 * stepsPerEpoch }, (_, i) => JSON.stringify({ prompt: `What is ${i} plus ${i}?`, completion: `The answer is ${2 * i}. Happy to help!` }));
    writeFileSync(path.join(dir, 'sft.jsonl'), `${rows.join('\n')}\n`);
    reference = await sft(dir, path.join(dir, 'reference'));
    assert.equal(reference.code, 0, reference.stderr.slice(-3_000));
    referenceWeights = weights(path.join(dir, 'reference'));
  });

  after(() => {
    printTable();
    rmSync(dir, { recursive: true, force: true });
  });

  it('SIGKILL mid-epoch: a rerun resumes from the last checkpoint to the same weights', async () => {
    const output = path.join(dir, 'killed');
    const killAt = 2 * stepsPerEpoch + 2; // in the third epoch, after the checkpoint of step 10
    const killed = await sft(dir, output, (event, kill) => {
      if (event.event === 'step' && event.step === killAt) kill();
    });
    assert.equal(killed.signal, 'SIGKILL');
    const from = lastCheckpoint(killed)!;
    const lastStep = Math.max(...losses(killed).keys());
    assert.ok(lastStep >= killAt && lastStep < maxSteps, `killed at step ${lastStep}`);
    const resumed = await sft(dir, output);
    assertResumed(resumed, from, output, reference, referenceWeights);
    recordRow({ case: `trainer SIGKILL mid-epoch (step ${lastStep})`, rowsLost: 'n/a', rowsDuplicated: 'n/a', repeated: `${lastStep - from.step!} steps since the checkpoint`, outcome: 'completed', recoverS: recovery(resumed) });
  });

  it('a full disk while a checkpoint is written: fails naming the checkpoint and the cause, then resumes from the previous one', async () => {
    const disk = path.join(dir, 'disk');
    mkdirSync(disk);
    // A small tmpfs of its own (root only); it is unmounted whatever happens.
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', disk]);
    try {
      const output = path.join(disk, 'out');
      const filler = path.join(disk, 'filler');
      const failed = await sft(dir, output, (event) => {
        if (event.event !== 'checkpoint' || event.step !== 5) return;
        // Leave 64 KiB: the next checkpoint (about 440 KiB) cannot be written.
        const { bavail, bsize } = statfsSync(disk);
        writeFileSync(filler, Buffer.alloc(Math.max(0, bavail * bsize - 65_536)));
      });
      assert.equal(failed.code, 1, failed.stderr.slice(-3_000));
      const from = lastCheckpoint(failed)!;
      const message = failed.stderr.trim().split('\n').at(-1)!;
      assert.match(message, /CheckpointWriteError: checkpoint \S+step-\d{6} could not be written: the disk is full \(\d+ bytes free on its disk\)/);
      assert.ok(message.endsWith(`a rerun resumes from ${from.checkpoint}`), message);
      rmSync(filler);
      const resumed = await sft(dir, output);
      assertResumed(resumed, from, output, reference, referenceWeights);
      const lastStep = Math.max(...losses(failed).keys());
      recordRow({
        case: `disk full writing a checkpoint (tmpfs, step ${from.step! + 5})`,
        rowsLost: 'n/a',
        rowsDuplicated: 'n/a',
        repeated: `${lastStep - from.step!} steps since the checkpoint`,
        outcome: 'failed clearly, then completed on rerun',
        recoverS: recovery(resumed),
      });
    } finally {
      execFileSync('umount', [disk]);
    }
  });
});
