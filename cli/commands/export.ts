// `tenet export preferences|sft`: JSONL in the shapes that TRL and OpenRLHF read (one file per subcommand under export/).
import { Command } from 'commander';
import { exportPreferencesCommand } from './export/preferences.js';
import { exportSftCommand } from './export/sft.js';

export const exportCommand = new Command('export').description('export training data from a run').addCommand(exportPreferencesCommand).addCommand(exportSftCommand);
