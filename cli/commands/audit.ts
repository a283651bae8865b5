// `tenet audit list|show|stats|override|label`: read the rater's decisions, overrule them, label pairs.
// One subcommand per file in audit/; each parses its options, calls db/queries, prints.
import { Command } from 'commander';
import { labelCommand } from './audit/label.js';
import { listCommand } from './audit/list.js';
import { overrideCommand } from './audit/override.js';
import { showCommand } from './audit/show.js';
import { statsCommand } from './audit/stats.js';

export const auditCommand = new Command('audit')
  .description("audit the rater's decisions and overrule them")
  .addCommand(listCommand)
  .addCommand(showCommand)
  .addCommand(statsCommand)
  .addCommand(overrideCommand)
  .addCommand(labelCommand);
