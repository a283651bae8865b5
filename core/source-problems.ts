// Problems of a YAML or JSON source, each at its place: `file:line:column: key.path: what was
// expected`. zod issues are mapped onto the `yaml` package's source ranges; an unknown key names the
// keys its mapping takes (read off the schema) and the likely one it was meant to be. Pure.
import { isMap, isPair, isScalar, isSeq, LineCounter, parseDocument, type Document, type Node } from 'yaml';
import type { z } from 'zod';
import { closestWord } from './text.js';

export interface SourceProblem {
  file: string;
  line: number;
  column: number;
  /** Key path such as `principles[3].weight`; empty for the whole document. */
  path: string;
  message: string;
}

export type SourceParse<T> = { ok: true; data: T; problems: [] } | { ok: false; problems: SourceProblem[] };

type Issue = z.core.$ZodIssue;
type Position = { line: number; column: number };

/** Where a problem is: the source text, its parsed document, and how an offset in it becomes a line and column. */
export interface SourcePlace {
  file: string;
  source: string;
  doc: Document;
  at: (offset: number) => Position;
}

export function formatProblem(problem: SourceProblem): string {
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

/**
 * A YAML file checked against `schema`: every syntax error, or every schema problem, with its line
 * and column. An empty file is `empty.value` when given, else the problem `expected <what>, got an empty file`.
 */
export function parseYamlSource<T>(source: string, file: string, schema: z.ZodType<T>, empty: { what: string } | { value: unknown }): SourceParse<T> {
  const lineCounter = new LineCounter();
  const doc = parseDocument(source, { lineCounter, prettyErrors: false, uniqueKeys: true, version: '1.2' });
  const at = (offset: number): Position => {
    const pos = lineCounter.linePos(offset);
    return { line: pos.line, column: pos.col };
  };
  if (doc.errors.length > 0) {
    const problems = doc.errors.map((error) => {
      const pos = error.linePos?.[0];
      return { file, ...(pos ? { line: pos.line, column: pos.col } : at(error.pos[0])), path: '', message: `YAML syntax error: ${firstLine(error.message)}` };
    });
    return { ok: false, problems: sortProblems(problems) };
  }
  let data: unknown = doc.toJS({ maxAliasCount: 100 });
  if (data === null || data === undefined) {
    if ('what' in empty) return { ok: false, problems: [{ file, line: 1, column: 1, path: '', message: `expected ${empty.what}, got an empty file` }] };
    data = empty.value;
  }
  const parsed = schema.safeParse(data, { reportInput: true });
  if (parsed.success) return { ok: true, data: parsed.data, problems: [] };
  return { ok: false, problems: sortProblems(schemaProblems(parsed.error.issues, schema, { file, source, doc, at })) };
}

/** The places in `text` of a value that JSON.parse read: a YAML document of the same text (JSON is YAML 1.2). */
export function jsonPlace(text: string, file: string, firstLine: number): SourcePlace {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: false, version: '1.2' });
  return {
    file,
    source: text,
    doc,
    at: (offset) => {
      const pos = lineCounter.linePos(offset);
      return { line: firstLine + pos.line - 1, column: pos.col };
    },
  };
}

/**
 * The zod issues of a value read from `place`, as problems at their places. A mapping with an
 * unknown key gets that problem only: the rest of its checks follow from the typo.
 */
export function schemaProblems(issues: readonly Issue[], schema: z.ZodType, place: SourcePlace): SourceProblem[] {
  const unknown = issues.filter((i) => i.code === 'unrecognized_keys');
  const unknownAt = new Set(unknown.map((i) => formatPath(i.path)));
  // A key missing because it was mistyped is said once, by the unknown key's did-you-mean.
  const mistyped = new Set(unknown.flatMap((i) => i.keys.map((key) => closestWord(key, keysAt(schema, i.path))).filter((k) => k !== undefined).map((k) => formatPath([...i.path, k]))));
  const kept = issues.filter((i) => {
    if (i.code === 'custom' && unknownAt.has(formatPath(i.path))) return false;
    return !(i.code === 'invalid_type' && i.input === undefined && mistyped.has(formatPath(i.path)));
  });
  return dedupe(kept.flatMap((issue) => issueProblems(issue, schema, place)));
}

