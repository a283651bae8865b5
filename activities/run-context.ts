// What every stage activity of a run needs: its config, constitution and principle rows, and its
// prompts by position. Runs are immutable once started, so the worker keeps them in memory.
import { ApplicationFailure } from '@temporalio/activity';
import { and, asc, eq } from 'drizzle-orm';
import { constitutionSchema, type Constitution } from '../core/constitution/schema.js';
import { defaultTemplates, type TemplateKind } from '../core/constitution/templates.js';
import { runConfigSchema, type RunConfig } from '../core/run-config.js';
import type { Database } from '../db/pool.js';
import { constitutions, principles, prompts, runs } from '../db/schema.js';

export interface PrincipleRow {
  id: number;
  key: string;
  critique: string | null;
  revision: string | null;
  comparisons: string[];
  weight: number;
}

export interface RunContext {
  runId: number;
  config: RunConfig;
  constitutionId: number;
  constitutionHash: string;
  constitution: Constitution;
  principles: PrincipleRow[];
  template(kind: TemplateKind): string;
}

export interface PromptRow {
  id: number;
  key: string;
  messages: { role: string; content: string }[];
  /** The prompts file's metadata; a verifiable task's spec is under `task`. */
  metadata: unknown;
}

export class RunContexts {
  private readonly contexts = new Map<number, Promise<RunContext>>();

  constructor(private readonly db: Database) {}

  get(runId: number): Promise<RunContext> {
    let context = this.contexts.get(runId);
    if (!context) {
      context = this.load(runId);
      context.catch(() => this.contexts.delete(runId));
      this.contexts.set(runId, context);
    }
    return context;
  }

  private async load(runId: number): Promise<RunContext> {
    const [row] = await this.db
      .select({ config: runs.config, constitutionId: runs.constitutionId, parsed: constitutions.parsed, hash: constitutions.contentHash })
      .from(runs)
      .innerJoin(constitutions, eq(constitutions.id, runs.constitutionId))
      .where(eq(runs.id, runId));
    if (!row?.constitutionId) throw ApplicationFailure.nonRetryable(`run ${runId} does not exist or has no constitution`, 'RunMissing');
    const config = runConfigSchema.parse(row.config);
    const constitution = constitutionSchema.parse(row.parsed);
    const principleRows = await this.db
      .select({ id: principles.id, key: principles.key, critique: principles.critique, revision: principles.revision, comparisons: principles.comparisons, weight: principles.weight })
      .from(principles)
      .where(eq(principles.constitutionId, row.constitutionId))
      .orderBy(asc(principles.position));
    return {
      runId,
      config,
      constitutionId: row.constitutionId,
      constitutionHash: row.hash,
      constitution,
      principles: principleRows,
      template: (kind) => constitution.templates[kind] ?? defaultTemplates[kind],
    };
  }
}

/** The prompts of a split of a run at positions [offset, offset + limit), in id order. Stages work on `train`; `eval` prompts are held out for evaluation. */
export async function promptsAt(db: Database, runId: number, offset: number, limit: number, split: 'train' | 'eval' = 'train'): Promise<PromptRow[]> {
  const rows = await db
    .select({ id: prompts.id, key: prompts.key, messages: prompts.messages, metadata: prompts.metadata })
    .from(prompts)
    .where(and(eq(prompts.runId, runId), eq(prompts.split, split)))
    .orderBy(asc(prompts.id))
    .offset(offset)
    .limit(limit);
  return rows.map((row) => ({ ...row, messages: row.messages as PromptRow['messages'] }));
}

/** The conversation as one text, for templates that show it ({{prompt}}, {{conversation}}). */
export function conversationText(messages: PromptRow['messages']): string {
  if (messages.length === 1 && messages[0]!.role === 'user') return messages[0]!.content;
  return messages.map((m) => `${m.role}: ${m.content}`).join('\n\n');
}
