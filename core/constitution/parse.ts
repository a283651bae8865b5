// Reads constitution YAML into a typed Constitution, or into every problem of the file with its
// line, column and key path. Pure: the caller reads the file.
import { isMap, isPair, isScalar, isSeq, LineCounter, parseDocument, type Document, type Node } from 'yaml';
import type { z } from 'zod';
import { closestWord } from '../text.js';
import { constitutionSchema, type Constitution } from './schema.js';

export interface ConstitutionProblem {
  file: string;
  line: number;
  column: number;
  /** Key path such as `principles[3].weight`; empty for the whole document. */
  path: string;
  message: string;
}

export type ParseResult =
  | { ok: true; constitution: Constitution; problems: [] }
  | { ok: false; problems: ConstitutionProblem[] };

export function formatProblem(problem: ConstitutionProblem): string {
  const where = `${problem.file}:${problem.line}:${problem.column}`;
  return problem.path ? `${where}: ${problem.path}: ${problem.message}` : `${where}: ${problem.message}`;
}

export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const key of path) {
    if (typeof key === 'number') out += `[${key}]`;
    else out += out ? `.${String(key)}` : String(key);
  }
  return out;
}

export function parseConstitution(source: string, file: string): ParseResult {
  const lineCounter = new LineCounter();
  const doc = parseDocument(source, { lineCounter, prettyErrors: false, uniqueKeys: true, version: '1.2' });
  const at = (offset: number) => {
    const pos = lineCounter.linePos(offset);
    return { line: pos.line, column: pos.col };
  };

  if (doc.errors.length > 0) {
    const problems = doc.errors.map((error) => {
      const pos = error.linePos?.[0] ?? at(error.pos[0]);
      return {
        file,
        line: 'col' in pos ? pos.line : pos.line,
        column: 'col' in pos ? pos.col : pos.column,
        path: '',
        message: `YAML syntax error: ${firstLine(error.message)}`,
      };
    });
    return { ok: false, problems: sortProblems(problems) };
  }

  const data: unknown = doc.toJS({ maxAliasCount: 100 });
  if (data === null || data === undefined) {
    return { ok: false, problems: [{ file, line: 1, column: 1, path: '', message: 'expected a constitution (a YAML mapping), got an empty file' }] };
  }
  const parsed = constitutionSchema.safeParse(data, { reportInput: true });
  if (parsed.success) return { ok: true, constitution: parsed.data, problems: [] };

  // A mapping with an unknown key gets that problem only: the rest of its checks follow from the typo.
  const unknownAt = new Set(parsed.error.issues.filter((i) => i.code === 'unrecognized_keys').map((i) => formatPath(i.path)));
  const issues = parsed.error.issues.filter((i) => i.code !== 'custom' || !unknownAt.has(formatPath(i.path)));
  const problems = issues.flatMap((issue) => issueProblems(issue, doc, source, file, at));
  return { ok: false, problems: sortProblems(dedupe(problems)) };
}

type Issue = z.core.$ZodIssue;

function issueProblems(
  issue: Issue,
  doc: Document,
  source: string,
  file: string,
  at: (offset: number) => { line: number; column: number },
): ConstitutionProblem[] {
  if (issue.code === 'unrecognized_keys') {
    const map = nodeAt(doc, issue.path);
    const expected = expectedKeys(issue.path);
    return issue.keys.map((key) => {
      const keyNode = isMap(map) ? map.items.find((pair) => isPair(pair) && isScalar(pair.key) && pair.key.value === key)?.key : undefined;
      const offset = offsetOf(keyNode as Node | undefined) ?? offsetOf(map) ?? 0;
      const suggestion = closestWord(key, expected);
      const hint = suggestion ? `; did you mean '${suggestion}'?` : '';
      return {
        file,
        ...at(offset),
        path: formatPath([...issue.path, key]),
        message: `unknown key '${key}' (expected one of: ${expected.join(', ')})${hint}`,
      };
    });
  }

  const { node, missing } = closestNode(doc, issue.path);
  let offset = offsetOf(node) ?? 0;
  const variable = issue.code === 'custom' ? (issue.params as { variable?: string } | undefined)?.variable : undefined;
  if (variable && node?.range) {
    // Point at the variable itself inside the template text.
    const found = source.slice(node.range[0], node.range[1]).indexOf(variable);
    if (found >= 0) offset = node.range[0] + found;
  }
  let message = issue.message;
  if (missing) message = `missing required key: ${message}`;
  else if (['invalid_type', 'invalid_value', 'invalid_format', 'too_small', 'too_big'].includes(issue.code)) {
    if ('input' in issue && issue.input !== undefined && !/, got /.test(message)) message += `, got ${describeValue(issue.input)}`;
  }
  return [{ file, ...at(offset), path: formatPath(issue.path), message }];
}

function expectedKeys(path: readonly PropertyKey[]): string[] {
  const depth = path.length;
  if (depth === 0) return ['name', 'description', 'references', 'defaults', 'templates', 'principles'];
  if (depth === 1 && path[0] === 'defaults') return ['principle_sampling', 'principles_per_comparison', 'critique_rounds'];
  if (depth === 1 && path[0] === 'templates') return ['critique', 'revision', 'comparison', 'score'];
  if (depth === 2 && path[0] === 'principles') return ['id', 'critique', 'revision', 'comparisons', 'weight', 'tags'];
  return [];
}

function nodeAt(doc: Document, path: readonly PropertyKey[]): Node | undefined {
  if (path.length === 0) return (doc.contents) ?? undefined;
  const found = doc.getIn(path as unknown[], true);
  return found && typeof found === 'object' && 'range' in found ? (found as Node) : undefined;
}

/** The node at the path, or the nearest ancestor present in the file (a missing key points at its mapping). */
function closestNode(doc: Document, path: readonly PropertyKey[]): { node: Node | undefined; missing: boolean } {
  for (let length = path.length; length >= 0; length--) {
    const node = nodeAt(doc, path.slice(0, length));
    if (node) return { node, missing: length < path.length && isKeyedContainer(node) };
  }
  return { node: undefined, missing: false };
}

function isKeyedContainer(node: Node): boolean {
  return isMap(node) || isSeq(node);
}

function offsetOf(node: Node | undefined | null): number | undefined {
  return node?.range?.[0];
}

function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return value.length === 0 ? 'an empty list' : `a list of ${value.length}`;
  if (typeof value === 'object') return 'a mapping';
  if (typeof value === 'string') return value.trim() === '' ? 'an empty text' : `the text ${JSON.stringify(truncate(value, 40))}`;
  if (typeof value === 'number' || typeof value === 'boolean') return `${typeof value} ${String(value)}`;
  return typeof value;
}

function truncate(value: string, max: number): string {
  return value.length > max ? `${value.slice(0, max - 1)}…` : value;
}

function firstLine(message: string): string {
  return message.split('\n')[0]?.trim() ?? message;
}

function sortProblems(problems: ConstitutionProblem[]): ConstitutionProblem[] {
  return [...problems].sort((a, b) => a.line - b.line || a.column - b.column || a.path.localeCompare(b.path));
}

function dedupe(problems: ConstitutionProblem[]): ConstitutionProblem[] {
  const seen = new Set<string>();
  return problems.filter((problem) => {
    const key = formatProblem(problem);
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}
