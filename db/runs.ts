// Runs, their prompts and their metrics. Every write is an upsert on the table's natural key.
import { eq, sql } from 'drizzle-orm';
import { insertKeyedRows } from './bulk.js';
import type { Database } from './pool.js';
import { metrics, prompts, runs, type RunStatus } from './schema.js';

const terminal: RunStatus[] = ['completed', 'failed', 'cancelled'];

export async function upsertRun(
  db: Database,
  input: { workflowId: string; kind: string; constitutionId: number | null; config: unknown },
): Promise<number> {
  const [row] = await db
    .insert(runs)
    .values({ workflowId: input.workflowId, kind: input.kind, constitutionId: input.constitutionId, config: input.config })
    .onConflictDoUpdate({ target: runs.workflowId, set: { updatedAt: sql`now()` } })
    .returning({ id: runs.id });
  if (!row) throw new Error('upsertRun: no row returned');
  return row.id;
}

export async function setRunStatus(db: Database, runId: number, status: RunStatus, error?: string): Promise<void> {
  await db
    .update(runs)
    .set({
      status,
      error: error ?? null,
      updatedAt: sql`now()`,
      startedAt: status === 'running' ? sql`coalesce(${runs.startedAt}, now())` : runs.startedAt,
      finishedAt: terminal.includes(status) ? sql`coalesce(${runs.finishedAt}, now())` : sql`null`,
    })
    .where(eq(runs.id, runId));
}

export interface PromptInput {
  key: string;
  messages: { role: string; content: string }[];
  split?: string;
  metadata?: Record<string, unknown>;
}

/** Inserts prompts that are new and returns the ids of all, in input order. */
export async function upsertPrompts(db: Database, runId: number, input: PromptInput[]): Promise<number[]> {
  if (input.length === 0) return [];
  const rows = input.map((p) => ({ runId, key: p.key, messages: p.messages, split: p.split ?? 'train', metadata: p.metadata ?? {} }));
  // Prompts stored before (a retry, or a concurrent writer) are read back.
  const byKey = await insertKeyedRows(db, prompts, rows, { id: prompts.id, key: prompts.key, scope: eq(prompts.runId, runId) }, (row) => row.key);
  return input.map(({ key }) => {
    const id = byKey.get(key);
    if (id === undefined) throw new Error(`upsertPrompts: prompt ${key} vanished`);
    return id;
  });
}

/** Writes (or overwrites) metric values of a run's iteration; `db` may be a transaction. */
export async function recordMetrics(
  db: Pick<Database, 'insert'>,
  runId: number,
  iteration: number,
  values: Record<string, number>,
): Promise<void> {
  const rows = Object.entries(values).map(([name, value]) => ({ runId, iteration, name, value }));
  if (rows.length === 0) return;
  await db
    .insert(metrics)
    .values(rows)
    .onConflictDoUpdate({
      target: [metrics.runId, metrics.iteration, metrics.name],
      set: { value: sql`excluded.value`, recordedAt: sql`now()` },
    });
}
