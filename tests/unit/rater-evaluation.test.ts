// Rater-evaluation maths on hand-made decisions whose every figure is worked out in the comments,
// and the gold-set reader's refusals (each bad line named file:line).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { brierScore, evaluateRater, expectedCalibrationError, raterMetrics, type EvalDecision } from '../../core/rater/evaluation.js';
import { parseGoldJsonl } from '../../core/rater/gold.js';

const close = (a: number | null, b: number) => assert.ok(a !== null && Math.abs(a - b) < 1e-9, `${a} != ${b}`);

let calls = 0;
/** One call: `pA` undefined for an unreadable answer. */
function call(pair: string, category: string, principle: string, order: 'AB' | 'BA', pA: number | undefined, attempt = 0): EvalDecision {
  calls++;
  return { pair, category, principle, comparison: `${pair}:${principle}:${order}`, attempt, order, probabilityA: pA, promptTokens: 10, completionTokens: 1, fromCache: calls === 1 };
}

describe('rater metrics', () => {
  it('an always-A rater: perfect when the better response is A, always wrong when it is B, every pair a tie', () => {
    const m = raterMetrics([call('p1', 'c', 'x', 'AB', 1), call('p1', 'c', 'x', 'BA', 1), call('p2', 'c', 'x', 'AB', 1), call('p2', 'c', 'x', 'BA', 1)]);
    assert.deepEqual(m.accuracy.ab, { accuracy: 1, decided: 2 });
    assert.deepEqual(m.accuracy.ba, { accuracy: 0, decided: 2 });
    // Each pair: (1 + 0) / 2 = 0.5 exactly: a tie, counted half.
    assert.deepEqual(m.accuracy.combined, { accuracy: 0.5, correct: 0, wrong: 0, ties: 2, decided: 2 });
    assert.equal(m.position_bias, 0.5);
    assert.equal(m.order_agreement, 0);
    assert.equal(m.tie_rate, 1);
    assert.equal(m.abstain_rate, 0);
    // Confidence 0.5 and credit 0.5 in the same bin: calibrated; Brier (1 − 0.5)² = 0.25.
    assert.equal(m.ece, 0);
    assert.equal(m.brier, 0.25);
  });

  // p1 (x, P): AB P(A)=.9, BA P(A)=.2 → P(better) .9, .8 → soft .85, orders agree, correct
  // p2 (x, Q): AB .7, BA .6 → .7, .4 → soft .55, orders disagree, correct
  // p3 (y, P): AB .3, BA unreadable then repaired to .9 → .3, .1 → soft .2, agree, wrong
  // p4 (y, Q): AB unreadable three times (abstained), BA .5 → soft .5, a tie, one order only
  const decisions = [
    call('p1', 'x', 'P', 'AB', 0.9),
    call('p1', 'x', 'P', 'BA', 0.2),
    call('p2', 'x', 'Q', 'AB', 0.7),
    call('p2', 'x', 'Q', 'BA', 0.6),
    call('p3', 'y', 'P', 'AB', 0.3),
    call('p3', 'y', 'P', 'BA', 0.9, 1),
    call('p3', 'y', 'P', 'BA', undefined, 0),
    call('p4', 'y', 'Q', 'AB', undefined, 0),
    call('p4', 'y', 'Q', 'AB', undefined, 1),
    call('p4', 'y', 'Q', 'AB', undefined, 2),
    call('p4', 'y', 'Q', 'BA', 0.5),
  ];

  it('overall: each order, combined, bias, agreement, ties, abstentions, calibration, tokens', () => {
    const m = raterMetrics(decisions);
    assert.equal(m.pairs, 4);
    assert.equal(m.comparisons, 8);
    assert.equal(m.calls, 11);
    // AB: .9, .7, .3 → 1, 1, 0. BA: P(better) .8, .4, .1, .5 → 1, 0, 0, 0.5.
    close(m.accuracy.ab.accuracy, 2 / 3);
    assert.equal(m.accuracy.ab.decided, 3);
    close(m.accuracy.ba.accuracy, 1.5 / 4);
    assert.deepEqual({ ...m.accuracy.combined, accuracy: undefined }, { accuracy: undefined, correct: 2, wrong: 1, ties: 1, decided: 4 });
    close(m.accuracy.combined.accuracy, 2.5 / 4);
    // Mean P(A) of the 7 readable answers: 4.1 / 7.
    close(m.position_bias, 4.1 / 7 - 0.5);
    close(m.order_agreement, 2 / 3);
    assert.equal(m.order_agreement_pairs, 3);
    assert.equal(m.tie_rate, 0.25);
    assert.equal(m.abstain_rate, 1 / 8);
    assert.equal(m.repaired, 1);
    // Bin 8: .85 (right), .8 (the .2, wrong): |0.5 − 0.825| × 2/4. Bin 5: .55 (right), .5 (half): |0.75 − 0.525| × 2/4.
    close(m.ece, 0.1625 + 0.1125);
    close(m.brier, (0.15 ** 2 + 0.45 ** 2 + 0.8 ** 2 + 0.5 ** 2) / 4);
    assert.deepEqual(m.tokens, { prompt: 110, completion: 11, cached_calls: 1 });
  });

  it('per principle and per category, each with only its own answers', () => {
    const e = evaluateRater(decisions);
    assert.deepEqual(Object.keys(e.principles), ['P', 'Q']);
    assert.deepEqual(Object.keys(e.categories), ['x', 'y']);
    const p = e.principles.P!;
    assert.equal(p.pairs, 2);
    assert.deepEqual(p.accuracy.ab, { accuracy: 0.5, decided: 2 });
    assert.equal(p.accuracy.combined.accuracy, 0.5);
    assert.equal(p.order_agreement, 1);
    assert.equal(e.principles.Q!.abstain_rate, 0.25);
    assert.equal(e.principles.Q!.order_agreement, 0);
    assert.equal(e.categories.x!.accuracy.combined.accuracy, 1);
    // y: p3 wrong, p4 a tie.
    assert.equal(e.categories.y!.accuracy.combined.accuracy, 0.25);
    assert.equal(e.overall.calls, 11);
  });

  it('nothing decided gives nulls, not zeros', () => {
    const m = raterMetrics([call('p', 'c', 'x', 'AB', undefined)]);
    assert.equal(m.accuracy.combined.accuracy, null);
    assert.equal(m.position_bias, null);
    assert.equal(m.ece, null);
    assert.equal(m.abstain_rate, 1);
    assert.equal(expectedCalibrationError([]), null);
    assert.equal(brierScore([]), null);
  });

  it('ECE of a confident, half-right rater is the gap between confidence and accuracy', () => {
    // Four labels at 0.95 confidence, two on each side: accuracy 0.5 in bin 9 → ECE 0.45.
    close(expectedCalibrationError([0.95, 0.95, 0.05, 0.05]), 0.45);
    close(brierScore([0.95, 0.05]), (0.05 ** 2 + 0.95 ** 2) / 2);
  });
});

