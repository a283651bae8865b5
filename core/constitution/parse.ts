// Reads constitution YAML into a typed Constitution, or into every problem of the file with its
// line, column and key path (core/source-problems.ts). Pure: the caller reads the file.
import { formatPath, formatProblem, parseYamlSource, type SourceProblem } from '../source-problems.js';
import { constitutionSchema, type Constitution } from './schema.js';

export { formatPath, formatProblem };
export type ConstitutionProblem = SourceProblem;

export type ParseResult =
  | { ok: true; constitution: Constitution; problems: [] }
  | { ok: false; problems: ConstitutionProblem[] };

export function parseConstitution(source: string, file: string): ParseResult {
  const result = parseYamlSource(source, file, constitutionSchema, { what: 'a constitution (a YAML mapping)' });
  return result.ok ? { ok: true, constitution: result.data, problems: [] } : result;
}
