// Reading a constitution file for a command: parse it, or fail with every problem of the file.
import { readFileSync } from 'node:fs';
import { constitutionHash } from '../core/constitution/hash.js';
import { formatProblem, parseConstitution, type ConstitutionProblem } from '../core/constitution/parse.js';
import type { Constitution } from '../core/constitution/schema.js';
import { UserError } from './errors.js';

export type LoadedConstitution =
  | { file: string; ok: true; constitution: Constitution; source: string; hash: string }
  | { file: string; ok: false; problems: ConstitutionProblem[] };

export function loadConstitutionFile(file: string): LoadedConstitution {
  let source: string;
  try {
    source = readFileSync(file, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'is a folder' : code === 'EACCES' ? 'permission denied' : String(code);
    return { file, ok: false, problems: [{ file, line: 1, column: 1, path: '', message: `cannot read the file: ${why}` }] };
  }
  const result = parseConstitution(source, file);
  if (!result.ok) return { file, ok: false, problems: result.problems };
  return { file, ok: true, constitution: result.constitution, source, hash: constitutionHash(result.constitution) };
}

/** The constitution in `file`, or a UserError listing all its problems. */
export function requireConstitution(file: string): Extract<LoadedConstitution, { ok: true }> {
  const loaded = loadConstitutionFile(file);
  if (!loaded.ok) throw new UserError(`${file} is not a valid constitution:\n${loaded.problems.map(formatProblem).join('\n')}`);
  return loaded;
}
