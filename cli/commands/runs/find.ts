// The run a `tenet runs` subcommand names, by run id or workflow id.
import type { Database } from '../../../db/pool.js';
import { findRun } from '../../../db/queries/runs.js';
import { UserError } from '../../errors.js';

/** The run `ref` names, or a UserError saying there is none. */
export async function requireRun(db: Database, ref: string) {
  const row = await findRun(db, ref);
  if (!row) throw new UserError(`no run ${ref} (give a run id or a workflow id; \`tenet runs list\` shows them)`);
  return row;
}
