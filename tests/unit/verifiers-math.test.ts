import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { compareAnswers, extractAnswer, verifyMath } from '../../core/verifiers/math.js';

describe('math answers that mean the same', () => {
  const equal: [string, string][] = [
    ['1/2', '0.5'],
    ['2/4', '1/2'],
    ['2/4', '0.5'],
    ['\\frac{1}{2}', '0.5'],
    ['\\dfrac{3}{4}', '0.75'],
    ['\\frac12', '1/2'],
    ['2*sqrt(2)', 'sqrt(8)'],
    ['2\\sqrt{2}', '\\sqrt{8}'],
    ['\\sqrt[3]{27}', '3'],
    ['x+1', '1+x'],
    ['x^2-1', '(x-1)(x+1)'],
    ['2(a+b)', '2a+2b'],
    ['1,000', '1000'],
    ['1{,}000', '1000'],
    ['1,234,567.5', '1234567.5'],
    ['50%', '0.5'],
    ['50\\%', '50'],
    ['5 cm', '5'],
    ['12 apples', '12'],
    ['$5', '5'],
    ['x = 5', '5'],
    ['90^\\circ', '90'],
    ['0.1+0.2', '0.3'],
    ['3.0', '3'],
    ['-\\frac{1}{3}', '-1/3'],
    ['\\pi/2', '1.5707963267948966'],
    ['e^(i*pi)', '-1'],
    ['2e5', '200000'],
    ['Yes', 'yes'],
  ];
  for (const [answer, reference] of equal) {
    it(`${answer} = ${reference}`, () => assert.equal(compareAnswers(answer, reference).equal, true));
  }
});

describe('math answers that differ', () => {
  const different: [string, string][] = [
    ['12', '1.2'],
    ['1.2', '12'],
    ['-3', '3'],
    ['0.33', '1/3'],
    ['1/3', '0.3'],
    ['x^2', '2x'],
    ['x+y', '2x'],
    ['5x', '5'],
    ['1e400', '1'],
    ['1,2', '12'],
    ['100', '1000'],
    ['sqrt(2)', '1.41'],
  ];
  for (const [answer, reference] of different) {
    it(`${answer} ≠ ${reference}`, () => assert.equal(compareAnswers(answer, reference).equal, false));
  }

  it('read percentages as the task says', () => {
    assert.equal(compareAnswers('50%', '0.5', { percent: 'strip' }).equal, false);
    assert.equal(compareAnswers('50%', '50', { percent: 'fraction' }).equal, false);
    assert.equal(compareAnswers('50%', '0.5', { percent: 'fraction' }).equal, true);
  });

  it('use the tolerance they are given', () => {
    assert.equal(compareAnswers('3.1416', '\\pi').equal, false);
    assert.equal(compareAnswers('3.1416', '\\pi', { rel_tol: 1e-4 }).equal, true);
    assert.equal(compareAnswers('0.0000001', '0', { abs_tol: 1e-6 }).equal, true);
  });
});

describe('final answer extraction', () => {
  it('takes the last boxed answer, with nested braces', () => {
    assert.deepEqual(extractAnswer('First \\boxed{1}, then \\boxed{\\frac{1}{2}}.').found, { answer: '\\frac{1}{2}', strategy: 'boxed' });
    assert.equal(extractAnswer('so it is \\boxed 7').found?.answer, '7');
  });

  it('reads answer lines, case-insensitively, including "The final answer is"', () => {
    assert.equal(extractAnswer('Work...\nFINAL ANSWER: 42\n').found?.answer, '42');
    assert.equal(extractAnswer('**Answer:** 3/4').found?.answer, '3/4');
    assert.equal(extractAnswer('Final Answer: The final answer is $\\frac{1}{2}$. I hope it is correct.').found?.answer, '\\frac{1}{2}');
    assert.equal(extractAnswer('Answer:\n\n  17\n').found?.answer, '17');
  });

  it('falls back to the last number, and follows the configured order', () => {
    assert.deepEqual(extractAnswer('We add 7 and 5 to get 12.').found, { answer: '12', strategy: 'last-number' });
    assert.equal(extractAnswer('It costs $1,000 in total.').found?.answer, '1,000');
    assert.equal(extractAnswer('Answer: 3\nthen \\boxed{4}', ['answer', 'boxed']).found?.answer, '3');
    assert.equal(extractAnswer('We add 7 and 5 to get 12.', ['boxed', 'answer']).found, undefined);
  });
});

describe('verifyMath', () => {
  it('scores only the final answer: the right number earlier earns nothing', () => {
    const result = verifyMath('Maybe 42? No: recomputing gives \\boxed{41}.', '42');
    assert.equal(result.reward, 0);
    assert.equal(result.reason.code, 'mismatch');
    assert.equal(result.reason.answer, '41');
    assert.equal(verifyMath('I first thought 12, but the answer: 1.2', '12').reward, 0);
    assert.equal(verifyMath('We get 12 then subtract 3 for 9', '12').reward, 0);
    assert.equal(verifyMath('\\boxed{12} was a guess; final: \\boxed{}', '12').reason.code, 'no-answer');
  });

  it('matches equivalent forms and says how it compared', () => {
    const result = verifyMath('So the probability is \\boxed{\\frac{2}{4}}', '0.5');
    assert.deepEqual([result.reward, result.reason.code, result.reason.method, result.reason.strategy], [1, 'match', 'numeric', 'boxed']);
    assert.equal(verifyMath('Answer: (x+1)^2', 'x^2+2x+1').reason.method, 'symbolic');
  });

  it('reports no answer, a cut-off answer, a hedge and an overlong answer', () => {
    assert.deepEqual(verifyMath('I am not sure.', '3'), { reward: 0, reason: { reference: '3', code: 'no-answer' }, flags: [] });
    const cut = verifyMath('\\boxed{5} … so finally \\boxed{\\frac{1}{', '0.5');
    assert.deepEqual([cut.reward, cut.reason.code, cut.flags], [0, 'no-answer', ['truncated']]);
    const hedge = verifyMath('It is \\boxed{3} or \\boxed{4}', '4');
    assert.deepEqual([hedge.reward, hedge.flags], [1, ['multiple-answers']]);
    const long = verifyMath(`Answer: ${'1+'.repeat(200)}1`, '201');
    assert.deepEqual([long.reward, long.reason.code, long.flags], [0, 'no-answer', ['too-long']]);
  });

  it('never runs what an answer asks for: assignments, function definitions, imports and property access are text', () => {
    for (const hostile of ['import({}, {override: true})', 'f(x) = 1', 'x = 1; 2', 'evaluate("1")', 'a.b', 'createUnit("foo")', '[1, 2]', '"1"', 'x == 1']) {
      const result = compareAnswers(hostile, '1');
      assert.deepEqual(result, { equal: false, method: 'text' }, hostile);
    }
    // mathjs is left as it was: ordinary answers still compare.
    assert.equal(compareAnswers('2/4', '0.5').equal, true);
  });
});
