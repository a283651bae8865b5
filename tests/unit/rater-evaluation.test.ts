// Rater-evaluation maths on hand-made decisions whose every figure is worked out in the comments,
// and the gold-set reader's refusals (each bad line named file:line).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { combineDebiased, estimatePositionPrior, logit, sigmoid } from '../../core/rater/calibration.js';
import { combineDecisions } from '../../core/rater/labels.js';
import { brierScore, evaluateRater, expectedCalibrationError, raterMetrics, type DebiasSettings, type EvalDecision, type EvalLabel } from '../../core/rater/evaluation.js';
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

/**
 * A position-biased rater: logit P(A) = logit(0.86) + s·δ, δ its content signal, s = +1 when the
 * better response is shown as A and −1 when it is B. Per pair: δ in the AB order and in the BA order
 * (undefined: that order unreadable).
 */
const prior = 0.86;
const biased: [pair: string, category: string, ab: number | undefined, ba: number | undefined][] = [
  ['p1', 'fact', 0.4, 0.4],
  ['p2', 'fact', 0.4, 0.4],
  ['p3', 'fact', 0.4, 0.4],
  ['p4', 'fact', 0.4, 0.4],
  ['p5', 'fact', -0.4, -0.4],
  ['p6', 'style', 0.4, undefined],
  ['p7', 'style', undefined, 0.4],
  ['p8', 'style', undefined, 0.4],
  // Orders that disagree once the prior is out: +0.8 as AB, −0.4 as BA (and the mirror image).
  ['p9', 'style', 0.8, -0.4],
  ['p10', 'style', -0.8, 0.4],
];
const biasedDecisions = biased.flatMap(([pair, category, ab, ba]) =>
  (
    [
      ['AB', ab],
      ['BA', ba],
    ] as const
  ).map(([order, delta]) => call(pair, category, 'x', order, delta === undefined ? undefined : sigmoid(logit(prior) + (order === 'AB' ? delta : -delta)))),
);

/** Labels as the label stage makes them (labelPairs): the batch prior out of every decision, orders combined in log-odds. */
function stageLabels(decisions: readonly EvalDecision[], positionPrior: 'none' | 'batch'): EvalLabel[] {
  const read = decisions.filter((d): d is EvalDecision & { probabilityA: number } => d.probabilityA !== undefined);
  const estimated = estimatePositionPrior(read.map((d) => ({ order: d.order, comparison: d.pair, probabilityA: d.probabilityA })));
  const priorA = positionPrior === 'batch' ? estimated!.probabilityA : null;
  return [...new Set(read.map((d) => d.pair))].map((pair) => {
    const made = read.filter((d) => d.pair === pair);
    // The better response is always the pair's "first" here: AB shows it as A. Without a prior the stage averages P(first) (combineDecisions).
    const verdict = priorA === null ? combineDecisions(made.map((d) => ({ order: d.order, probabilityFirst: d.order === 'AB' ? d.probabilityA : 1 - d.probabilityA })))! : combineDebiased(made, priorA)!;
    return { pair, category: made[0]!.category, principles: ['x'], mode: 'pairwise', combined: verdict.softLabel, ordersAgree: verdict.ordersAgree, priorA };
  });
}

const settings = (changes: Partial<DebiasSettings>): DebiasSettings => ({ mode: 'pairwise', position_prior: 'batch', disagreement: 'keep', margin: 0, ...changes });

