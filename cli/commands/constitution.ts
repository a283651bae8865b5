// `tenet constitution validate|show|diff|load|list|import`
import { Command } from 'commander';
import { desc } from 'drizzle-orm';
import { z } from 'zod';
import { diffConstitutions, type ConstitutionDiff } from '../../core/constitution/diff.js';
import { formatProblem } from '../../core/constitution/parse.js';
import { storeConstitution } from '../../db/constitutions.js';
import { constitutions } from '../../db/schema.js';
import { loadConstitutionFile, requireConstitution } from '../constitution-file.js';
import { closeAll, openDatabase } from '../context.js';
import { exitCodes } from '../errors.js';
import { parseOptions, printJson } from '../options.js';
import { importCommand } from './constitution-import.js';

const jsonOption = z.object({ json: z.boolean().default(false) });

export const constitutionCommand = new Command('constitution')
  .description('check, inspect, compare and store constitution files')
  .addCommand(
    new Command('validate')
      .description('check constitution files; prints every problem as file:line:column: key: what was expected')
      .argument('<files...>', 'constitution YAML files')
      .option('--json', 'print the result as JSON')
      .action((files: string[], raw: unknown) => {
        const options = parseOptions(jsonOption, raw);
        const results = files.map(loadConstitutionFile);
        if (options.json) {
          printJson(
            results.map((r) =>
              r.ok ? { file: r.file, ok: true, name: r.constitution.name, principles: r.constitution.principles.length, hash: r.hash } : { file: r.file, ok: false, problems: r.problems },
            ),
          );
        } else {
          for (const r of results) {
            if (r.ok) console.log(`${r.file}: ok (${r.constitution.name}, ${r.constitution.principles.length} principles, hash ${r.hash.slice(0, 12)})`);
            else for (const problem of r.problems) console.error(formatProblem(problem));
          }
          const bad = results.filter((r) => !r.ok).length;
          if (bad > 0) console.error(`${bad} of ${results.length} file(s) invalid`);
        }
        if (results.some((r) => !r.ok)) process.exitCode = exitCodes.invalidInput;
      }),
  )
  .addCommand(
    new Command('show')
      .description('print a constitution: its principles, weights, defaults and templates')
      .argument('<file>', 'constitution YAML file')
      .option('--json', 'print the parsed constitution and its hash as JSON')
      .action((file: string, raw: unknown) => {
        const options = parseOptions(jsonOption, raw);
        const { constitution, hash } = requireConstitution(file);
        if (options.json) return printJson({ hash, ...constitution });
        console.log(`${constitution.name}  (hash ${hash})`);
        console.log(constitution.description);
        for (const ref of constitution.references) console.log(`  ref: ${ref}`);
        const d = constitution.defaults;
        console.log(`defaults: sampling ${d.principle_sampling}, ${d.principles_per_comparison} principle(s) per comparison, ${d.critique_rounds} critique round(s)`);
        const custom = Object.keys(constitution.templates);
        console.log(`templates: ${custom.length ? `custom ${custom.join(', ')}; others built in` : 'built in'}`);
        console.log(`${constitution.principles.length} principles:`);
        for (const p of constitution.principles) {
          const uses = [p.critique ? 'critique/revision' : '', p.comparisons ? `${p.comparisons.length} comparison(s)` : ''].filter(Boolean).join(', ');
          console.log(`  ${p.id}  weight ${p.weight}  [${p.tags.join(', ')}]  ${uses}`);
          if (p.critique) console.log(`    critique: ${p.critique}`);
          if (p.revision) console.log(`    revision: ${p.revision}`);
          for (const q of p.comparisons ?? []) console.log(`    compare:  ${q}`);
        }
      }),
  )
  .addCommand(
    new Command('diff')
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
      }),
  )
  .addCommand(
    new Command('load')
      .description('store a constitution version in the database (a new version only when its content changed)')
      .argument('<file>', 'constitution YAML file')
      .option('--json', 'print the stored version as JSON')
      .action(async (file: string, raw: unknown) => {
        const options = parseOptions(jsonOption, raw);
        const loaded = requireConstitution(file);
        const db = await openDatabase();
        try {
          const stored = await storeConstitution(db, { constitution: loaded.constitution, source: loaded.source, sourcePath: file });
          if (options.json) printJson(stored);
          else console.log(`${stored.name} v${stored.version} (id ${stored.id}, hash ${stored.contentHash.slice(0, 12)}): ${stored.created ? 'stored as a new version' : 'already stored'}`);
        } finally {
          await closeAll();
        }
      }),
  )
  .addCommand(
    new Command('list')
      .description('constitution versions stored in the database')
      .option('--json', 'print as JSON')
      .action(async (raw: unknown) => {
        const options = parseOptions(jsonOption, raw);
        const db = await openDatabase();
        try {
          const rows = await db
            .select({ id: constitutions.id, name: constitutions.name, version: constitutions.version, contentHash: constitutions.contentHash, sourcePath: constitutions.sourcePath, createdAt: constitutions.createdAt })
            .from(constitutions)
            .orderBy(constitutions.name, desc(constitutions.version));
          if (options.json) return printJson(rows);
          if (rows.length === 0) return console.log('no constitutions stored yet (`tenet constitution load FILE`)');
          for (const r of rows) console.log(`${String(r.id).padStart(4)}  ${r.name} v${r.version}  ${r.contentHash.slice(0, 12)}  ${r.createdAt.toISOString()}  ${r.sourcePath ?? ''}`);
        } finally {
          await closeAll();
        }
      }),
  )
  .addCommand(importCommand);

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
