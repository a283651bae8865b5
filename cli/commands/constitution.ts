// `tenet constitution validate|show|diff|load|list|import`: check, inspect, compare and store
// constitution files. One subcommand per file in constitution/.
import { Command } from 'commander';
import { diffCommand } from './constitution/diff.js';
import { importCommand } from './constitution/import.js';
import { listCommand } from './constitution/list.js';
import { loadCommand } from './constitution/load.js';
import { showCommand } from './constitution/show.js';
import { validateCommand } from './constitution/validate.js';

export const constitutionCommand = new Command('constitution')
  .description('check, inspect, compare and store constitution files')
  .addCommand(validateCommand)
  .addCommand(showCommand)
  .addCommand(diffCommand)
  .addCommand(loadCommand)
  .addCommand(listCommand)
  .addCommand(importCommand);
