// The loop's trainer jobs planned from the run config, and the names an iteration gives what it
// makes. The names are in workflow histories and the database: these pin them.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { runConfigSchema } from '../../core/run-config.js';
import { adapterName, iterationNames, NoLoopError, planTrainerJob } from '../../core/trainer-jobs.js';

const endpoint = { base_url: 'http://127.0.0.1:1/v1', model: 'm' };
const config = (loop: Record<string, unknown>) => runConfigSchema.parse({ endpoints: { policy: endpoint, rater: endpoint }, loop });

describe('trainer jobs', () => {
  it('names: model keys, child workflow ids, the adapter after the update and artifact folders', () => {
    const names = iterationNames(7, 1);
    assert.equal(names.modelKey('policy'), 'run-7/it-1/policy');
    assert.equal(names.childWorkflowId('run-x-v1', 'reward'), 'run-x-v1/it-1/reward');
    assert.equal(names.adapterAfterUpdate, 'run7-it2');
    assert.equal(adapterName(7, 0), 'run7-it0');
    assert.deepEqual(names.artifactSegments('kl'), ['run-7', 'it-1', 'kl']);
  });

  it('plans the reward model on every preference so far, and the policy by mode', () => {
    const dpo = config({ mode: 'dpo', base_model: 'base', reward_model: { base: 'rm-base', options: { epochs: 2 } }, policy: { options: { beta: 0.2 } } });
    assert.deepEqual(planTrainerJob(dpo, { runId: 3, iteration: 2, step: 'reward' }), {
      runId: 3, iteration: 2, command: 'reward-model', kind: 'reward', modelKey: 'run-3/it-2/reward', baseModel: 'rm-base', options: { epochs: 2 }, data: { source: 'preferences', iterations: [0, 1, 2] },
    });
    assert.deepEqual(planTrainerJob(dpo, { runId: 3, iteration: 2, step: 'policy', policyModelId: 11 }), {
      runId: 3, iteration: 2, command: 'dpo', kind: 'policy', modelKey: 'run-3/it-2/policy', baseModel: 'base', parentModelId: 11, options: { beta: 0.2 }, data: { source: 'preferences', iterations: [2] },
    });
    const online = planTrainerJob(config({ mode: 'online', base_model: 'base' }), { runId: 3, iteration: 0, step: 'policy' });
    assert.equal(online.command, 'rl');
    assert.equal('parentModelId' in online, false, 'the first update starts from the base model');
    assert.deepEqual(online.data, { source: 'rollouts', iteration: 0 });
    assert.equal(planTrainerJob(config({ mode: 'dpo', base_model: 'base' }), { runId: 1, iteration: 0, step: 'reward' }).baseModel, 'base', 'the reward model defaults to the base model');
    const sharded = config({ mode: 'dpo', base_model: 'base', reward_model: { gpus: 2 }, policy: { gpus: 4 } });
    assert.deepEqual([planTrainerJob(sharded, { runId: 1, iteration: 0, step: 'reward' }).gpus, planTrainerJob(sharded, { runId: 1, iteration: 0, step: 'policy' }).gpus], [2, 4]);
    assert.throws(() => config({ mode: 'dpo', base_model: 'base', policy: { gpus: 0 } }), /at least 1 GPU/);
  });

  it('refuses a run without a loop', () => {
    assert.throws(() => planTrainerJob(config({}), { runId: 4, iteration: 0, step: 'reward' }), (error: unknown) => error instanceof NoLoopError && /run 4 has no training loop/.test(error.message));
  });
});
