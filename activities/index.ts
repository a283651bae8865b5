// Activity factories. The worker builds them with their dependencies; workflows see only the types.
import type { Database } from '../db/pool.js';
import { createGpuActivities } from './gpu.js';
import { ModelEndpoints } from './llm.js';
import { createAdapterActivities } from './adapters.js';
import { createEvaluationActivities } from './evaluation.js';
import { createLoopActivities } from './loop.js';
import { createPipelineActivities } from './pipeline.js';
import { createRaterEvalActivities } from './rater-eval.js';
import { RunContexts } from './run-context.js';
import { createRunActivities } from './runs.js';
import { RewardScorers } from './scorers.js';
import { createSmokeActivities } from './smoke.js';

export function createCpuActivities(deps: { db: Database; llm?: ModelEndpoints }) {
  const llm = deps.llm ?? new ModelEndpoints(deps.db);
  const contexts = new RunContexts(deps.db);
  const scorers = new RewardScorers(deps.db);
  return {
    ...createRunActivities(deps.db),
    ...createSmokeActivities(deps.db),
    ...createPipelineActivities({ db: deps.db, llm, contexts, scorers }),
    ...createLoopActivities({ db: deps.db, contexts }),
    ...createAdapterActivities({ db: deps.db, contexts }),
    ...createEvaluationActivities({ db: deps.db, llm, contexts, scorers }),
    ...createRaterEvalActivities({ db: deps.db, llm, contexts }),
  };
}

export { createGpuActivities };

export type CpuActivities = ReturnType<typeof createCpuActivities>;
export type GpuActivities = ReturnType<typeof createGpuActivities>;
