// `tenet export preferences RUN`: preference pairs as JSONL in the prompt/chosen/rejected shape that TRL and OpenRLHF read.
import { preferencePairs } from '../../../db/queries/export.js';
import { exportSubcommand, promptText } from './subcommand.js';

export const exportPreferencesCommand = exportSubcommand({
  name: 'preferences',
  description: 'preference pairs (human overrides win; human ties are left out) as JSONL: prompt, chosen, rejected, soft_label, decision_ids',
  what: 'preferences',
  query: (db, id) => preferencePairs(db, id),
  record: (row, style) => ({
    prompt: style === 'conversational' ? row.prompt : promptText(row.prompt),
    chosen: style === 'conversational' ? [{ role: 'assistant', content: row.chosen }] : row.chosen,
    rejected: style === 'conversational' ? [{ role: 'assistant', content: row.rejected }] : row.rejected,
    soft_label: row.softLabel,
    source: row.source,
    decision_ids: row.decisionIds,
    review_id: row.reviewId,
    prompt_id: row.promptId,
    chosen_id: row.chosenId,
    rejected_id: row.rejectedId,
  }),
});
