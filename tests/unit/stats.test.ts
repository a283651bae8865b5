import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { wilsonInterval } from '../../core/stats.js';

const close = (actual: number, expected: number, digits = 4) => assert.ok(Math.abs(actual - expected) < 10 ** -digits, `${actual} vs ${expected}`);

describe('wilsonInterval', () => {
  it('matches published values (Newcombe 1998, table I: 81/263, 15/148, 0/20, 1/29)', () => {
    const cases: [number, number, number, number][] = [
      [81, 263, 0.2553, 0.3662],
      [15, 148, 0.0624, 0.1605],
      [0, 20, 0, 0.1611],
      [1, 29, 0.0061, 0.1718],
    ];
    for (const [k, n, low, high] of cases) {
      const interval = wilsonInterval(k / n, n);
      close(interval.low, low);
      close(interval.high, high);
    }
  });

  it('contains the mean, stays in [0, 1], is symmetric about 1/2 and narrows as n grows', () => {
    for (const n of [1, 2, 5, 24, 1000]) {
      for (const mean of [0, 0.1, 0.5, 0.93, 1]) {
        const { low, high } = wilsonInterval(mean, n);
        assert.ok(low >= 0 && high <= 1 && low <= mean && mean <= high, `${mean} of ${n}: [${low}, ${high}]`);
        const mirrored = wilsonInterval(1 - mean, n);
        close(mirrored.low, 1 - high, 12);
      }
    }
    const width = (n: number) => wilsonInterval(0.5, n).high - wilsonInterval(0.5, n).low;
    assert.ok(width(24) < width(8) && width(96) < width(24));
    close(width(24) / 2, 0.1857, 3);
  });

  it('refuses an empty sample or a mean outside [0, 1]', () => {
    assert.throws(() => wilsonInterval(0.5, 0), /n must be a whole number of at least 1, got 0/);
    assert.throws(() => wilsonInterval(1.2, 10), /mean must be in \[0, 1\], got 1.2/);
    assert.throws(() => wilsonInterval(Number.NaN, 10), /mean must be in \[0, 1\]/);
  });
});
