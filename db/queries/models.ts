// The model registry queries `tenet models` and `tenet score` use.
import { and, desc, eq, type SQL } from 'drizzle-orm';
import type { Database } from '../pool.js';
import { models } from '../schema.js';

/** Models, newest first, optionally of one run and one kind. */
export async function listModels(db: Database, options: { run?: number; kind?: string; limit: number }) {
  const filters: SQL[] = [];
  if (options.run) filters.push(eq(models.runId, options.run));
  if (options.kind) filters.push(eq(models.kind, options.kind));
  return db.select().from(models).where(and(...filters)).orderBy(desc(models.id)).limit(options.limit);
}

/** One model by id, or undefined. */
export async function findModel(db: Database, id: number) {
  const [row] = await db.select().from(models).where(eq(models.id, id));
  return row;
}
