// `tenet constitution diff`: what changed from constitution A to constitution B.
import { Command } from 'commander';
import { diffConstitutions, type ConstitutionDiff } from '../../../core/constitution/diff.js';
import { requireConstitution } from '../../constitution-file.js';
import { parseOptions, printJson } from '../../options.js';
import { jsonOption } from './options.js';

export const diffCommand = new Command('diff')
  .description('what changed from constitution A to constitution B')
  .argument('<a>', 'the old file')
  .argument('<b>', 'the new file')
  .option('--json', 'print the difference as JSON')
  .action((a: string, b: string, raw: unknown) => {
    const options = parseOptions(jsonOption, raw);
    const before = requireConstitution(a);
    const after = requireConstitution(b);
    const diff = diffConstitutions(before.constitution, after.constitution);
    if (options.json) return printJson({ a: { file: a, hash: before.hash }, b: { file: b, hash: after.hash }, ...diff });
    printDiff(diff, a, b);
  });

function printDiff(diff: ConstitutionDiff, a: string, b: string): void {
  if (diff.same) return console.log(`${a} and ${b} are the same constitution`);
  const show = (value: unknown) => (typeof value === 'string' ? value : JSON.stringify(value));
  for (const change of diff.header) console.log(`~ ${change.field}\n  - ${show(change.before)}\n  + ${show(change.after)}`);
  for (const id of diff.removed) console.log(`- principle ${id}`);
  for (const id of diff.added) console.log(`+ principle ${id}`);
  for (const { id, changes } of diff.changed) {
    console.log(`~ principle ${id}`);
    for (const change of changes) console.log(`  ${change.field}\n    - ${show(change.before)}\n    + ${show(change.after)}`);
  }
  if (diff.reordered.length > 0) console.log(`order changed: ${diff.reordered.join(', ')}`);
}
