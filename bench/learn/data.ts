// The learning benchmark's prompts, written for it: training prompts, held-out prompts whose own
// instructions a program can check (bench/learn/checker.ts), and a small fixed capability question
// set, the guard that learning to follow instructions did not cost plain knowledge.
import type { Check } from './checker.js';

export interface CheckedPrompt {
  prompt: string;
  checks: Check[];
}

const words = (n: number): Check => ({ kind: 'max_words', words: n });
const bullets = (n: number): Check => ({ kind: 'bullets', count: n });
const answer = (...expected: string[]): Check => ({ kind: 'answer', expected });
const startsWith = (word: string): Check => ({ kind: 'starts_with', word });
const oneLine: Check = { kind: 'one_line' };

/** What the loop trains on: the same kinds of instruction as the held-out prompts, other topics. */
export const trainPrompts: CheckedPrompt[] = [
  { prompt: 'In at most 15 words, say why people brush their teeth.', checks: [words(15)] },
  { prompt: 'List exactly three vegetables as bullet points, and nothing else.', checks: [bullets(3)] },
  { prompt: 'What is 8 + 5? Reply with only the number.', checks: [answer('13'), words(3)] },
  { prompt: 'Answer with yes or no first, then one short sentence: is water wet?', checks: [startsWith('yes')] },
  { prompt: 'Describe a bicycle in one sentence of at most 12 words.', checks: [words(12), oneLine] },
  { prompt: 'Give exactly two tips for studying, as bullet points.', checks: [bullets(2)] },
  { prompt: 'What is 6 times 7? Reply with only the number.', checks: [answer('42'), words(3)] },
  { prompt: 'Answer with yes or no first: is the moon bigger than the Earth?', checks: [startsWith('no')] },
  { prompt: 'In at most 10 words, what is a library?', checks: [words(10)] },
  { prompt: 'Name exactly four colours of the rainbow as bullet points.', checks: [bullets(4)] },
  { prompt: 'What is 20 minus 9? Reply with only the number.', checks: [answer('11'), words(3)] },
  { prompt: 'On a single line of at most 8 words, greet a new neighbour.', checks: [words(8), oneLine] },
];

/** Held out: never trained on; the checker, the rater and the length figures are measured on these. */
export const heldOutPrompts: CheckedPrompt[] = [
  { prompt: 'In at most 15 words, explain why the sky looks blue.', checks: [words(15)] },
  { prompt: 'In at most 12 words, say what a thermometer measures.', checks: [words(12)] },
  { prompt: 'In at most 10 words, tell me what bees make.', checks: [words(10), answer('honey')] },
  { prompt: 'Using at most 20 words, explain why we need sleep.', checks: [words(20)] },
  { prompt: 'In at most 12 words, describe a cloud.', checks: [words(12)] },
  { prompt: 'In no more than 15 words, say why plants need sunlight.', checks: [words(15)] },
  { prompt: 'In at most 10 words, what is a map for?', checks: [words(10)] },
  { prompt: 'Summarise what a teacher does in at most 12 words.', checks: [words(12)] },
  { prompt: 'List exactly three fruits as bullet points, and nothing else.', checks: [bullets(3)] },
  { prompt: 'Give exactly two reasons to drink water, as bullet points.', checks: [bullets(2)] },
  { prompt: 'Name exactly three animals that live in the sea, as bullet points.', checks: [bullets(3)] },
  { prompt: 'List exactly four things you might find in a kitchen, as bullet points.', checks: [bullets(4)] },
  { prompt: 'Give exactly three tips for a good night\'s sleep as bullet points, nothing else.', checks: [bullets(3)] },
  { prompt: 'List exactly two musical instruments as bullet points.', checks: [bullets(2)] },
  { prompt: 'Name exactly three countries in Europe as bullet points.', checks: [bullets(3)] },
  { prompt: 'List exactly four days of the week as bullet points.', checks: [bullets(4)] },
  { prompt: 'What is 9 + 6? Reply with only the number.', checks: [answer('15'), words(3)] },
  { prompt: 'What is 12 minus 5? Reply with only the number.', checks: [answer('7'), words(3)] },
  { prompt: 'What is 4 times 5? Reply with only the number.', checks: [answer('20'), words(3)] },
  { prompt: 'What is 30 divided by 3? Reply with only the number.', checks: [answer('10'), words(3)] },
  { prompt: 'How many legs does a cat have? Reply with only the number.', checks: [answer('4', 'four'), words(3)] },
  { prompt: 'What is 100 plus 1? Reply with only the number.', checks: [answer('101'), words(3)] },
  { prompt: 'What is 3 + 3 + 3? Reply with only the number.', checks: [answer('9'), words(3)] },
  { prompt: 'How many months are there in a year? Reply with only the number.', checks: [answer('12', 'twelve'), words(3)] },
  { prompt: 'Answer with yes or no first: is the sun a star?', checks: [startsWith('yes')] },
  { prompt: 'Answer with yes or no first: can fish breathe air like we do?', checks: [startsWith('no')] },
  { prompt: 'Answer with yes or no first, then one short sentence: is ice colder than steam?', checks: [startsWith('yes')] },
  { prompt: 'Answer with yes or no first: is a tomato a kind of metal?', checks: [startsWith('no')] },
  { prompt: 'On a single line of at most 10 words, thank a friend for a gift.', checks: [words(10), oneLine] },
  { prompt: 'Describe the sea in one sentence of at most 12 words.', checks: [words(12), oneLine] },
  { prompt: 'On one line of at most 8 words, wish someone a happy birthday.', checks: [words(8), oneLine] },
  { prompt: 'In one sentence of at most 15 words, say what a doctor does.', checks: [words(15), oneLine] },
];

export interface CapabilityQuestion {
  question: string;
  /** Any of these in the answer counts it right (numbers by value, words as whole words). */
  expected: string[];
}

/** The capability guard: plain questions with one short right answer, asked before and after training. */
export const capabilityQuestions: CapabilityQuestion[] = [
  { question: 'What is the capital of France?', expected: ['Paris'] },
  { question: 'How many legs does a spider have?', expected: ['8', 'eight'] },
  { question: 'What colour is the sky on a clear day?', expected: ['blue'] },
  { question: 'What is 3 + 4?', expected: ['7', 'seven'] },
  { question: 'Which planet do we live on?', expected: ['Earth'] },
  { question: 'What is the opposite of hot?', expected: ['cold'] },
  { question: 'How many days are there in a week?', expected: ['7', 'seven'] },
  { question: 'What do we call frozen water?', expected: ['ice'] },
  { question: 'What is the largest ocean on Earth?', expected: ['Pacific'] },
  { question: 'Who wrote the play Romeo and Juliet?', expected: ['Shakespeare'] },
  { question: 'How many hours are there in a day?', expected: ['24', 'twenty-four', 'twenty four'] },
  { question: 'What is 10 times 10?', expected: ['100', 'one hundred'] },
  { question: 'Which animal is known for saying "moo"?', expected: ['cow'] },
  { question: 'At what temperature in degrees Celsius does water boil at sea level?', expected: ['100'] },
  { question: 'What is the capital of Japan?', expected: ['Tokyo'] },
  { question: 'How many sides does a triangle have?', expected: ['3', 'three'] },
];
