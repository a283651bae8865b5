// What `tenet runs cancel|pause|resume` share: find the run, send the action to its workflow.
import { Command } from 'commander';
import { controlRun, RunWorkflowMissing, type RunAction } from '../../../worker/run-control.js';
import { withDatabase, withTemporal } from '../../database.js';
import { exitCodes, UserError } from '../../errors.js';
import { requireRun } from './find.js';

export function signalCommand(name: RunAction, description: string): Command {
  return new Command(name)
    .description(description)
    .argument('<run>', 'run id or workflow id')
    .action(async (ref: string) => {
      const row = await withDatabase((db) => requireRun(db, ref));
      const message = await withTemporal(async (client) => {
        try {
          return await controlRun(client, row, name);
        } catch (error) {
          if (error instanceof RunWorkflowMissing) throw new UserError(error.message, exitCodes.invalidInput);
          throw error;
        }
      });
      console.log(message);
    });
}
