// `tenet export sft RUN`: the final revision of each critique→revision chain as JSONL.
import { finalRevisions } from '../../../db/queries/export.js';
import { exportSubcommand, promptText } from './subcommand.js';

export const exportSftCommand = exportSubcommand({
  name: 'sft',
  description: 'the final revision of each critique→revision chain as JSONL (messages, or prompt/completion with --style standard)',
  what: 'revisions',
  query: (db, id) => finalRevisions(db, id),
  record: (row, style) => {
    const provenance = { source_completion_id: row.sourceCompletionId, rounds: row.rounds };
    return style === 'conversational'
      ? { messages: [...row.prompt, { role: 'assistant', content: row.revision }], ...provenance }
      : { prompt: promptText(row.prompt), completion: row.revision, ...provenance };
  },
});
