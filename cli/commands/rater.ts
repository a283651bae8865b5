// `tenet rater eval|show|list|agreement`: measure a rater on a gold set, read stored evaluations,
// and the agreement of a run's AI labels with the humans who reviewed its pairs. One subcommand per
// file in rater/ (rater/report.ts prints what they share).
import { Command } from 'commander';
import { agreementCommand } from './rater/agreement.js';
import { raterEvalCommand } from './rater/eval.js';
import { listCommand } from './rater/list.js';
import { showCommand } from './rater/show.js';

export const raterCommand = new Command('rater')
  .description('measure a rater before trusting it: gold-set evaluations and AI–human agreement')
  .addCommand(raterEvalCommand)
  .addCommand(showCommand)
  .addCommand(listCommand)
  .addCommand(agreementCommand);
