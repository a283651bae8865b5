// `tenet constitution load`: store a constitution file as a version (a new one only when its content changed).
import { Command } from 'commander';
import { storeConstitution } from '../../../db/constitutions.js';
import { requireConstitution } from '../../constitution-file.js';
import { withDatabase } from '../../database.js';
import { parseOptions, printJson } from '../../options.js';
import { jsonOption } from './options.js';

export const loadCommand = new Command('load')
  .description('store a constitution version in the database (a new version only when its content changed)')
  .argument('<file>', 'constitution YAML file')
  .option('--json', 'print the stored version as JSON')
  .action(async (file: string, raw: unknown) => {
    const options = parseOptions(jsonOption, raw);
    const loaded = requireConstitution(file);
    const stored = await withDatabase((db) => storeConstitution(db, { constitution: loaded.constitution, source: loaded.source, sourcePath: file }));
    if (options.json) printJson(stored);
    else console.log(`${stored.name} v${stored.version} (id ${stored.id}, hash ${stored.contentHash.slice(0, 12)}): ${stored.created ? 'stored as a new version' : 'already stored'}`);
  });
