// Reward models loaded once per worker (by models.id) and shared by the batches that score with them.
import { ApplicationFailure } from '@temporalio/activity';
import { eq } from 'drizzle-orm';
import type { Database } from '../db/pool.js';
import { models } from '../db/schema.js';
import { RewardModelError, RewardScorer } from './reward-scorer.js';

export class RewardScorers {
  private readonly loaded = new Map<number, Promise<RewardScorer>>();

  constructor(private readonly db: Database) {}

  get(modelId: number): Promise<RewardScorer> {
    let scorer = this.loaded.get(modelId);
    if (!scorer) {
      scorer = this.load(modelId);
      scorer.catch(() => this.loaded.delete(modelId));
      this.loaded.set(modelId, scorer);
    }
    return scorer;
  }

  private async load(modelId: number): Promise<RewardScorer> {
    const [row] = await this.db.select({ kind: models.kind, path: models.artifactPath }).from(models).where(eq(models.id, modelId));
    if (!row) throw ApplicationFailure.nonRetryable(`model ${modelId} is not registered`, 'ModelMissing');
    if (row.kind !== 'reward') throw ApplicationFailure.nonRetryable(`model ${modelId} is a ${row.kind} model, not a reward model`, 'ModelMissing');
    try {
      return await RewardScorer.load(row.path);
    } catch (error) {
      if (error instanceof RewardModelError) throw ApplicationFailure.nonRetryable(error.message, 'RewardModelBroken');
      throw error;
    }
  }

  async close(): Promise<void> {
    const all = [...this.loaded.values()];
    this.loaded.clear();
    await Promise.all(all.map(async (s) => (await s.catch(() => undefined))?.close()));
  }
}
