// Principles from elsewhere, as a tenet constitution: a JSON list of critique/revision pairs (keys
// `critique` or `critic`, and `revision`), a JSON or YAML list of comparison principles (texts), or
// a text file with one principle per line. Every problem is named by its place in the file; the
// constitution made always parses (core/constitution/parse.ts). Pure: the caller reads the file.
import { z } from 'zod';
import { parseYamlSource, type SourceProblem } from '../source-problems.js';
import type { Constitution, Principle } from './schema.js';

export type ImportShape = 'pairs' | 'comparisons' | 'lines';
export type ImportResult =
  | { ok: true; shape: ImportShape; constitution: Constitution }
  | { ok: false; problems: SourceProblem[] };

export const importShapes =
  'a JSON list of critique/revision pairs ({"critique" or "critic", "revision"}), a JSON or YAML list of comparison principles (texts), or a text file with one principle per line';

const idPattern = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
const text = (what: string) => z.string({ error: `expected ${what} (a text)` }).trim().min(1, { error: `expected ${what}, got an empty text` });
const id = z.string({ error: 'expected an id (a text)' }).regex(idPattern, { error: "expected an id of letters, digits, '-', '_' or '.'" });

const pairSchema = z
  .strictObject({
    id: id.optional(),
    critique: text('a critique request').optional(),
    critic: text('a critique request').optional(),
    revision: text('a revision request'),
    comparison: text('a comparison question').optional(),
  }, { error: 'expected a critique/revision pair (a mapping with critique or critic, and revision)' })
  .refine((pair) => (pair.critique === undefined) !== (pair.critic === undefined), { error: "expected one critique request: 'critique' or 'critic'" });

const pairsSchema = z.array(pairSchema).min(1).superRefine((pairs, ctx) => {
  const seen = new Map<string, number>();
  pairs.forEach((pair, index) => {
    if (pair.id === undefined) return;
    const first = seen.get(pair.id);
    if (first === undefined) seen.set(pair.id, index);
    else ctx.addIssue({ code: 'custom', path: [index, 'id'], message: `duplicate id '${pair.id}' (first used by [${first}])` });
  });
});
const comparisonsSchema = z.array(text('a comparison principle'), { error: 'expected a list of comparison principles' }).min(1);

/** The file's shape from its name and first character: .json and .yaml/.yml are lists; other names are JSON when they start with `[`, else text. */
function isStructured(file: string, source: string): boolean {
  if (/\.(json|ya?ml)$/i.test(file)) return true;
  return /^\s*[[{]/.test(source);
}

export function importConstitution(source: string, file: string, name: string): ImportResult {
  if (!isStructured(file, source)) return fromLines(source, file, name);
  const list = parseYamlSource(source, file, z.array(z.unknown(), { error: `expected ${importShapes}` }).min(1, { error: `expected ${importShapes}` }), { what: importShapes });
  if (!list.ok) return list;
  const data = list.data;
  const isPairs = typeof data[0] === 'object' && data[0] !== null;
  if (isPairs) {
    const pairs = parseYamlSource(source, file, pairsSchema, { what: importShapes });
    if (!pairs.ok) return pairs;
    const principles = pairs.data.map((pair, index): Principle => {
      const critique = (pair.critique ?? pair.critic)!;
      return {
        id: pair.id ?? principleId(index, data.length),
        critique,
        revision: pair.revision,
        comparisons: [pair.comparison ?? comparisonFor(critique)],
        weight: 1,
        tags: pair.comparison ? [] : ['generated-comparison'],
      };
    });
    return { ok: true, shape: 'pairs', constitution: constitution(name, file, principles) };
  }
  const questions = parseYamlSource(source, file, comparisonsSchema, { what: importShapes });
  if (!questions.ok) return questions;
  return { ok: true, shape: 'comparisons', constitution: constitution(name, file, comparisonPrinciples(questions.data)) };
}

/** One principle per line; blank lines and lines starting with `#` are skipped, list markers (`-`, `*`, `1.`) dropped. */
function fromLines(source: string, file: string, name: string): ImportResult {
  const lines = source
    .split('\n')
    .map((line) => line.trim().replace(/^([-*•]|\d+[.)])\s+/, ''))
    .filter((line) => line !== '' && !line.startsWith('#'));
  if (lines.length === 0) return { ok: false, problems: [{ file, line: 1, column: 1, path: '', message: `expected ${importShapes}, got no principles` }] };
  return { ok: true, shape: 'lines', constitution: constitution(name, file, comparisonPrinciples(lines)) };
}

function comparisonPrinciples(questions: string[]): Principle[] {
  return questions.map((question, index) => ({ id: principleId(index, questions.length), comparisons: [question], weight: 1, tags: [] }));
}

/** `principle-01` … numbered from 1, zero-padded so they sort in file order. */
function principleId(index: number, count: number): string {
  return `principle-${String(index + 1).padStart(String(count).length, '0')}`;
}

/** A comparison question for a pair that brings none: the rater asks which response has less of what the critique looks for. */
export function comparisonFor(critique: string): string {
  const request = critique.replace(/\s+/g, ' ').trim();
  return `Which response gives less cause for this critique: "${request}"`;
}

function constitution(name: string, file: string, principles: Principle[]): Constitution {
  const base = file.split('/').at(-1) ?? file;
  return {
    name,
    description: `Imported from ${base} by \`tenet constitution import\`: ${principles.length} principle(s).`,
    references: [],
    defaults: { principle_sampling: 'weighted', principles_per_comparison: 1, critique_rounds: 1 },
    templates: {},
    principles,
  };
}

/** A constitution name from a file name: its base without extension, in the letters a name may hold. */
export function nameFromFile(file: string): string {
  const base = (file.split('/').at(-1) ?? file).replace(/\.[^.]*$/, '');
  const cleaned = base.replace(/[^A-Za-z0-9_.-]+/g, '-').replace(/^[^A-Za-z0-9]+|[^A-Za-z0-9]+$/g, '');
  return cleaned || 'imported';
}
