// Replays the committed histories of the smoke and pipeline workflows against today's workflow
// code. A change that reorders commands must come with patched() or a new workflow version, or this
// test fails.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { historyFromJSON } from '@temporalio/common/lib/proto-utils.js';
import { DeterminismViolationError } from '@temporalio/workflow';
import { Worker } from '@temporalio/worker';
import { bundleWorkflows } from '../../worker/worker.js';

const bundle = bundleWorkflows();
const history = historyFromJSON(JSON.parse(readFileSync('tests/histories/smoke.json', 'utf8')));

describe('replay of committed histories', () => {
  it('the smoke workflow replays its committed history', async () => {
    await Worker.runReplayHistory({ workflowBundle: await bundle }, history, 'smoke-history');
  });

  // pipeline and stage-shard: a run begun before chained stages (it must still replay); the others:
  // today's shapes, a run of two shards and a run of one (see tests/workflow/record-pipeline-history.ts).
  for (const [file, workflowId] of [
    ['pipeline', 'pipeline-history'],
    ['stage-shard', 'pipeline-history/label-0/0'],
    ['pipeline-chained', 'pipeline-chained-history'],
    ['stage-shard-chained', 'pipeline-chained-history/sample+critique+label-0/0'],
    ['pipeline-one-shard', 'pipeline-one-shard-history'],
  ]) {
    it(`the ${file} workflow replays its committed history`, async () => {
      const recorded = historyFromJSON(JSON.parse(readFileSync(`tests/histories/${file}.json`, 'utf8')));
      await Worker.runReplayHistory({ workflowBundle: await bundle }, recorded, workflowId);
    });
  }

  it('a reordered smoke workflow is caught as non-deterministic', async () => {
    const changed = fileURLToPath(new URL('../fixtures/changed-workflow/index.ts', import.meta.url));
    await assert.rejects(Worker.runReplayHistory({ workflowsPath: changed }, history, 'smoke-history'), DeterminismViolationError);
  });
});
