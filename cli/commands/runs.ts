// `tenet runs list|show|cancel|pause|resume`: list, inspect and control runs. One subcommand per file in runs/.
import { Command } from 'commander';
import { cancelCommand } from './runs/cancel.js';
import { listCommand } from './runs/list.js';
import { pauseCommand } from './runs/pause.js';
import { resumeCommand } from './runs/resume.js';
import { showCommand } from './runs/show.js';

export const runsCommand = new Command('runs')
  .description('list, inspect and control runs')
  .addCommand(listCommand)
  .addCommand(showCommand)
  .addCommand(cancelCommand)
  .addCommand(pauseCommand)
  .addCommand(resumeCommand);
