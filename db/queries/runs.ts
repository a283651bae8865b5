// The run queries the CLI (`tenet runs`) and the console share.
import { asc, desc, eq, sql } from 'drizzle-orm';
import { alias } from 'drizzle-orm/pg-core';
import type { Database } from '../pool.js';
import { metrics, models, runs, type RunStatus } from '../schema.js';

/** Runs, newest first. */
export async function listRuns(db: Database, options: { status?: RunStatus; limit: number }) {
  return db
    .select({ id: runs.id, workflowId: runs.workflowId, kind: runs.kind, status: runs.status, createdAt: runs.createdAt, finishedAt: runs.finishedAt, error: runs.error })
    .from(runs)
    .where(options.status ? eq(runs.status, options.status) : sql`true`)
    .orderBy(desc(runs.id))
    .limit(options.limit);
}

/** A run by id or workflow id. */
export async function findRun(db: Database, ref: string | number) {
  const byId = typeof ref === 'number' || /^\d+$/.test(ref);
  const [row] = await db.select().from(runs).where(byId ? eq(runs.id, Number(ref)) : eq(runs.workflowId, String(ref)));
  return row;
}

/** A run's metrics, by iteration then name. */
export async function runMetrics(db: Database, runId: number) {
  return db.select({ iteration: metrics.iteration, name: metrics.name, value: metrics.value }).from(metrics).where(eq(metrics.runId, runId)).orderBy(metrics.iteration, metrics.name);
}

const parents = alias(models, 'parent');

/** The models a run produced, oldest iteration first, each with its parent's key and run (the lineage a page links). */
export async function runModels(db: Database, runId: number) {
  return db
    .select({
      id: models.id,
      modelKey: models.modelKey,
      kind: models.kind,
      iteration: models.iteration,
      artifactPath: models.artifactPath,
      baseModel: sql<string | null>`${models.lineage}->>'baseModel'`,
      metrics: models.metrics,
      createdAt: models.createdAt,
      parentId: models.parentId,
      parentKey: parents.modelKey,
      parentRunId: parents.runId,
    })
    .from(models)
    .leftJoin(parents, eq(parents.id, models.parentId))
    .where(eq(models.runId, runId))
    .orderBy(sql`${models.iteration} asc nulls first`, asc(models.id));
}
export type RunModel = Awaited<ReturnType<typeof runModels>>[number];
