import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { applyTrainingPolicy, combineDebiased, debiasedFirstLogit, estimatePositionPrior, logit, sigmoid } from '../../core/rater/calibration.js';
import { defaultTemplates } from '../../core/constitution/templates.js';
import { labelPairs, planPairs } from '../../core/rater/pairwise.js';

const close = (a: number, b: number, what = '') => assert.ok(Math.abs(a - b) < 1e-9, `${what} ${a} != ${b}`);

describe('log-odds', () => {
  it('logit and sigmoid invert each other; 0 and 1 stay finite', () => {
    for (const p of [0.01, 0.2, 0.5, 0.8, 0.99]) close(sigmoid(logit(p)), p);
    close(logit(0.5), 0);
    assert.ok(Number.isFinite(logit(0)) && logit(0) < -13 && Number.isFinite(logit(1)) && logit(1) > 13);
  });
});

describe('position prior', () => {
  it('is the median logit P(A) over comparisons asked in both orders', () => {
    const prior = estimatePositionPrior([
      { comparison: 'c1', order: 'AB', probabilityA: 0.9 },
      { comparison: 'c1', order: 'BA', probabilityA: 0.6 },
      // One order only: its content does not cancel, so it is left out.
      { comparison: 'c2', order: 'AB', probabilityA: 0.01 },
    ])!;
    // mean logit = (ln 9 + ln 1.5) / 2, so the prior odds are sqrt(13.5).
    const odds = Math.sqrt(13.5);
    close(prior.probabilityA, odds / (1 + odds));
    assert.equal(prior.decisions, 2);
    assert.equal(estimatePositionPrior([{ comparison: 'c', order: 'AB', probabilityA: 0.7 }]), undefined);
  });

  it('comes out at 0.5 for a rater without position bias', () => {
    const prior = estimatePositionPrior([
      { comparison: 'c1', order: 'AB', probabilityA: 0.8 },
      { comparison: 'c1', order: 'BA', probabilityA: 0.2 },
    ])!;
    close(prior.probabilityA, 0.5);
  });

  it('is not dragged by a few answers at exactly 0 or 1', () => {
    const decisions = [0.8, 0.85, 0.9, 1].flatMap((p, i) => [
      { comparison: `c${i}`, order: 'AB' as const, probabilityA: p },
      { comparison: `c${i}`, order: 'BA' as const, probabilityA: p },
    ]);
    // Median of logits: between 0.85 and 0.9, where a mean would be pulled past 0.99 by the one 1.
    close(estimatePositionPrior(decisions)!.probabilityA, sigmoid((logit(0.85) + logit(0.9)) / 2));
  });
});

describe('debiased verdicts', () => {
  it('take the prior out in log-odds and turn BA decisions to the first completion', () => {
    close(debiasedFirstLogit(0.9, 'AB', 0.5), Math.log(9));
    close(debiasedFirstLogit(0.9, 'BA', 0.5), -Math.log(9));
    close(debiasedFirstLogit(0.9, 'AB', 0.9), 0);
    close(debiasedFirstLogit(0.6, 'BA', 0.75), -(Math.log(1.5) - Math.log(3)));
  });

  it('combine both orders in log-odds: a rater that leans to A still tells the better completion', () => {
    // AB: P(A)=0.9 for the first; BA: P(A)=0.6 for the second. The prior sqrt(13.5) odds sits between.
    const odds = Math.sqrt(13.5);
    const verdict = combineDebiased([{ order: 'AB', probabilityA: 0.9 }, { order: 'BA', probabilityA: 0.6 }], odds / (1 + odds))!;
    // Each side: (ln 9 - ln 1.5) / 2 = ln sqrt(6) in favour of the first.
    close(verdict.softLabel, Math.sqrt(6) / (1 + Math.sqrt(6)));
    assert.equal(verdict.ordersAgree, true);
    // A pure position answer (same P(A) in both orders) is a tie whatever the prior.
    close(combineDebiased([{ order: 'AB', probabilityA: 0.97 }, { order: 'BA', probabilityA: 0.97 }], 0.5)!.softLabel, 0.5);
    assert.equal(combineDebiased([], 0.5), undefined);
    assert.equal(combineDebiased([{ order: 'BA', probabilityA: 0.3 }], 0.5)!.ordersAgree, undefined);
  });

  it('report disagreement when the corrected orders point different ways', () => {
    const verdict = combineDebiased([{ order: 'AB', probabilityA: 0.8 }, { order: 'BA', probabilityA: 0.9 }], 0.5)!;
    assert.equal(verdict.ordersAgree, false);
    // Mean of ln 4 and -ln 9: the second completion, at odds 3:2.
    close(verdict.softLabel, 0.4);
  });
});

