// `tenet constitution validate`: check constitution files, printing every problem as file:line:column.
import { Command } from 'commander';
import { formatProblem } from '../../../core/constitution/parse.js';
import { loadConstitutionFile } from '../../constitution-file.js';
import { exitCodes } from '../../errors.js';
import { parseOptions, printJson } from '../../options.js';
import { jsonOption } from './options.js';

export const validateCommand = new Command('validate')
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
  });