describe('gold sets', () => {
  const principles = { constitution: 'tenet-default', comparable: ['honest-no-fabrication', 'helpful-concise'], all: ['honest-no-fabrication', 'helpful-concise', 'critique-only'] };
  const good = [
    { id: 'arith-001', category: 'arithmetic', principle: 'honest-no-fabrication', prompt: 'What is 17 × 23?', chosen: '17 × 23 = 391.', rejected: '17 × 23 = 381.' },
    { id: 'chat-1', category: 'style', messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hi?' }], chosen: 'Hello!', rejected: 'Greetings, and a long preamble follows.' },
  ];

  it('reads prompts or messages, an optional principle, and hashes the pairs, not the layout (blank lines, key order)', () => {
    const text = good.map((g) => JSON.stringify(g)).join('\n');
    const result = parseGoldJsonl(text, 'gold.jsonl', principles);
    assert.ok(result.ok);
    assert.deepEqual(result.pairs.map((p) => [p.id, p.principle, p.messages.length]), [['arith-001', 'honest-no-fabrication', 1], ['chat-1', undefined, 2]]);
    assert.equal(result.pairs[0]!.messages[0]!.content, 'What is 17 × 23?');
    const spaced = parseGoldJsonl(`\n${good.map((g) => JSON.stringify(Object.fromEntries(Object.entries(g).reverse()))).join('\n\n')}\n`, 'other.jsonl', principles);
    assert.ok(spaced.ok);
    assert.equal(spaced.hash, result.hash);
    const changed = parseGoldJsonl(text.replace('381', '382'), 'gold.jsonl', principles);
    assert.ok(changed.ok);
    assert.notEqual(changed.hash, result.hash);
  });

  it('names every bad line: not JSON, a missing label, identical responses, an unknown principle, a duplicate id', () => {
    const lines = [
      JSON.stringify(good[0]),
      '{"id": "x", "category": "c", "prompt": "p", "chosen": "a"',
      JSON.stringify({ id: 'y', category: 'c', prompt: 'p', chosen: 'a' }),
      JSON.stringify({ id: 'z', category: 'c', prompt: 'p', chosen: 'same answer', rejected: ' same answer ' }),
      JSON.stringify({ ...good[0], id: 'u', principle: 'honest-no-fabricaton' }),
      JSON.stringify({ ...good[0], id: 'v', principle: 'critique-only' }),
      JSON.stringify({ ...good[0] }),
      JSON.stringify({ id: 'w', category: 'c', chosen: 'a', rejected: 'b' }),
      JSON.stringify({ id: 'e', category: 'c', prompt: 'p', chosen: '  ', rejected: 'b' }),
    ];
    const result = parseGoldJsonl(lines.join('\n'), 'gold.jsonl', principles);
    assert.ok(!result.ok);
    const problems = result.problems.join('\n');
    assert.match(problems, /^gold\.jsonl:2:58: not valid JSON/m);
    assert.match(problems, /^gold\.jsonl:3:1: rejected: missing required key: expected rejected \(a text: the worse response\)$/m);
    assert.match(problems, /^gold\.jsonl:4:73: rejected: expected two different responses \(chosen and rejected are identical\)$/m);
    assert.match(problems, /^gold\.jsonl:5:47: principle: unknown principle 'honest-no-fabricaton' \(not in tenet-default; did you mean 'honest-no-fabrication'\?\)$/m);
    assert.match(problems, /^gold\.jsonl:6:47: principle: principle 'critique-only' of tenet-default has no comparison questions$/m);
    assert.match(problems, /^gold\.jsonl:7:7: id: duplicate id 'arith-001' \(first on line 1\)$/m);
    assert.match(problems, /^gold\.jsonl:8:1: expected exactly one of 'prompt' or 'messages'$/m);
    assert.match(problems, /^gold\.jsonl:9:48: chosen: expected a non-empty chosen$/m);
    assert.equal(result.problems.length, 8);
  });

  it('an empty file is refused', () => {
    const result = parseGoldJsonl('\n\n', 'empty.jsonl');
    assert.deepEqual(result, { ok: false, problems: ['empty.jsonl: no pairs (the file is empty)'] });
  });
});