describe('training policy', () => {
  const disagreeing = { softLabel: 0.7, ordersAgree: false };
  it('keeps, ties or drops pairs whose orders disagree', () => {
    assert.deepEqual(applyTrainingPolicy(disagreeing, { disagreement: 'keep', margin: 0 }), { keep: true, softLabel: 0.7 });
    assert.deepEqual(applyTrainingPolicy(disagreeing, { disagreement: 'tie', margin: 0 }), { keep: true, softLabel: 0.5 });
    assert.deepEqual(applyTrainingPolicy(disagreeing, { disagreement: 'drop', margin: 0 }), { keep: false, reason: 'orders-disagree', softLabel: 0.7 });
    assert.deepEqual(applyTrainingPolicy({ softLabel: 0.7, ordersAgree: undefined }, { disagreement: 'drop', margin: 0 }), { keep: true, softLabel: 0.7 });
  });

  it('drops labels within the margin of 0.5, on either side', () => {
    assert.deepEqual(applyTrainingPolicy({ softLabel: 0.55, ordersAgree: true }, { disagreement: 'keep', margin: 0.1 }), { keep: false, reason: 'below-margin', softLabel: 0.55 });
    assert.deepEqual(applyTrainingPolicy({ softLabel: 0.45, ordersAgree: true }, { disagreement: 'keep', margin: 0.1 }).keep, false);
    assert.deepEqual(applyTrainingPolicy({ softLabel: 0.65, ordersAgree: true }, { disagreement: 'keep', margin: 0.1 }), { keep: true, softLabel: 0.65 });
    // A tie never clears a positive margin.
    assert.deepEqual(applyTrainingPolicy(disagreeing, { disagreement: 'tie', margin: 0.01 }), { keep: false, reason: 'below-margin', softLabel: 0.5 });
  });
});

describe('a batch labelled with a position-biased rater', () => {
  // Two prompts, one pair each, one principle, both orders: the rater says "A" everywhere, a little
  // more surely when the first completion is shown as A in pair 1 and when the second is in pair 2.
  const plan = () =>
    planPairs({
      runId: 1,
      stage: 'label',
      iteration: 0,
      prompts: [1, 2].map((id) => ({ prompt: { id }, conversation: `prompt ${id}` })),
      completions: [
        { id: 10, promptId: 1, text: 'x' },
        { id: 11, promptId: 1, text: 'y' },
        { id: 20, promptId: 2, text: 'x' },
        { id: 21, promptId: 2, text: 'y' },
      ],
      principles: [{ id: 1, key: 'p', comparisons: ['Which is better?'], weight: 1 }],
      ensemble: 1,
      sampling: 'uniform',
      template: defaultTemplates.comparison,
      cot: false,
    });
  const answers: Record<string, number> = { '10:AB': 0.98, '10:BA': 0.94, '20:AB': 0.94, '20:BA': 0.98 };
  const decide = () => {
    const pairs = plan();
    let id = 0;
    for (const pair of pairs)
      for (const c of pair.comparisons) {
        const probabilityA = answers[`${pair.first.id}:${c.order}`]!;
        c.decided = { id: ++id, probabilityA, probabilityFirst: c.order === 'AB' ? probabilityA : 1 - probabilityA };
      }
    return pairs;
  };

  it('without a prior: every pair disagrees between orders and lands near 0.5', () => {
    const labels = labelPairs(decide(), { position_prior: 'none', disagreement: 'keep', margin: 0 });
    assert.equal(labels.prior, undefined);
    assert.deepEqual(labels.preferences.map((p) => p.ordersAgree), [false, false]);
    for (const p of labels.preferences) close(p.softLabel, 0.52);
  });

  it('with the batch prior: orders agree, the labels carry the content signal and record how', () => {
    const labels = labelPairs(decide(), { position_prior: 'batch', disagreement: 'drop', margin: 0 });
    // The prior is the median logit of the four answers (two at each): the geometric mean of odds 49 and 47/3.
    const odds = Math.sqrt(49 * (0.94 / 0.06));
    close(labels.prior!.probabilityA, odds / (1 + odds));
    assert.deepEqual(labels.drops, []);
    assert.deepEqual(labels.preferences.map((p) => [p.chosenId, p.rejectedId, p.ordersAgree]), [[10, 11, true], [21, 20, true]]);
    // Half the log-odds gap between the orders: (ln 49 - ln(47/3)) / 2.
    const expected = sigmoid((Math.log(49) - Math.log(0.94 / 0.06)) / 2);
    for (const p of labels.preferences) close(p.softLabel, expected);
    assert.deepEqual(Object.keys(labels.preferences[0]!.debias).sort(), ['combined', 'disagreement', 'flagged', 'margin', 'mode', 'position_prior', 'prior_a', 'prior_decisions']);
    assert.equal(labels.preferences[0]!.debias.prior_decisions, 4);
  });

  it('with a margin above the signal: every pair is dropped with its reason and P(low-id better)', () => {
    const labels = labelPairs(decide(), { position_prior: 'batch', disagreement: 'keep', margin: 0.4 });
    assert.equal(labels.preferences.length, 0);
    assert.deepEqual(labels.drops.map((d) => [d.completionLowId, d.completionHighId, d.reason]), [[10, 11, 'below-margin'], [20, 21, 'below-margin']]);
    assert.ok(labels.drops[0]!.softLabel > 0.5 && labels.drops[1]!.softLabel < 0.5);
    close(labels.drops[0]!.softLabel, 1 - labels.drops[1]!.softLabel);
  });

  it('with no prior to estimate (one order only) nothing is corrected', () => {
    const pairs = decide();
    for (const pair of pairs) pair.comparisons[1]!.decided = undefined;
    const labels = labelPairs(pairs, { position_prior: 'batch', disagreement: 'keep', margin: 0 });
    assert.equal(labels.prior, undefined);
    assert.equal(labels.preferences[0]!.debias.prior_a, null);
    close(labels.preferences[0]!.softLabel, 0.98);
  });
});
