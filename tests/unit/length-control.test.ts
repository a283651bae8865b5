// Length-controlled win rate: the logistic fit of the preference on the length difference, read at
// zero difference, takes out what length alone explains and keeps what it does not.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { lengthControlledWinRate } from '../../core/length-control.js';

const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));

describe('length-controlled win rate', () => {
  it('recovers the value at zero difference of a preference that is exactly logistic in length', () => {
    const diffs = Array.from({ length: 41 }, (_, i) => i - 10); // −10 … 30 tokens: mostly longer
    const preferences = diffs.map((d) => sigmoid(0.3 + 0.1 * d));
    const fit = lengthControlledWinRate(preferences, diffs)!;
    assert.ok(Math.abs(fit.winRate - sigmoid(0.3)) < 1e-6, `at zero: ${fit.winRate}`);
    assert.ok(Math.abs(fit.slope - 0.1) < 1e-6, `slope: ${fit.slope}`);
    // The raw win rate is inflated by the longer answers; the controlled one is not.
    const raw = preferences.reduce((a, b) => a + b, 0) / preferences.length;
    assert.ok(raw > 0.7 && fit.winRate < 0.6);
  });

  it('a rater that only rewards length gets 0.5 once length is controlled', () => {
    const diffs = [-20, -10, -5, 5, 10, 20, 30, 40];
    const fit = lengthControlledWinRate(diffs.map((d) => sigmoid(0.05 * d)), diffs)!;
    assert.ok(Math.abs(fit.winRate - 0.5) < 1e-6);
  });

  it('stays finite when length separates hard wins from losses', () => {
    const diffs = [-3, -2, -1, 1, 2, 3];
    const fit = lengthControlledWinRate([0, 0, 0, 1, 1, 1], diffs)!;
    assert.ok(Number.isFinite(fit.slope) && fit.slope > 0);
    assert.ok(Math.abs(fit.winRate - 0.5) < 1e-3, `symmetric data: ${fit.winRate}`);
  });

  it('with no length difference at all it is the plain mean; with one constant non-zero difference it cannot be told', () => {
    const flat = lengthControlledWinRate([0.8, 0.6, 0.7], [0, 0, 0])!;
    assert.ok(Math.abs(flat.winRate - 0.7) < 1e-12);
    assert.deepEqual([flat.slope, flat.pairs], [0, 3]);
    assert.equal(lengthControlledWinRate([0.8, 0.6], [5, 5]), null);
    assert.equal(lengthControlledWinRate([], []), null);
  });

  it('refuses preferences outside [0, 1], non-finite differences and mismatched lengths', () => {
    assert.throws(() => lengthControlledWinRate([1.2], [1]), /in \[0, 1\], got 1.2/);
    assert.throws(() => lengthControlledWinRate([0.5], [Number.NaN]), /finite/);
    assert.throws(() => lengthControlledWinRate([0.5, 0.5], [1]), /2 preferences but 1/);
  });
});