function issueProblems(issue: Issue, schema: z.ZodType, { file, source, doc, at }: SourcePlace): SourceProblem[] {
  if (issue.code === 'unrecognized_keys') {
    const map = nodeAt(doc, issue.path);
    const expected = keysAt(schema, issue.path);
    return issue.keys.map((key) => {
      const keyNode = isMap(map) ? map.items.find((pair) => isPair(pair) && isScalar(pair.key) && pair.key.value === key)?.key : undefined;
      const offset = offsetOf(keyNode as Node | undefined) ?? offsetOf(map) ?? 0;
      const suggestion = closestWord(key, expected);
      const hint = suggestion ? `; did you mean '${suggestion}'?` : '';
      const known = expected.length > 0 ? ` (expected one of: ${expected.join(', ')})` : '';
      return { file, ...at(offset), path: formatPath([...issue.path, key]), message: `unknown key '${key}'${known}${hint}` };
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
  const path = formatPath(issue.path);
  let message = plainMessage(issue.message, path);
  if (missing || (issue.code === 'invalid_type' && issue.input === undefined)) message = `missing required key: ${message}`;
  else if (['invalid_type', 'invalid_value', 'invalid_format', 'too_small', 'too_big'].includes(issue.code)) {
    const secretish = /key|token|secret|password/i.test(String(issue.path.at(-1) ?? ''));
    if ('input' in issue && issue.input !== undefined && !secretish && !/, got /.test(message)) message += `, got ${describeValue(issue.input)}`;
  }
  return [{ file, ...at(offset), path, message }];
}

/** zod's own wording made to say what was expected: no "Too small:" lead, no "received" tail (the value is named after), no repeated key path. */
function plainMessage(message: string, path: string): string {
  let out = message.replace(/^(Invalid input|Invalid option|Invalid string|Too small|Too big): /, '').replace(/, received \w+$/, '');
  if (path && out.startsWith(`${path}: `)) out = out.slice(path.length + 2);
  return out;
}

interface LooseDef {
  type: string;
  shape?: Record<string, { _zod: { def: LooseDef } }>;
  innerType?: { _zod: { def: LooseDef } };
  in?: { _zod: { def: LooseDef } };
  element?: { _zod: { def: LooseDef } };
  valueType?: { _zod: { def: LooseDef } };
  options?: { _zod: { def: LooseDef } }[];
}

/** The keys the mapping at `path` of `schema` takes, in the schema's order (every option's, for a union). */
export function keysAt(schema: z.ZodType, path: readonly PropertyKey[]): string[] {
  return [...new Set(defKeys((schema as unknown as { _zod: { def: LooseDef } })._zod.def, path))];
}

function defKeys(def: LooseDef, path: readonly PropertyKey[]): string[] {
  const inner = def.innerType ?? (def.type === 'pipe' ? def.in : undefined);
  if (inner) return defKeys(inner._zod.def, path);
  if (def.type === 'union') return (def.options ?? []).flatMap((option) => defKeys(option._zod.def, path));
  if (path.length === 0) return def.type === 'object' && def.shape ? Object.keys(def.shape) : [];
  const [head, ...rest] = path;
  const next = def.type === 'object' ? def.shape?.[String(head)] : def.type === 'array' ? def.element : def.type === 'record' ? def.valueType : undefined;
  return next ? defKeys(next._zod.def, rest) : [];
}

function nodeAt(doc: Document, path: readonly PropertyKey[]): Node | undefined {
  if (path.length === 0) return doc.contents ?? undefined;
  const found = doc.getIn(path as unknown[], true);
  return found && typeof found === 'object' && 'range' in found ? (found as Node) : undefined;
}

/** The node at the path, or the nearest ancestor present in the file (a missing key points at its mapping). */
function closestNode(doc: Document, path: readonly PropertyKey[]): { node: Node | undefined; missing: boolean } {
  for (let length = path.length; length >= 0; length--) {
    const node = nodeAt(doc, path.slice(0, length));
    if (node) return { node, missing: length < path.length && (isMap(node) || isSeq(node)) };
  }
  return { node: undefined, missing: false };
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

export function sortProblems(problems: SourceProblem[]): SourceProblem[] {
  return [...problems].sort((a, b) => a.line - b.line || a.column - b.column || a.path.localeCompare(b.path));
}

function dedupe(problems: SourceProblem[]): SourceProblem[] {
  const seen = new Set<string>();
  return problems.filter((problem) => {
    const key = formatProblem(problem);
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}
