// `tenet constitution list`: the constitution versions stored in the database.
import { Command } from 'commander';
import { storedConstitutions } from '../../../db/queries/constitutions.js';
import { withDatabase } from '../../database.js';
import { parseOptions, printJson } from '../../options.js';
import { jsonOption } from './options.js';

export const listCommand = new Command('list')
  .description('constitution versions stored in the database')
  .option('--json', 'print as JSON')
  .action(async (raw: unknown) => {
    const options = parseOptions(jsonOption, raw);
    const rows = await withDatabase((db) => storedConstitutions(db));
    if (options.json) return printJson(rows);
    if (rows.length === 0) return console.log('no constitutions stored yet (`tenet constitution load FILE`)');
    for (const r of rows) console.log(`${String(r.id).padStart(4)}  ${r.name} v${r.version}  ${r.contentHash.slice(0, 12)}  ${r.createdAt.toISOString()}  ${r.sourcePath ?? ''}`);
  });
