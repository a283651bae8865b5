import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { defaultTemplates } from '../../core/constitution/templates.js';
import {
  askFor,
  baseOfKey,
  decisionKey,
  planPairs,
  labelPairs,
  readDecision,
  repair,
  repairText,
  resumeComparison,
  type PlanInput,
} from '../../core/rater/pairwise.js';
import { pickDistinct } from '../../core/rater/principles.js';

const principles = [
  { id: 11, key: 'harmless', comparisons: ['Which is less harmful?', 'Which is safer?'], weight: 1 },
  { id: 12, key: 'honest', comparisons: ['Which is more honest?'], weight: 1 },
  { id: 13, key: 'critique-only', comparisons: [], weight: 5 },
];
const prompt = (id: number) => ({ id, key: `p${id}` });
const completion = (id: number, promptId: number) => ({ id, promptId, text: `completion ${id}` });

function input(overrides: Partial<PlanInput<{ id: number; key: string }, (typeof principles)[number], ReturnType<typeof completion>>> = {}) {
  return {
    runId: 7,
    stage: 'label',
    iteration: 2,
    prompts: [
      { prompt: prompt(1), conversation: 'first prompt' },
      { prompt: prompt(2), conversation: 'second prompt' },
    ],
    completions: [completion(101, 1), completion(102, 1), completion(103, 1), completion(201, 2), completion(202, 2)],
    principles,
    ensemble: 2,
    sampling: 'uniform' as const,
    template: defaultTemplates.comparison,
    cot: false,
    ...overrides,
  };
}

const settings = { cot: false, cot_band: [0.4, 0.6] as const, logprobs: true, max_tokens: 512 };

describe('planning comparisons', () => {
  it('pairs every two completions of a prompt, draws principles per pair and asks both orders under stable keys', () => {
    const pairs = planPairs(input());
    assert.deepEqual(
      pairs.map((p) => [p.first.id, p.second.id, p.pairKey]),
      [
        [101, 102, '7:label:2:101:102'],
        [101, 103, '7:label:2:101:103'],
        [102, 103, '7:label:2:102:103'],
        [201, 202, '7:label:2:201:202'],
      ],
    );
    const pair = pairs[0]!;
    // Principles without comparison questions are never drawn; the draw is the key's, as before the move.
    const drawn = pickDistinct(principles.slice(0, 2), pair.pairKey, 2, 'uniform').map((p) => p.key);
    assert.deepEqual(
      pair.comparisons.map((c) => c.base),
      drawn.flatMap((key, slot) => [`label:2:101:102:${key}:${slot}:AB`, `label:2:101:102:${key}:${slot}:BA`]),
    );
    assert.ok(pairs.every((p) => p.comparisons.every((c) => c.principle.key !== 'critique-only')));
  });

  it('shows the completions in the order the comparison names, fenced', () => {
    const [ab, ba] = planPairs(input())[0]!.comparisons;
    assert.match(ab!.messages[0]!.content, /\(A\) ⟦BEGIN response_a⟧\ncompletion 101\n.*\n\(B\) ⟦BEGIN response_b⟧\ncompletion 102/s);
    assert.match(ba!.messages[0]!.content, /\(A\) ⟦BEGIN response_a⟧\ncompletion 102\n.*\n\(B\) ⟦BEGIN response_b⟧\ncompletion 101/s);
    assert.equal(ab!.question, ba!.question);
    assert.ok(principles.some((p) => p.comparisons.includes(ab!.question)));
  });

  it('is the same plan every time, and adds the chain-of-thought instruction only when asked', () => {
    assert.deepEqual(planPairs(input()), planPairs(input()));
    const cot = planPairs(input({ cot: true }))[0]!.comparisons[0]!;
    assert.match(cot.messages[0]!.content, /Think it through step by step first/);
    assert.doesNotMatch(planPairs(input())[0]!.comparisons[0]!.messages[0]!.content, /step by step/);
  });

  it('lets a caller pin the principles of a pair, falling back to the draw', () => {
    const pairs = planPairs(input({ principlesFor: (pair) => (pair.prompt.id === 2 ? [principles[1]!] : undefined) }));
    assert.deepEqual(
      pairs.at(-1)!.comparisons.map((c) => c.base),
      ['label:2:201:202:honest:0:AB', 'label:2:201:202:honest:0:BA'],
    );
    assert.deepEqual(pairs[0]!.comparisons.map((c) => c.base), planPairs(input())[0]!.comparisons.map((c) => c.base));
  });
});