describe('debiased rater metrics', () => {
  it('the batch prior of a position-biased rater is its 0.86 (the median logit of its both-order answers)', () => {
    const read = biasedDecisions.filter((d): d is EvalDecision & { probabilityA: number } => d.probabilityA !== undefined);
    const estimated = estimatePositionPrior(read.map((d) => ({ order: d.order, comparison: d.pair, probabilityA: d.probabilityA })))!;
    close(estimated.probabilityA, prior);
    assert.equal(estimated.decisions, 14);
  });

  it('raw: one-order pairs go with the prior and the orders average in probability; debiased: the content decides', () => {
    const e = evaluateRater(biasedDecisions, { labels: stageLabels(biasedDecisions, 'batch'), settings: settings({}) });
    const o = e.overall;
    // Raw: p1–p4 right, p5 wrong; p6 (A only) right; p7, p8 (B only, P(A) = σ(logit 0.86 − 0.4) = 0.80) wrong;
    // p9 (0.932 + 0.098) / 2 > 0.5 right, p10 (0.734 + 0.196) / 2 < 0.5 wrong: 6 of 10.
    assert.deepEqual(o.accuracy.combined, { accuracy: 0.6, correct: 6, wrong: 4, ties: 0, decided: 10 });
    // P(A) > 0.5 in every answer: right whenever the better response is A, wrong whenever it is B.
    assert.deepEqual([o.accuracy.ab, o.accuracy.ba], [{ accuracy: 1, decided: 8 }, { accuracy: 0, decided: 9 }]);
    const d = o.debiased!;
    // Debiased: every pair's label is σ(mean content): p1–p4, p6–p8 σ(0.4), p5 σ(−0.4), p9 σ(0.2), p10 σ(−0.2): 8 of 10.
    assert.deepEqual(d.accuracy, { accuracy: 0.8, correct: 8, wrong: 2, ties: 0 });
    assert.deepEqual([d.labelled, d.kept, d.dropped], [10, 10, { orders_disagree: 0, below_margin: 0 }]);
    close(d.accuracy_drops_as_ties, 0.8);
    close(d.prior_a!.min, prior);
    close(d.prior_a!.max, prior);
    // 17 answers with the prior out: σ(±0.4) − 0.5 seven times up, eight times down; ±0.8 once each.
    close(d.position_bias, (-(sigmoid(0.4) - 0.5)) / 17);
    close(o.position_bias, read(biasedDecisions).reduce((sum, p) => sum + p, 0) / 17 - 0.5);
    // Both orders read on p1–p5, p9, p10; p9 and p10 disagree.
    close(d.order_agreement, 5 / 7);
    const labels = [...Array.from({ length: 7 }, () => sigmoid(0.4)), sigmoid(-0.4), sigmoid(0.2), sigmoid(-0.2)];
    close(d.brier, labels.reduce((sum, p) => sum + (1 - p) ** 2, 0) / 10);
    // Every confidence (0.599 eight times, 0.550 twice) falls in bin 5: |0.8 right − their mean|.
    close(d.ece, Math.abs(0.8 - (8 * sigmoid(0.4) + 2 * sigmoid(0.2)) / 10));
    // Per category, each with its own pairs.
    assert.deepEqual(e.categories.fact!.debiased!.accuracy, { accuracy: 0.8, correct: 4, wrong: 1, ties: 0 });
    assert.deepEqual(e.categories.style!.debiased!.accuracy, { accuracy: 0.8, correct: 4, wrong: 1, ties: 0 });
    assert.equal(e.categories.style!.accuracy.combined.accuracy, 0.4);
    assert.equal(e.principles.x!.debiased!.labelled, 10);
  });

  it('disagreeing orders made ties or dropped as training would; a dropped pair counts as a tie in the comparable figure', () => {
    const labels = stageLabels(biasedDecisions, 'batch');
    const tie = evaluateRater(biasedDecisions, { labels, settings: settings({ disagreement: 'tie' }) }).overall.debiased!;
    // p9 (right) and p10 (wrong) become ties: 7 right, 1 wrong, 2 ties.
    assert.deepEqual(tie.accuracy, { accuracy: 0.8, correct: 7, wrong: 1, ties: 2 });
    close(tie.tie_rate, 0.2);
    const drop = evaluateRater(biasedDecisions, { labels, settings: settings({ disagreement: 'drop' }) }).overall.debiased!;
    assert.deepEqual([drop.kept, drop.dropped], [8, { orders_disagree: 2, below_margin: 0 }]);
    assert.deepEqual(drop.accuracy, { accuracy: 7 / 8, correct: 7, wrong: 1, ties: 0 });
    close(drop.accuracy_drops_as_ties, 0.8);
    // A margin of 0.06 drops σ(±0.2) = 0.45 / 0.55 too (and keeps σ(±0.4) = 0.40 / 0.60).
    const margin = evaluateRater(biasedDecisions, { labels, settings: settings({ margin: 0.06 }) }).overall.debiased!;
    assert.deepEqual([margin.kept, margin.dropped], [8, { orders_disagree: 0, below_margin: 2 }]);
  });

  it('without a prior the labels are the raw combination, and the bias stays', () => {
    const e = evaluateRater(biasedDecisions, { labels: stageLabels(biasedDecisions, 'none'), settings: settings({ position_prior: 'none' }) });
    const d = e.overall.debiased!;
    assert.equal(d.prior_a, null);
    assert.deepEqual(d.accuracy, { accuracy: 0.6, correct: 6, wrong: 4, ties: 0 });
    close(d.brier, e.overall.brier!);
    close(d.position_bias, read(biasedDecisions).reduce((sum, p) => sum + p, 0) / 17 - 0.5);
  });

  it('pointwise labels: no orders to disagree, the margin still drops', () => {
    const labels: EvalLabel[] = [0.55, 0.7, 0.3].map((combined, i) => ({ pair: `q${i}`, category: 'c', principles: ['x'], mode: 'pointwise', combined, ordersAgree: undefined, priorA: null }));
    const e = evaluateRater([], { labels, settings: settings({ mode: 'pointwise', position_prior: 'none', disagreement: 'drop', margin: 0.1 }) });
    assert.equal(e.overall.pairs, 0);
    assert.equal(e.overall.accuracy.combined.accuracy, null);
    const d = e.overall.debiased!;
    assert.deepEqual([d.labelled, d.kept, d.dropped, d.order_agreement, d.position_bias], [3, 2, { orders_disagree: 0, below_margin: 1 }, null, null]);
    assert.deepEqual(d.accuracy, { accuracy: 0.5, correct: 1, wrong: 1, ties: 0 });
    assert.equal(e.categories.c!.debiased!.kept, 2);
  });
});

const read = (decisions: readonly EvalDecision[]) => decisions.flatMap((d) => (d.probabilityA === undefined ? [] : [d.probabilityA]));

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
