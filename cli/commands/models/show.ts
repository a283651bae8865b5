// `tenet models show`: one model with its artifact, lineage, hyper-parameters and metrics, as JSON.
import { Command } from 'commander';
import { findModel } from '../../../db/queries/models.js';
import { withDatabase } from '../../database.js';
import { UserError } from '../../errors.js';
import { parseOptions, printJson } from '../../options.js';
import { id } from './options.js';

export const showCommand = new Command('show')
  .description('one model: artifact, lineage (parent, constitution, preference snapshot), hyper-parameters, metrics')
  .argument('<id>', 'model id')
  .action(async (ref: string) => {
    const modelId = parseOptions(id('a model id'), ref);
    const row = await withDatabase((db) => findModel(db, modelId));
    if (!row) throw new UserError(`model ${modelId} does not exist`);
    printJson(row);
  });
