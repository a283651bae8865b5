// `tenet constitution import FILE [--name N] > out.yaml`: principles from elsewhere as a tenet
// constitution (core/constitution/import.ts), printed as YAML that `tenet constitution validate` accepts.
import { Command } from 'commander';
import { stringify } from 'yaml';
import { z } from 'zod';
import { importConstitution, nameFromFile } from '../../../core/constitution/import.js';
import { parseConstitution } from '../../../core/constitution/parse.js';
import { formatProblem } from '../../../core/source-problems.js';
import { UserError } from '../../errors.js';
import { parseOptions } from '../../options.js';
import { readText } from '../../run-files.js';

const importOptions = z.object({
  name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, { error: "expected a name of letters, digits, '-', '_' or '.'" }).optional(),
});

export const importCommand = new Command('import')
  .description('convert critique/revision pairs (JSON), comparison principles (JSON or YAML list) or one principle per line (text) into a constitution, printed as YAML')
  .argument('<file>', 'a .json or .yaml list, or a text file')
  .option('--name <name>', 'the constitution name (default: from the file name)')
  .action((file: string, raw: unknown) => {
    const options = parseOptions(importOptions, raw);
    const result = importConstitution(readText(file, 'file to import'), file, options.name ?? nameFromFile(file));
    if (!result.ok) throw new UserError(result.problems.map(formatProblem).join('\n'));
    const yaml = `# Imported by \`tenet constitution import ${file}\` (${result.shape}); check it with \`tenet constitution validate\`.\n${stringify(result.constitution, { lineWidth: 0 })}`;
    // What is printed must read back as the same constitution.
    const back = parseConstitution(yaml, 'imported constitution');
    if (!back.ok) throw new UserError(`the constitution made from ${file} is not valid:\n${back.problems.map(formatProblem).join('\n')}`);
    process.stdout.write(yaml);
  });
