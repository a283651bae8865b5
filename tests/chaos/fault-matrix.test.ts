// The fault matrix: one small pipeline (12 prompts, 2 samples each, one critique round, pairwise
// labels) run once without faults for reference, then once per fault on the same stack, with the
// same seeds: the model endpoint down for 30 s, answering garbage, answering 429; the worker
// SIGKILLed in sample, critique and label; the Temporal dev server and Postgres SIGKILLed and
// started again mid-label. Each case asserts that the run completes with exactly the reference's
// rows (none lost, none doubled, the same content), that a model call was paid twice only if it
// was in flight during the fault, and, for endpoint faults, that the run says what it waits on.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { ScriptedReply } from '../../worker/scripted-endpoint.js';
import { ChaosStack, compareRows, printTable, recordCase, type CallKind, type KeyedRows } from './harness.js';

interface Injected {
  /** When the fault struck and when the part was back. */
  fault: number;
  back: number;
}

describe('fault matrix', () => {
  const stack = new ChaosStack();
  let reference: KeyedRows;

  before(async () => {
    await stack.start();
    const started = await stack.startRun('reference');
    assert.equal(await stack.outcome(started.workflowId), 'completed');
    reference = await stack.rows(started.runId);
    assert.equal(stack.repeatedCalls('reference'), 0);
  });

  after(async () => {
    printTable();
    await stack.stop();
  });

  async function runCase(name: string, prefix: string, inject: (workflowId: string) => Promise<Injected>) {
    const started = await stack.startRun(prefix);
    const { fault, back } = await inject(started.workflowId);
    const outcome = await stack.outcome(started.workflowId);
    const compared = compareRows(reference, await stack.rows(started.runId));
    recordCase(
      {
        case: name,
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
  }

  /** An endpoint fault for `seconds` from the 6th label call on, and the reason the run gives while it lasts. */
  const endpointFault = (prefix: string, seconds: number, reply: ScriptedReply, reason: RegExp) =>
    async (workflowId: string): Promise<Injected> => {
      await stack.when(prefix, 'label', 6);
      const fault = Date.now();
      stack.fault = { prefix, until: fault + seconds * 1000, reply };
      const why = await stack.pendingReason(workflowId, reason, seconds * 1000);
      assert.match(why, /127\.0\.0\.1/, 'the reason names the endpoint');
      console.log(`while the fault lasts the run says: ${why}`);
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, fault + seconds * 1000 - Date.now())));
      return { fault, back: fault + seconds * 1000 };
    };

  it('the model endpoint down for 30 s, then back', async () => {
    await runCase('model endpoint down 30 s mid-label', 'down', async (workflowId) => {
      await stack.when('down', 'label', 6);
      const fault = Date.now();
      await stack.endpoint.close();
      const why = await stack.pendingReason(workflowId, /unreachable|ECONNREFUSED|Connection error/i, 25_000);
      assert.match(why, /127\.0\.0\.1/, 'the reason names the endpoint');
      console.log(`while the fault lasts the run says: ${why}`);
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, fault + 30_000 - Date.now())));
      stack.endpoint = await stack.startEndpoint();
      return { fault, back: Date.now() };
    });
  });

  it('the model endpoint answering garbage for 8 s', async () => {
    await runCase('model endpoint answers garbage 8 s', 'garbage', endpointFault('garbage', 8, { rawBody: '{"choices": [oops' }, /garbage|JSON|not a chat completion/i));
  });

  it('the model endpoint answering 429 for 8 s', async () => {
    await runCase('model endpoint answers 429 for 8 s', '429', endpointFault('429', 8, { status: 429, headers: { 'retry-after': '1' } }, /429/));
  });

  for (const [kind, nth] of [['sample', 3], ['critique', 3], ['label', 10]] as [CallKind, number][]) {
    it(`the worker SIGKILLed in the ${kind} stage`, async () => {
      await runCase(`worker SIGKILL in ${kind}`, `kill-${kind}`, async () => {
        await stack.when(`kill-${kind}`, kind, nth);
        const fault = Date.now();
        stack.worker.kill();
        await stack.worker.start();
        return { fault, back: Date.now() };
      });
    });
  }

  it('the Temporal dev server SIGKILLed mid-label and started again on its state file', async () => {
    await runCase('Temporal server SIGKILL mid-label', 'temporal', async () => {
      await stack.when('temporal', 'label', 10);
      const fault = Date.now();
      await stack.killTemporal();
      stack.temporal = await stack.startTemporal();
      return { fault, back: Date.now() };
    });
  });

  it('Postgres SIGKILLed mid-label and started again', async () => {
    await runCase('Postgres SIGKILL mid-label', 'postgres', async (workflowId) => {
      await stack.when('postgres', 'label', 10);
      const fault = Date.now();
      await stack.killPostgres();
      // While Postgres is down the run says so: its batches retry, naming Postgres's address and the refusal.
      const why = await stack.pendingReason(workflowId, new RegExp(`ECONNREFUSED 127\\.0\\.0\\.1:${stack.postgresPort}`), 30_000);
      console.log(`while the fault lasts the run says: ${why}`);
      // Every batch's reason is readable: a query error carrying whole texts once went over Temporal's 4 KiB for a retrying activity's failure.
      assert.doesNotMatch(why, /Failure exceeds size limit|did not open it|cannot be read/);
      stack.postgres = await stack.startPostgres();
      return { fault, back: Date.now() };
    });
  });
});
