// When `--progress lines|json` says a stage started or finished (cli/progress.ts), from the
// pipeline's successive `progress` answers.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { phaseTracker } from '../../cli/progress.js';

const stage = (name: string, done: number, total: number, failed = 0) => ({ stage: name, done, total, failed });

function said(listings: ReturnType<typeof stage>[][]): string[] {
  const out: string[] = [];
  const track = phaseTracker((s, phase) => out.push(`${s.stage} ${phase} ${s.done + s.failed}/${s.total}`));
  for (const stages of listings) track(stages);
  return out;
}

describe('progress phases', () => {
  it('say a stage started once it handles anything, and finished once, however often it is read', () => {
    assert.deepEqual(
      said([
        [stage('sample', 0, 6), stage('label', 0, 6)],
        [stage('sample', 2, 6), stage('label', 0, 6)],
        [stage('sample', 4, 6), stage('label', 0, 6)],
        [stage('sample', 5, 6, 1), stage('label', 0, 6)],
        [stage('sample', 5, 6, 1), stage('label', 6, 6)],
        [stage('sample', 5, 6, 1), stage('label', 6, 6)],
      ]),
      ['sample started 2/6', 'sample finished 6/6', 'label started 0/6', 'label finished 6/6'],
    );
  });

  it('a stage whose predecessors have all finished has started, even at 0 (the loop steps report only when done)', () => {
    assert.deepEqual(
      said([
        [stage('label', 3, 6), stage('reward', 0, 1), stage('policy', 0, 1)],
        [stage('label', 6, 6), stage('reward', 0, 1), stage('policy', 0, 1)],
        [stage('label', 6, 6), stage('reward', 1, 1), stage('policy', 0, 1)],
      ]),
      ['label started 3/6', 'label finished 6/6', 'reward started 0/1', 'reward finished 1/1', 'policy started 0/1'],
    );
  });

  it('a stage listed after the first reading has started, even at 0 (the loop adds its stages as they begin)', () => {
    assert.deepEqual(said([[stage('label', 6, 6)], [stage('label', 6, 6), stage('reward', 0, 1)], [stage('label', 6, 6), stage('reward', 1, 1)]]), ['label finished 6/6', 'reward started 0/1', 'reward finished 1/1']);
  });

  it('the next iteration (every stage back at 0) starts its stages one by one again', () => {
    const iteration = (label: number, policy: number) => [stage('label', label, 2), stage('policy', policy, 1)];
    assert.deepEqual(said([iteration(0, 0), iteration(2, 0), iteration(2, 1), iteration(0, 0), iteration(1, 0), iteration(2, 0), iteration(2, 1)]), [
      'label finished 2/2',
      'policy started 0/1',
      'policy finished 1/1',
      'label started 1/2',
      'label finished 2/2',
      'policy started 0/1',
      'policy finished 1/1',
    ]);
  });

  it('an empty first reading does not count as the first listing', () => {
    assert.deepEqual(said([[], [stage('sample', 0, 3)], [stage('sample', 3, 3)]]), ['sample finished 3/3']);
  });
});
