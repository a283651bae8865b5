import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  checkFormat,
  composeRewards,
  defaultRewardTerms,
  lengthPenaltyRaw,
  RewardInputError,
  rewardTermsSchema,
  type RewardTermsInput,
} from '../../core/rewards/compose.js';
import { aggregateSteps, splitSteps } from '../../core/rewards/process.js';

const terms = (input: RewardTermsInput) => rewardTermsSchema.parse(input);
const problems = (input: unknown) => {
  const parsed = rewardTermsSchema.safeParse(input);
  assert.equal(parsed.success, false, 'expected the terms to be rejected');
  return parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`);
};
const close = (actual: number | undefined, expected: number, what = '', tolerance = 1e-12) =>
  assert.ok(actual !== undefined && Math.abs(actual - expected) < tolerance, `${what} ${actual} ≠ ${expected}`);

describe('reward terms config', () => {
  it('fills defaults per term', () => {
    const parsed = terms({ reward_model: {}, process: {}, format: { checks: [{ max_chars: 10 }] } });
    assert.deepEqual(parsed.reward_model, { weight: 1, normalise: 'none', optional: false });
    assert.deepEqual(parsed.process, { weight: 1, normalise: 'none', optional: false, split: 'numbered', aggregate: 'min', max_steps: 16, check_arithmetic: false });
    assert.equal(parsed.format?.score, 'all');
  });

  it('rejects an unknown term name with a suggestion', () => {
    const [problem, ...rest] = problems({ reward_modle: { weight: 1 } });
    assert.match(problem!, /unknown reward term 'reward_modle'/);
    assert.match(problem!, /did you mean 'reward_model'\?/);
    assert.deepEqual(rest, [], 'only the typo is reported');
    assert.doesNotMatch(problems({ sentiment: {} })[0]!, /did you mean/);
  });

  it('sends the KL coefficient to the RL config', () => {
    assert.match(problems({ reward_model: {}, kl: { weight: 0.1 } })[0]!, /loop\.policy\.options\.kl_coef/);
  });

  it('rejects unknown keys inside a term with a suggestion', () => {
    assert.match(problems({ reward_model: { wieght: 2 } })[0]!, /^reward_model: unknown key 'wieght'.*did you mean 'weight'\?/);
  });

  it('rejects bad normalisation, ranges and empty configs', () => {
    assert.match(problems({ verifier: { normalise: 'minmax' } })[0]!, /verifier\.normalise: expected normalise 'none', 'zscore' or \{range/);
    assert.match(problems({ verifier: { normalise: { range: [1, 1] } } })[0]!, /lo < hi/);
    assert.match(problems({})[0]!, /at least one reward term/);
    assert.match(problems({ process: { aggregate: { discounted: 0 } } })[0]!, /process\.aggregate\.discounted: expected gamma above 0/);
    assert.match(problems({ process: { split: { delimiter: '' } } })[0]!, /non-empty delimiter/);
  });

  it('checks format checks: one kind each, valid expressions and flags', () => {
    const found = problems({ format: { checks: [{ must_match: '(' }, { max_chars: 5, valid_json: 'whole' }, { max_chars: 5, flags: 'i' }, { must_match: 'a', flags: 'g' }] } });
    assert.equal(found.length, 4, found.join('\n'));
    assert.match(found[0]!, /^format\.checks\.0\.must_match: not a valid regular expression/);
    assert.match(found[1]!, /^format\.checks\.1: expected exactly one of .* got max_chars and valid_json/);
    assert.match(found[2]!, /^format\.checks\.2\.flags: flags go with must_match/);
    assert.match(found[3]!, /^format\.checks\.3\.flags: expected flags from i, m, s, u/);
    assert.match(problems({ format: { checks: [] } })[0]!, /at least one format check/);
  });
});

describe('composeRewards', () => {
  it('weights each term and sums the components', () => {
    const config = terms({ reward_model: { weight: 2 }, verifier: { weight: 0.5 }, length_penalty: { weight: 0.1 } });
    const [row] = composeRewards(config, [{ raw: { reward_model: 0.3, verifier: 1, length_penalty: -0.5 } }]);
    close(row!.components.reward_model, 0.6, 'reward_model');
    close(row!.components.verifier, 0.5, 'verifier');
    close(row!.components.length_penalty, -0.05, 'length_penalty');
    assert.deepEqual(row!.raw, { reward_model: 0.3, verifier: 1, length_penalty: -0.5 });
    assert.equal(row!.total, Object.values(row!.components).reduce((a, b) => a + b, 0));
    close(row!.total, 1.05, 'total');
    assert.equal(row!.batch, undefined);
  });

  it('ignores raw values of terms the config does not name', () => {
    const [row] = composeRewards(terms({ reward_model: {} }), [{ raw: { reward_model: 1, verifier: 0 } }]);
    assert.deepEqual(row, { raw: { reward_model: 1 }, components: { reward_model: 1 }, total: 1 });
  });

  it('z-scores over the batch with the population std', () => {
    const config = terms({ rater_score: { normalise: 'zscore', weight: 2 } });
    const rows = composeRewards(config, [1, 2, 3, 4].map((value) => ({ raw: { rater_score: value } })));
    const std = Math.sqrt(1.25);
    rows.forEach((row, i) => close(row.components.rater_score, (2 * (i + 1 - 2.5)) / std, `row ${i}`));
    close(rows.reduce((a, row) => a + row.total, 0), 0, 'z-scores sum to 0');
    assert.deepEqual(rows[0]!.batch, { rater_score: { mean: 2.5, std, n: 4 } });
  });

  it('gives 0 when the batch has no spread, including rounding noise and a single row', () => {
    const config = terms({ reward_model: { normalise: 'zscore' }, verifier: {} });
    const rows = composeRewards(config, [0.1, 0.1, 0.1].map((value) => ({ raw: { reward_model: value, verifier: 1 } })));
    for (const row of rows) {
      assert.equal(row.components.reward_model, 0);
      assert.equal(row.total, 1);
      assert.equal(row.batch?.reward_model?.std, 0);
    }
    const [single] = composeRewards(config, [{ raw: { reward_model: 7, verifier: 0 } }]);
    assert.equal(single!.components.reward_model, 0);
    assert.equal(single!.raw.reward_model, 7);
  });

  it('maps a fixed range onto [0, 1] and clips outside it', () => {
    const config = terms({ reward_model: { normalise: { range: [-2, 2] }, weight: 3 } });
    const rows = composeRewards(config, [-5, -2, 0, 1, 2, 9].map((value) => ({ raw: { reward_model: value } })));
    assert.deepEqual(
      rows.map((row) => row.components.reward_model),
      [0, 0, 1.5, 2.25, 3, 3],
    );
  });

  it('names the row and term of a missing value', () => {
    const config = terms({ reward_model: {}, verifier: {} });
    assert.throws(
      () => composeRewards(config, [{ id: 'c1', raw: { reward_model: 1, verifier: 1 } }, { id: 'c2', raw: { reward_model: 1 } }]),
      (error: unknown) => error instanceof RewardInputError && /row 1 \(c2\): no value for reward term 'verifier'/.test(error.message) && /optional: true/.test(error.message),
    );
    assert.throws(() => composeRewards(config, [{ raw: { reward_model: null, verifier: 1 } }]), /row 0: no value for reward term 'reward_model'/);
  });

  it('leaves an optional term out of rows that lack it, and z-scores over the rows that have it', () => {
    const config = terms({ reward_model: {}, verifier: { optional: true, normalise: 'zscore' } });
    const rows = composeRewards(config, [
      { raw: { reward_model: 1, verifier: 1 } },
      { raw: { reward_model: 2 } },
      { raw: { reward_model: 3, verifier: 0 } },
    ]);
    assert.deepEqual(rows[1], { raw: { reward_model: 2 }, components: { reward_model: 2 }, total: 2, batch: { verifier: { mean: 0.5, std: 0.5, n: 2 } } });
    close(rows[0]!.components.verifier, 1);
    close(rows[2]!.components.verifier, -1);
    close(rows[2]!.total, 2);
  });

  it('rejects non-finite raw values even for optional terms', () => {
    const config = terms({ reward_model: {}, process: { optional: true } });
    assert.throws(() => composeRewards(config, [{ id: 9, raw: { reward_model: 1, process: Number.NaN } }]), /row 0 \(9\): reward term 'process' is not a finite number/);
  });

  it('defaults match the rollout reward of before: score − length_penalty × tokens / max_tokens', () => {
    const maxTokens = 128;
    for (const lengthPenalty of [0, 0.1, 0.37]) {
      const config = defaultRewardTerms(lengthPenalty);
      for (const [score, tokens] of [[0.42, 100], [-1.3, 7], [2, 0]] as const) {
        const [row] = composeRewards(config, [{ raw: { reward_model: score, length_penalty: lengthPenaltyRaw(tokens, maxTokens) } }]);
        // activities/rollouts.ts before reward composition: { reward_model: score, length_penalty: -lp * (tokens / max_tokens) } when lp > 0.
        const before: Record<string, number> = { reward_model: score };
        if (lengthPenalty > 0) before.length_penalty = -lengthPenalty * (tokens / maxTokens);
        assert.deepEqual(row!.components, before);
        assert.equal(row!.total, Object.values(before).reduce((a, b) => a + b, 0));
      }
    }
  });
});

describe('lengthPenaltyRaw', () => {
  it('is minus the share of max_tokens used', () => {
    assert.equal(lengthPenaltyRaw(64, 128), -0.5);
    assert.equal(lengthPenaltyRaw(0, 128), -0);
    assert.equal(lengthPenaltyRaw(256, 128), -2);
  });
  it('rejects a max_tokens of 0 and negative token counts', () => {
    assert.throws(() => lengthPenaltyRaw(10, 0), /max_tokens must be above 0/);
    assert.throws(() => lengthPenaltyRaw(-1, 10), /0 or more/);
  });
});

describe('checkFormat', () => {
  const checks = (list: unknown[], score?: 'all' | 'fraction') => terms({ format: { checks: list, ...(score ? { score } : {}) } as never }).format!;

  it('must_match and must_not_match with flags', () => {
    const format = checks([{ must_match: '^answer:', flags: 'im' }, { must_not_match: 'as an ai', flags: 'i' }]);
    assert.deepEqual(checkFormat('Working.\nANSWER: 4', format), { raw: 1, failed: [] });
    assert.deepEqual(checkFormat('Working. answer: 4', format), { raw: 0, failed: ['must_match /^answer:/im'] });
    assert.deepEqual(checkFormat('Answer: As an AI, 4', format), { raw: 0, failed: ['must_not_match /as an ai/i'] });
  });

  it('max_chars counts code points', () => {
    const format = checks([{ max_chars: 3 }]);
    assert.equal(checkFormat('😀😀😀', format).raw, 1);
    assert.equal(checkFormat('abcd', format).raw, 0);
  });

  it('valid_json whole and fenced want an object or array', () => {
    const whole = checks([{ valid_json: 'whole' }]);
    assert.equal(checkFormat('  {"a": [1, 2]}\n', whole).raw, 1);
    assert.equal(checkFormat('[1, 2', whole).raw, 0);
    assert.equal(checkFormat('42', whole).raw, 0);
    assert.equal(checkFormat('Here: {"a": 1}', whole).raw, 0);
    const fenced = checks([{ valid_json: 'fenced' }]);
    assert.equal(checkFormat('Here:\n```json\n{"a": 1}\n```\nDone.', fenced).raw, 1);
    assert.equal(checkFormat('```json\n{"a": 1}\n```\nbetter:\n```json\n{"a": \n```', fenced).raw, 0, 'the last block decides');
    assert.equal(checkFormat('{"a": 1}', fenced).raw, 0, 'no block');
  });

  it('scores all-or-nothing or the share passed', () => {
    const list = [{ must_match: 'a' }, { must_match: 'b' }, { must_match: 'c' }, { max_chars: 100 }];
    assert.deepEqual(checkFormat('ab', checks(list)), { raw: 0, failed: ['must_match /c/'] });
    assert.deepEqual(checkFormat('ab', checks(list, 'fraction')), { raw: 0.75, failed: ['must_match /c/'] });
    assert.equal(checkFormat('', checks(list, 'fraction')).raw, 0.25);
  });
});

describe('splitSteps', () => {
  it('numbered: 1. 2) Step 3: markers start steps; a preamble joins step 1; trailing text stays with the last', () => {
    const text = "Let's solve it.\n1. Add 2 and 2.\n   That is 4.\n2) Double it: 8.\nStep 3: Check: 8 / 2 = 4.\n**Step 4.** Done\n\nSo the answer is 8.";
    assert.deepEqual(splitSteps(text, 'numbered'), [
      "Let's solve it.\n1. Add 2 and 2.\n   That is 4.",
      '2) Double it: 8.',
      'Step 3: Check: 8 / 2 = 4.',
      '**Step 4.** Done\n\nSo the answer is 8.',
    ]);
  });

  it('numbered: numbers that are not markers, code fences, no markers at all, empty text', () => {
    assert.deepEqual(splitSteps('1. Pi:\n3.14 is close.\n2.5 is not.\n2020 was a year.\n2. Next', 'numbered'), ['1. Pi:\n3.14 is close.\n2.5 is not.\n2020 was a year.', '2. Next']);
    assert.deepEqual(splitSteps('1. Code:\n```\n2. not a step\n```\n2. Run it', 'numbered'), ['1. Code:\n```\n2. not a step\n```', '2. Run it']);
    assert.deepEqual(splitSteps('Just an answer.\nOn two lines.', 'numbered'), ['Just an answer.\nOn two lines.']);
    assert.deepEqual(splitSteps('  \n\n ', 'numbered'), []);
    assert.deepEqual(splitSteps('1.\r\n2. b\r\n', 'numbered'), ['1.', '2. b']);
  });

  it('paragraphs: blank lines separate, fences keep their blank lines', () => {
    assert.deepEqual(splitSteps('\n\nFirst.\nStill first.\n \t\nSecond.\n\n\n\nThird.\n', 'paragraphs'), ['First.\nStill first.', 'Second.', 'Third.']);
    assert.deepEqual(splitSteps('Code:\n\n```py\nx = 1\n\ny = 2\n```\n\nAfter.', 'paragraphs'), ['Code:', '```py\nx = 1\n\ny = 2\n```', 'After.']);
  });

  it('delimiter: literal text, empty pieces dropped', () => {
    assert.deepEqual(splitSteps('a ||| b |||||| c.*', { delimiter: '|||' }), ['a', 'b', 'c.*']);
    assert.deepEqual(splitSteps('a.b', { delimiter: '.*' }), ['a.b'], 'not a pattern');
  });

  it('merges the steps beyond maxSteps into the last, as they were separated', () => {
    assert.deepEqual(splitSteps('1. a\n2. b\n3. c\n4. d', 'numbered', 2), ['1. a', '2. b\n3. c\n4. d']);
    assert.deepEqual(splitSteps('a\n\nb\n\nc', 'paragraphs', 2), ['a', 'b\n\nc']);
    assert.deepEqual(splitSteps('a;b;c', { delimiter: ';' }, 1), ['a;b;c']);
    assert.deepEqual(splitSteps('a;b', { delimiter: ';' }, 5), ['a', 'b']);
    assert.throws(() => splitSteps('a', 'numbered', 0), /maxSteps/);
  });
});

describe('aggregateSteps', () => {
  const scores = [0.5, -0.25, 1];
  it('min, mean, last', () => {
    assert.equal(aggregateSteps(scores, 'min'), -0.25);
    close(aggregateSteps(scores, 'mean'), 1.25 / 3);
    assert.equal(aggregateSteps(scores, 'last'), 1);
  });

  it('discounted weighs the last step 1 and each earlier one gamma times the next', () => {
    // weights 0.25, 0.5, 1
    close(aggregateSteps(scores, { discounted: 0.5 }), (0.25 * 0.5 + 0.5 * -0.25 + 1) / 1.75);
    close(aggregateSteps(scores, { discounted: 1 }), aggregateSteps(scores, 'mean')!);
    close(aggregateSteps(scores, { discounted: 1e-9 }), 1, 'γ → 0 is last', 1e-8);
    assert.equal(aggregateSteps([0.3], { discounted: 0.9 }), 0.3);
  });

  it('nothing to aggregate is undefined; a non-finite score is an error', () => {
    for (const mode of ['min', 'mean', 'last', { discounted: 0.9 }] as const) assert.equal(aggregateSteps([], mode), undefined);
    assert.throws(() => aggregateSteps([1, Number.NaN], 'mean'), /step 2 has no finite score/);
    assert.throws(() => aggregateSteps([1], { discounted: 1.5 }), /gamma/);
  });
});