describe('asking and repairing', () => {
  it('asks for option logprobs on a direct first attempt only', () => {
    const [c] = planPairs(input())[0]!.comparisons;
    assert.deepEqual(askFor(settings, c!), { messages: c!.messages, temperature: 0, max_tokens: 4, logprobs: true, top_logprobs: 5 });
    assert.equal(askFor({ ...settings, cot: true }, c!).max_tokens, 512);
    assert.equal(askFor({ ...settings, cot: true }, c!).logprobs, undefined);
    repair(c!, 'hmm');
    assert.equal(askFor(settings, c!).logprobs, undefined);
    assert.deepEqual(c!.messages.slice(1), [
      { role: 'assistant', content: 'hmm' },
      { role: 'user', content: repairText },
    ]);
    assert.equal(decisionKey(c!), `${c!.base}#1`);
    assert.equal(baseOfKey(decisionKey(c!)), c!.base);
  });

  it('resumes from stored attempts: a readable one decides, unreadable ones replay as repairs in key order', () => {
    const [a, b] = planPairs(input())[0]!.comparisons;
    resumeComparison(a!, [
      { id: 5, key: `${a!.base}#1`, outcome: 'ok', probabilities: { A: 0.3, first: 0.3 }, text: 'B' },
      { id: 4, key: `${a!.base}#0`, outcome: 'unparseable', probabilities: null, text: '?' },
    ]);
    assert.deepEqual(a!.decided, { id: 5, probabilityFirst: 0.3, probabilityA: 0.3 });
    resumeComparison(b!, [
      { id: 9, key: `${b!.base}#1`, outcome: 'unparseable', probabilities: null, text: 'second' },
      { id: 8, key: `${b!.base}#0`, outcome: 'unparseable', probabilities: null, text: 'first' },
    ]);
    assert.equal(b!.decided, undefined);
    assert.equal(b!.attempt, 2);
    assert.deepEqual(
      b!.messages.filter((m) => m.role === 'assistant').map((m) => m.content),
      ['first', 'second'],
    );
  });

  it('reads an answer in terms of the pair, clamping chain-of-thought answers', () => {
    const top = [{ token: 'A', logprob: Math.log(0.8) }, { token: 'B', logprob: Math.log(0.2) }];
    const ab = readDecision(settings, 'AB', 'A', top);
    assert.ok(Math.abs(ab.probabilityFirst! - 0.8) < 1e-12);
    const ba = readDecision(settings, 'BA', 'A', top);
    assert.ok(Math.abs(ba.probabilityFirst! - 0.2) < 1e-12);
    assert.equal(ba.probabilities!.source, 'logprobs');
    const cot = readDecision({ ...settings, cot: true }, 'BA', 'so the answer is: (A)', undefined);
    assert.deepEqual(cot.probabilities, { A: 0.6, B: 0.4, first: 0.4, source: 'text', unclamped_A: 1 });
    const unread = readDecision(settings, 'AB', 'no idea', undefined);
    assert.equal(unread.probabilityFirst, undefined);
    assert.equal(unread.probabilities, null);
  });
});

const asToday = { position_prior: 'none' as const, disagreement: 'keep' as const, margin: 0 };
const preferenceOf = (pair: ReturnType<typeof planPairs>[number]) => labelPairs([pair], asToday).preferences[0];

describe('preferences from decisions', () => {
  it('average both orders, put the likelier completion as chosen and list the decisions', () => {
    const pair = planPairs(input({ ensemble: 1 }))[0]!;
    const [ab, ba] = pair.comparisons;
    ab!.decided = { id: 31, probabilityFirst: 0.2, probabilityA: 0.2 };
    ba!.decided = { id: 30, probabilityFirst: 0.4, probabilityA: 0.6 };
    const { debias, ...preference } = preferenceOf(pair)!;
    // Today's rule: probabilities averaged as they are, P(first better) = 0.3, recorded as not debiased.
    assert.deepEqual({ ...debias, combined: Number(debias.combined.toFixed(12)) }, { mode: 'pairwise', position_prior: 'none', prior_a: null, prior_decisions: 0, disagreement: 'keep', margin: 0, flagged: 'keep', combined: 0.3 });
    assert.deepEqual({ ...preference, softLabel: Number(preference.softLabel.toFixed(12)) }, {
      promptId: 1,
      completionLowId: 101,
      completionHighId: 102,
      chosenId: 102,
      rejectedId: 101,
      softLabel: 0.7,
      ordersAgree: true,
      decisionIds: [30, 31],
    });
    ba!.decided = undefined;
    assert.equal(preferenceOf(pair)!.ordersAgree, null);
    ab!.decided = undefined;
    assert.equal(preferenceOf(pair), undefined);
  });
});
