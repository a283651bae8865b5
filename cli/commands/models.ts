// `tenet models list|show`: the model registry, with lineage. One subcommand per file in models/.
import { Command } from 'commander';
import { listCommand } from './models/list.js';
import { showCommand } from './models/show.js';

export const modelsCommand = new Command('models').description('the model registry').addCommand(listCommand).addCommand(showCommand);
