import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { defaultTemplates } from '../../core/constitution/templates.js';
import { logit, sigmoid } from '../../core/rater/calibration.js';
import { planPairs } from '../../core/rater/pairwise.js';
import { labelPointwise, planPointwise, probabilityYesFromLogprobs, readYesNo, resumeAsk, yesNoRepairText } from '../../core/rater/pointwise.js';

const close = (a: number, b: number) => assert.ok(Math.abs(a - b) < 1e-9, `${a} != ${b}`);

describe('yes/no answers', () => {
  it('take P(yes) from the first token, however it is spelled, else the parsed word', () => {
    close(probabilityYesFromLogprobs([{ token: 'Yes', logprob: Math.log(0.3) }, { token: ' no', logprob: Math.log(0.1) }, { token: 'I', logprob: Math.log(0.2) }])!, 0.75);
    assert.equal(probabilityYesFromLogprobs([{ token: 'The', logprob: -0.1 }]), undefined);
    assert.deepEqual(readYesNo('No.', [{ token: 'The', logprob: 0 }]), { probabilityYes: 0, source: 'text' });
    assert.deepEqual(readYesNo('yes, it does', undefined), { probabilityYes: 1, source: 'text' });
    assert.equal(readYesNo('Nobody knows', undefined).probabilityYes, undefined);
  });
});

describe('pointwise labels', () => {
  // Three completions of one prompt: pairs (1,2), (1,3), (2,3), one principle with one question.
  const pairs = () =>
    planPairs({
      runId: 1,
      stage: 'label',
      iteration: 0,
      prompts: [{ prompt: { id: 9 }, conversation: 'hello' }],
      completions: [1, 2, 3].map((id) => ({ id, promptId: 9, text: `answer ${id}` })),
      principles: [{ id: 5, key: 'kind', comparisons: ['Is it kind?'], weight: 1 }],
      ensemble: 1,
      sampling: 'uniform',
      template: defaultTemplates.comparison,
      cot: false,
    });

  it('ask each completion once per question, fenced, under keys shared by its pairs', () => {
    const planned = planPointwise(pairs(), { stage: 'label', iteration: 0, conversationOf: () => 'hello' });
    assert.deepEqual(planned.asks.map((a) => a.base), ['label:0:1:kind:q0:yes-no', 'label:0:2:kind:q0:yes-no', 'label:0:3:kind:q0:yes-no']);
    assert.equal(planned.pairs[0]!.slots[0]!.first, planned.pairs[1]!.slots[0]!.first);
    assert.match(planned.asks[1]!.messages[0]!.content, /⟦BEGIN response⟧\nanswer 2\n⟦END response⟧/);
    assert.match(planned.asks[1]!.messages[0]!.content, /Does this response satisfy the following\? Is it kind\?\nAnswer Yes or No\./);
  });

  it('label a pair by the log-odds gap of its two P(yes), and drop it within the margin', () => {
    const planned = planPointwise(pairs(), { stage: 'label', iteration: 0, conversationOf: () => 'hello' });
    const yes = [0.8, 0.5, 0.45];
    planned.asks.forEach((ask, i) => (ask.decided = { id: 100 + i, probabilityYes: yes[i]! }));
    const labels = labelPointwise(planned.pairs, { disagreement: 'keep', margin: 0.06 });
    // (1,2): sigmoid(logit .8 − logit .5) = 0.8; (1,3): odds 4 / (9/11); (2,3): 0.55, within the margin.
    assert.deepEqual(labels.preferences.map((p) => [p.chosenId, p.rejectedId, p.ordersAgree, p.decisionIds]), [[1, 2, null, [100, 101]], [1, 3, null, [100, 102]]]);
    close(labels.preferences[0]!.softLabel, 0.8);
    close(labels.preferences[1]!.softLabel, sigmoid(logit(0.8) - logit(0.45)));
    assert.equal(labels.preferences[0]!.debias.mode, 'pointwise');
    assert.deepEqual(labels.drops.map((d) => [d.completionLowId, d.completionHighId, d.reason]), [[2, 3, 'below-margin']]);
    close(labels.drops[0]!.softLabel, 0.55);
  });

  it('skip pairs with an unread side, and resume from stored attempts', () => {
    const planned = planPointwise(pairs(), { stage: 'label', iteration: 0, conversationOf: () => 'hello' });
    const [one, two, three] = planned.asks;
    resumeAsk(one!, [{ id: 7, key: `${one!.base}#0`, outcome: 'ok', probabilities: { yes: 0.9, no: 0.1 }, text: 'Yes' }]);
    assert.deepEqual(one!.decided, { id: 7, probabilityYes: 0.9 });
    resumeAsk(two!, [{ id: 8, key: `${two!.base}#0`, outcome: 'unparseable', probabilities: null, text: 'Maybe' }]);
    assert.equal(two!.attempt, 1);
    assert.deepEqual(two!.messages.at(-1), { role: 'user', content: yesNoRepairText });
    three!.decided = { id: 9, probabilityYes: 0.5 };
    const labels = labelPointwise(planned.pairs, { disagreement: 'keep', margin: 0 });
    assert.deepEqual(labels.preferences.map((p) => [p.completionLowId, p.completionHighId]), [[1, 3]]);
  });
});
