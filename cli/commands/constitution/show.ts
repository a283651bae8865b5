// `tenet constitution show`: a constitution file's principles, weights, defaults and templates.
import { Command } from 'commander';
import { requireConstitution } from '../../constitution-file.js';
import { parseOptions, printJson } from '../../options.js';
import { jsonOption } from './options.js';

export const showCommand = new Command('show')
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
  });
