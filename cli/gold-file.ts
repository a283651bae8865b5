// Reading a gold set for `tenet rater eval` (and the learning benchmark): every line checked against
// the constitution before anything is written or called.
import path from 'node:path';
import type { Constitution } from '../core/constitution/schema.js';
import { parseGoldJsonl, type GoldPair } from '../core/rater/gold.js';
import { UserError } from './errors.js';
import { readText } from './run-files.js';

/** The gold pairs of `file`, every principle they name checked against the constitution; or every bad line. */
export function readGold(file: string, constitution: Constitution): { name: string; hash: string; pairs: GoldPair[] } {
  const comparable = constitution.principles.filter((p) => (p.comparisons ?? []).length > 0).map((p) => p.id);
  if (comparable.length === 0) throw new UserError(`constitution ${constitution.name} has no comparison questions: a rater cannot be evaluated with it`);
  const result = parseGoldJsonl(readText(file, 'gold set'), file, { constitution: constitution.name, comparable, all: constitution.principles.map((p) => p.id) });
  if (!result.ok) {
    const shown = result.problems.slice(0, 50).join('\n');
    throw new UserError(`${file} has bad lines; nothing was written or called:\n${shown}${result.problems.length > 50 ? `\n… and ${result.problems.length - 50} more` : ''}`);
  }
  return { name: path.basename(file), hash: result.hash, pairs: result.pairs };
}
