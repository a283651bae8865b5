// The learning benchmark's checker: each check passes what its instruction allows and fails what
// breaks it; satisfaction counts a response only when it passes every check of its prompt.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkResponse, numbersIn, passes, satisfaction, words, type Check } from '../../bench/learn/checker.js';
import { capabilityQuestions, heldOutPrompts, trainPrompts } from '../../bench/learn/data.js';

describe('learning benchmark checker', () => {
  it('counts words that carry a letter or digit, not stray punctuation', () => {
    assert.deepEqual(words('  Hello,  world — it is 3 pm. '), ['Hello,', 'world', 'it', 'is', '3', 'pm.']);
    assert.equal(passes({ kind: 'max_words', words: 5 }, 'One two three four five.'), true);
    assert.equal(passes({ kind: 'max_words', words: 5 }, 'One two three four five six.'), false);
    assert.equal(passes({ kind: 'max_words', words: 5 }, '   '), false, 'an empty answer does not satisfy a length limit');
  });

  it('counts list items of any common marker, exactly', () => {
    const three = '- apple\n* pear\n• plum';
    assert.equal(passes({ kind: 'bullets', count: 3 }, three), true);
    assert.equal(passes({ kind: 'bullets', count: 3 }, '1. apple\n2) pear\n3. plum'), true);
    assert.equal(passes({ kind: 'bullets', count: 2 }, three), false);
    assert.equal(passes({ kind: 'bullets', count: 3 }, 'Here are three: apple, pear, plum.'), false);
    assert.equal(passes({ kind: 'bullets', count: 1 }, '-apple'), false, 'a marker needs a space after it');
    assert.equal(passes({ kind: 'bullets', count: 1 }, '-5 degrees is cold\n- snow'), true, 'a negative number is not a list item');
  });

  it('reads the first word whatever its case and punctuation', () => {
    assert.equal(passes({ kind: 'starts_with', word: 'yes' }, 'Yes, the sun is a star.'), true);
    assert.equal(passes({ kind: 'starts_with', word: 'yes' }, '**YES**. It is.'), true);
    assert.equal(passes({ kind: 'starts_with', word: 'yes' }, 'Yesterday it was.'), false);
    assert.equal(passes({ kind: 'starts_with', word: 'no' }, 'Well, no.'), false);
  });

  it('finds numbers by value and words as whole words', () => {
    assert.deepEqual(numbersIn('3,600 seconds, or 1.5 hours, and -2'), [3600, 1.5, -2]);
    assert.equal(passes({ kind: 'answer', expected: ['15'] }, '9 + 6 = 15.'), true);
    assert.equal(passes({ kind: 'answer', expected: ['15'] }, 'The answer is 150.'), false);
    assert.equal(passes({ kind: 'answer', expected: ['3600'] }, 'There are 3,600 seconds in an hour.'), true);
    assert.equal(passes({ kind: 'answer', expected: ['4', 'four'] }, 'A cat has four legs.'), true);
    assert.equal(passes({ kind: 'answer', expected: ['Paris'] }, 'The capital of France is **Paris**.'), true);
    assert.equal(passes({ kind: 'answer', expected: ['ice'] }, 'It is called slice.'), false, 'a word inside another word does not count');
    assert.equal(passes({ kind: 'answer', expected: ['carbon dioxide'] }, 'Plants take in Carbon-Dioxide.'), true);
  });

  it('one line means no line break inside the answer', () => {
    assert.equal(passes({ kind: 'one_line' }, '  Happy birthday!\n'), true);
    assert.equal(passes({ kind: 'one_line' }, 'Happy\nbirthday!'), false);
  });

  it('a response satisfies its prompt only when every check passes', () => {
    const checks: Check[] = [{ kind: 'answer', expected: ['15'] }, { kind: 'max_words', words: 3 }];
    assert.deepEqual(checkResponse(checks, '15'), { ok: true, failed: [] });
    assert.deepEqual(checkResponse(checks, 'The sum of nine and six is 15.').failed, [checks[1]]);
    assert.throws(() => checkResponse([], 'x'), /at least one check/);
    const result = satisfaction([
      { checks, response: '15' },
      { checks, response: 'It is 15, since 9 + 6 = 15.' },
      { checks: [{ kind: 'bullets', count: 2 }], response: '- a\n- b' },
      { checks: [{ kind: 'bullets', count: 2 }], response: '- a' },
    ]);
    assert.equal(result.rate, 0.5);
    assert.deepEqual([result.satisfied, result.total], [2, 4]);
    assert.deepEqual(result.byKind, { answer: { passed: 2, total: 2 }, max_words: { passed: 1, total: 2 }, bullets: { passed: 1, total: 2 } });
    assert.throws(() => satisfaction([]), /no responses/);
  });

  it('ships at least 32 held-out prompts, each with checks, none of them also a training prompt, and a capability set', () => {
    assert.ok(heldOutPrompts.length >= 32);
    assert.ok(heldOutPrompts.every((p) => p.checks.length > 0) && trainPrompts.every((p) => p.checks.length > 0));
    const trained = new Set(trainPrompts.map((p) => p.prompt));
    assert.ok(heldOutPrompts.every((p) => !trained.has(p.prompt)));
    assert.equal(new Set(heldOutPrompts.map((p) => p.prompt)).size, heldOutPrompts.length);
    assert.ok(capabilityQuestions.length >= 10 && capabilityQuestions.every((q) => q.expected.length > 0));
  });
});
