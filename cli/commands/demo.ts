// `tenet demo`: the main job of `make demo`. Uses a running dev stack or brings one up, stores the
// constitution version, runs the smoke workflow end to end and says where to look at the result.
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { Command } from 'commander';
import { z } from 'zod';
import { taskQueues } from '../../core/queues.js';
import { storeConstitution } from '../../db/constitutions.js';
import { closeDatabase, getDatabase, redactUrl } from '../../db/pool.js';
import type { smoke } from '../../workflows/smoke.js';
import { progressQuery, type SmokeResult } from '../../workflows/types.js';
import { readRunningStack, resolveEndpoints, startDevStack, type DevStack } from '../../worker/dev-stack.js';
import { projectRoot } from '../../worker/settings.js';
import { requireConstitution } from '../constitution-file.js';
import { getSettings } from '../context.js';
import { exitCodes, UserError } from '../errors.js';
import { parseOptions } from '../options.js';

const demoOptions = z.object({
  constitution: z.string().min(1).default(path.join(projectRoot, 'constitutions', 'default.yaml')),
  prompts: z.coerce.number({ error: 'expected a whole number from 1 to 1000' }).int().min(1).max(1000).default(4),
});

export const demoCommand = new Command('demo')
  .description('run the demo end to end on the embedded stack (starting it when none runs)')
  .option('--constitution <file>', 'constitution to run with (default: constitutions/default.yaml)')
  .option('--prompts <n>', 'number of prompts', '4')
  .action(async (raw: unknown) => {
    const options = parseOptions(demoOptions, raw);
    const settings = getSettings();
    const loaded = requireConstitution(options.constitution);

    let stack: DevStack | undefined;
    let temporalAddress: string;
    let databaseUrl: string | undefined;
    const running = readRunningStack(settings.home);
    if (running) {
      console.log(`demo: using the dev stack already running (pid ${running.pid})`);
      ({ temporalAddress, databaseUrl } = resolveEndpoints(settings));
    } else {
      console.log('demo: starting the embedded stack (Temporal dev server, Postgres, worker)…');
      stack = await startDevStack(settings, { log: (line) => console.log(`demo: ${line}`) });
      console.log(`demo: stack ready in ${(stack.startupMs / 1000).toFixed(1)} s`);
      temporalAddress = stack.temporalAddress;
      databaseUrl = stack.databaseUrl;
    }
    if (!databaseUrl) throw new UserError('no database to use', exitCodes.unavailable);

    const connection = await Connection.connect({ address: temporalAddress });
    try {
      const db = getDatabase(databaseUrl);
      const stored = await storeConstitution(db, { constitution: loaded.constitution, source: loaded.source, sourcePath: options.constitution });
      console.log(
        `demo: constitution ${stored.name} v${stored.version} (hash ${stored.contentHash.slice(0, 12)}) ${stored.created ? 'stored' : 'already stored'}, ${loaded.constitution.principles.length} principles`,
      );

      const client = new Client({ connection, namespace: settings.namespace });
      const workflowId = `smoke-${stored.name}-v${stored.version}-${new Date().toISOString().replace(/[:.]/g, '-')}`;
      const handle = await client.workflow.start<typeof smoke>('smoke', {
        taskQueue: taskQueues.cpu,
        workflowId,
        args: [{ constitutionId: stored.id, constitutionHash: stored.contentHash, promptCount: options.prompts }],
        workflowExecutionTimeout: '10 minutes',
      });
      console.log(`demo: started workflow ${workflowId}`);
      const poll = setInterval(() => {
        handle
          .query(progressQuery)
          .then((stages) => console.log(`demo:   ${stages.map((s) => `${s.stage} ${s.done}/${s.total}`).join('  ')}`))
          .catch(() => undefined);
      }, 1_000);
      let result: SmokeResult;
      try {
        result = await handle.result();
      } finally {
        clearInterval(poll);
      }
      console.log(`demo: run ${result.runId} completed: ${result.promptIds.length} prompts stored; trainer sees torch ${result.trainer.torch}, ${result.trainer.devices} GPU(s)`);
      console.log('');
      console.log('Look at the results:');
      if (stack?.uiUrl ?? running?.temporal.uiUrl) console.log(`  Temporal UI   ${stack?.uiUrl ?? running?.temporal.uiUrl}/namespaces/${settings.namespace}/workflows/${workflowId}`);
      console.log(`  Postgres      psql '${redactUrl(databaseUrl)}'   (password in ${settings.home}/pg-credentials.json)`);
      console.log(`                select * from runs where id = ${result.runId};  select * from prompts where run_id = ${result.runId};`);
      console.log('  Stack health  npx tenet status   (with `npx tenet dev` running in another terminal)');
    } finally {
      await connection.close();
      await closeDatabase();
      if (stack) {
        console.log('demo: stopping the stack it started');
        await stack.stop();
      }
    }
  });
