// Activity factories. The worker builds them with their dependencies; workflows see only the types.
import type { Database } from '../db/pool.js';
import { createGpuActivities } from './gpu.js';
import { createRunActivities } from './runs.js';
import { createSmokeActivities } from './smoke.js';

export function createCpuActivities(deps: { db: Database }) {
  return { ...createRunActivities(deps.db), ...createSmokeActivities(deps.db) };
}

export { createGpuActivities };

export type CpuActivities = ReturnType<typeof createCpuActivities>;
export type GpuActivities = ReturnType<typeof createGpuActivities>;
