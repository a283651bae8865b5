import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { arithmeticScore, checkArithmetic } from '../../core/verifiers/arithmetic.js';

/** Each check as `left = right holds|fails`. */
const checks = (step: string) => checkArithmetic(step).map((c) => `${c.left} = ${c.right} ${c.holds ? 'holds' : 'fails'}`);

describe('arithmetic a process step states', () => {
  it('checks each claim, with the operators prose and typesetting use', () => {
    assert.deepEqual(checks('17 × 23 = 391'), ['17 * 23 = 391 holds']);
    assert.deepEqual(checks('17 * 23 = 381'), ['17 * 23 = 381 fails']);
    assert.deepEqual(checks('460 − 69 = 391'), ['460 - 69 = 391 holds']);
    assert.deepEqual(checks('84 ÷ 4 = 21, so each gets 21.'), ['84 / 4 = 21 holds']);
    assert.deepEqual(checks('2^10 = 1024'), ['2^10 = 1024 holds']);
    assert.deepEqual(checks('-3 + 5 = 2'), ['-3 + 5 = 2 holds']);
    assert.deepEqual(checks('$2+2=4$'), ['2+2 = 4 holds']);
    assert.deepEqual(checks('it costs 3 * 4 = 12 dollars'), ['3 * 4 = 12 holds']);
  });

  it('reads every claim of a step, chains pair by pair, and claims on separate lines', () => {
    assert.deepEqual(checks('1. 17 * 20 = 340, and 17 * 3 = 51.'), ['17 * 20 = 340 holds', '17 * 3 = 51 holds']);
    assert.deepEqual(checks('2 * (3 + 4) = 2 * 7 = 15'), ['2 * (3 + 4) = 2 * 7 holds', '2 * 7 = 15 fails']);
    assert.deepEqual(checks('Step 2: 12 / 4 = 3\nthen 3 + 1 = 5'), ['12 / 4 = 3 holds', '3 + 1 = 5 fails']);
    assert.deepEqual(checks('x = 2 + 2 = 4'), ['2 + 2 = 4 holds'], 'the arithmetic part of a chain that starts with a name');
  });

  it('takes a decimal side as rounded to its places, and no more', () => {
    assert.deepEqual(checks('10 / 3 = 3.33'), ['10 / 3 = 3.33 holds']);
    assert.deepEqual(checks('10 / 3 = 3.3'), ['10 / 3 = 3.3 holds']);
    assert.deepEqual(checks('10 / 3 = 3.4'), ['10 / 3 = 3.4 fails']);
    assert.deepEqual(checks('2 + 2 = 4.0'), ['2 + 2 = 4.0 holds']);
    assert.deepEqual(checks('2 + 2 = 4.5'), ['2 + 2 = 4.5 fails']);
    assert.deepEqual(checks('1 / 3 = 0.333333'), ['1 / 3 = 0.333333 holds']);
    assert.deepEqual(checks('0.1 + 0.2 = 0.3'), ['0.1 + 0.2 = 0.3 holds'], 'binary floating point is no error');
  });

  it('leaves algebra, prose and things that only look like sums to the rater', () => {
    for (const step of [
      '2x + 3 = 7',
      'f(2) = 4',
      'a + 2 = 5',
      '7 - 2 = 5x',
      '2 + 2 = 4 + x',
      '50% = 0.5',
      '1,000 + 1 = 1,001',
      '.5 + .5 = 1',
      '5 = 5',
      'The meeting is on 2024-01-15.',
      '3.14 is pi',
      'Multiply the two numbers and compare.',
      '',
    ]) {
      assert.deepEqual(checks(step), [], step);
    }
  });

  it('makes no check of a side without a finite value', () => {
    assert.deepEqual(checks('1/0 = 3'), []);
    assert.deepEqual(checks('(2 + 3 = 5'), []);
    assert.deepEqual(checks('10^400 = 1'), []);
  });

  it('scores a step 1 when every claim holds, -1 when any fails, and not at all without claims', () => {
    assert.equal(arithmeticScore(checkArithmetic('17 * 20 = 340 and 17 * 3 = 51')), 1);
    assert.equal(arithmeticScore(checkArithmetic('17 * 20 = 340 and 17 * 3 = 52')), -1);
    assert.equal(arithmeticScore(checkArithmetic('no numbers here')), undefined);
  });
});
