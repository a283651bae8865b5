// The fault matrix's online loop: one iteration of sample → label → reward model → rollouts scored
// in Node (the reward model and the rater's pointwise scores) → `trainer rl` → the new adapter
// loaded into the policy endpoint → evaluation, on the tiny model and a worker child process serving
// both queues. Run once without faults for reference, then with the worker SIGKILLed while a
// rollout scoring call is in flight, and while the endpoint is loading the new adapter (its
// load_lora_adapter request held open until the kill). Each run completes with exactly the
// reference's rows — completions, decisions, preferences, rollout rewards, the trained models and
// their metrics — and pays again for no model call that was not in flight during the fault.
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { RunConfigInput } from '../../core/run-config.js';
import { makeTinyModel } from '../helpers.js';
import { ChaosStack, compareRows, printTable, recordCase, type KeyedRows } from './harness.js';

/** Trainer jobs, the KL measurement included, take minutes on 2 shared cores. */
const loopTimeoutMs = 600_000;

describe('fault matrix: the online loop', () => {
  const stack = new ChaosStack({ queue: 'all' });
  let reference: KeyedRows;
  let tiny: string;

  const trainer = { max_steps: 4, batch_size: 4, checkpoint_every: 0 };
  const overrides = (): Partial<RunConfigInput> => ({
    critique: { enabled: false },
    loop: {
      mode: 'online',
      iterations: 1,
      base_model: tiny,
      reward_model: { options: trainer },
      policy: { options: { ...trainer, max_steps: 2 } },
      rollouts: { group_size: 2, max_tokens: 16 },
      rewards: { reward_model: { weight: 0.5 }, rater_score: { weight: 1 } },
      evaluate: { max_prompts: 2, max_tokens: 16, kl_samples: 1 },
    },
  });

  before(async () => {
    await stack.start();
    tiny = path.join(stack.home, 'tiny');
    makeTinyModel(tiny);
    const started = await stack.startRun('reference', overrides());
    assert.equal(await stack.outcome(started.workflowId, loopTimeoutMs), 'completed');
    reference = await stack.rows(started.runId);
    assert.equal(stack.repeatedCalls('reference'), 0);
    const kinds = [...reference.keys()];
    assert.ok(kinds.some((k) => k.startsWith('rollout reward ')) && kinds.some((k) => k.startsWith('decision score:')), 'the reference scored its rollouts');
    assert.deepEqual(kinds.filter((k) => k.startsWith('model ')).sort(), ['model policy 0', 'model reward 0']);
    assert.equal(stack.endpoint.adapterLoads.filter((l) => l.path.startsWith('/reference/')).length, 1);
  });

  after(async () => {
    stack.onAdapterLoad = undefined;
    printTable();
    await stack.stop();
  });

  const rollouts = (rows: KeyedRows) => [...rows.keys()].filter((k) => k.startsWith('rollout reward ')).length;

  it('the worker SIGKILLed during rollout scoring', async () => {
    const prefix = 'kill-scoring';
    const started = await stack.startRun(prefix, overrides());
    // The 6th pointwise score call of the rollouts is in flight: the rollout batch is scoring.
    await stack.when(prefix, 'score', 6);
    const fault = Date.now();
    const scoredBefore = (await stack.db.$client.query<{ n: string }>('select count(*) as n from rollout_rewards where run_id = $1', [started.runId])).rows[0]!.n;
    stack.worker.kill();
    await stack.worker.start();
    const back = Date.now();
    const outcome = await stack.outcome(started.workflowId, loopTimeoutMs);
    const rows = await stack.rows(started.runId);
    const compared = compareRows(reference, rows);
    recordCase(
      {
        case: 'worker SIGKILL in rollout scoring',
        rowsLost: compared.lost,
        rowsDuplicated: compared.duplicated,
        callsRepeated: stack.repeatedCalls(prefix),
        callsInFlight: stack.callsAtRisk(prefix, fault, back),
        outcome,
        recoverS: stack.recoverySeconds(prefix, back),
      },
      reference,
      compared,
    );
    console.log(`rollouts scored when the worker was killed: ${scoredBefore} of ${rollouts(reference)}`);
    assert.ok(Number(scoredBefore) < rollouts(reference), 'the kill landed before every rollout was scored');
  });

  it('the worker SIGKILLed while the endpoint loads the new adapter', async () => {
    const prefix = 'kill-adapter';
    const loads: number[] = [];
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    let loading!: (at: number) => void;
    const loadingStarted = new Promise<number>((resolve) => (loading = resolve));
    // The first load of this case is held open, as a real load takes a while, until the worker is killed.
    stack.onAdapterLoad = async (load) => {
      if (!load.path.startsWith(`/${prefix}/`)) return;
      loads.push(Date.now());
      if (loads.length === 1) {
        loading(Date.now());
        await released;
      }
    };
    const started = await stack.startRun(prefix, overrides());
    const fault = await Promise.race([
      loadingStarted,
      stack.outcome(started.workflowId, loopTimeoutMs).then((outcome) => {
        throw new Error(`the run ended (${outcome}) before it loaded an adapter`);
      }),
    ]);
    stack.worker.kill();
    // The endpoint finishes the load it was given, as a real one does once the client has gone.
    release();
    await stack.worker.start();
    const back = Date.now();
    const outcome = await stack.outcome(started.workflowId, loopTimeoutMs);
    const rows = await stack.rows(started.runId);
    const compared = compareRows(reference, rows);
    const adapterLoads = stack.endpoint.adapterLoads.filter((l) => l.path.startsWith(`/${prefix}/`));
    recordCase(
      {
        case: 'worker SIGKILL while the new adapter loads',
        rowsLost: compared.lost,
        rowsDuplicated: compared.duplicated,
        callsRepeated: stack.repeatedCalls(prefix),
        callsInFlight: stack.callsAtRisk(prefix, fault, back),
        alsoRepeated: `adapter load asked ${adapterLoads.length - 1} more time (vLLM-style 400, already loaded)`,
        outcome,
        // From the new worker polling to the retried load reaching the endpoint.
        recoverS: adapterLoads[1] === undefined ? undefined : (adapterLoads[1].at - back) / 1000,
      },
      reference,
      compared,
    );
    console.log(`the retried load reached the endpoint ${((adapterLoads[1]!.at - fault) / 1000).toFixed(1)} s after the kill (the new worker polled after ${((back - fault) / 1000).toFixed(1)} s)`);
    // The retry asks for the same adapter under the same name, once. The endpoint answers as vLLM
    // does (400, already loaded, since the first load went through after the kill); the activity
    // finds that adapter in the endpoint's model list and goes on: the evaluation samples from it.
    assert.equal(adapterLoads.length, 2);
    assert.equal(loads.length, 1, 'the retried load was refused as already loaded, not loaded again');
    assert.deepEqual(adapterLoads[1]!.body, adapterLoads[0]!.body);
    assert.equal(adapterLoads[1]!.body.lora_name, `run${started.runId}-it1`);
    const evaluated = await stack.db.$client.query<{ n: string }>("select count(*) as n from completions where run_id = $1 and stage = 'eval' and policy_version = $2", [started.runId, `run${started.runId}-it1`]);
    assert.ok(Number(evaluated.rows[0]!.n) > 0, 'the evaluation sampled from the loaded adapter');
  });
});
