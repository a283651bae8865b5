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
import { progressQuery } from '../../workflows/types.js';
import { readRunningStack, resolveEndpoints } from '../../worker/dev-stack.js';
import { projectRoot, type Settings } from '../../worker/settings.js';
import { requireConstitution, type LoadedConstitution } from '../constitution-file.js';
import { getSettings } from '../context.js';
import { exitCodes, UserError } from '../errors.js';
import { parseOptions } from '../options.js';
import { startStackInterruptibly, stopStackOnSignal } from '../stack-start.js';

const demoOptions = z.object({
  constitution: z.string().min(1).default(path.join(projectRoot, 'constitutions', 'default.yaml')),
  prompts: z.coerce.number({ error: 'expected a whole number from 1 to 1000' }).int().min(1).max(1000).default(4),
});
type DemoOptions = z.infer<typeof demoOptions>;

const log = (line: string) => console.log(`demo: ${line}`);

export const demoCommand = new Command('demo')
  .description('run the demo end to end on the embedded stack (starting it when none runs)')
  .option('--constitution <file>', 'constitution to run with (default: constitutions/default.yaml)')
  .option('--prompts <n>', 'number of prompts', '4')
  .action(async (raw: unknown) => {
    const options = parseOptions(demoOptions, raw);
    const settings = getSettings();
    const loaded = requireConstitution(options.constitution);

    const running = readRunningStack(settings.home);
    if (running) {
      log(`using the dev stack already running (pid ${running.pid})`);
      const { temporalAddress, databaseUrl } = resolveEndpoints(settings);
      if (!databaseUrl) throw new UserError('the running stack has no database this command can reach; set DATABASE_URL', exitCodes.unavailable);
      await runSmoke({ settings, options, loaded, temporalAddress, databaseUrl, uiUrl: running.temporal.uiUrl });
      return;
    }
    log('starting the embedded stack (Temporal dev server, Postgres, worker)…');
    const stack = await startStackInterruptibly(settings, log);
    log(`stack ready in ${(stack.startupMs / 1000).toFixed(1)} s`);
    try {
      await stopStackOnSignal(stack, log, () =>
        runSmoke({ settings, options, loaded, temporalAddress: stack.temporalAddress, databaseUrl: stack.databaseUrl, uiUrl: stack.uiUrl }),
      );
    } finally {
      log('stopping the stack it started');
      await stack.stop();
    }
  });

async function runSmoke(input: {
  settings: Settings;
  options: DemoOptions;
  loaded: Extract<LoadedConstitution, { ok: true }>;
  temporalAddress: string;
  databaseUrl: string;
  uiUrl: string | undefined;
}): Promise<void> {
  const { settings, options, loaded, databaseUrl } = input;
  const connection = await Connection.connect({ address: input.temporalAddress });
  try {
    const stored = await storeConstitution(getDatabase(databaseUrl), { constitution: loaded.constitution, source: loaded.source, sourcePath: options.constitution });
    log(`constitution ${stored.name} v${stored.version} (hash ${stored.contentHash.slice(0, 12)}) ${stored.created ? 'stored' : 'already stored'}, ${loaded.constitution.principles.length} principles`);

    const client = new Client({ connection, namespace: settings.namespace });
    const workflowId = `smoke-${stored.name}-v${stored.version}-${new Date().toISOString().replace(/[:.]/g, '-')}`;
    const handle = await client.workflow.start<typeof smoke>('smoke', {
      taskQueue: taskQueues.cpu,
      workflowId,
      args: [{ constitutionId: stored.id, constitutionHash: stored.contentHash, promptCount: options.prompts }],
      workflowExecutionTimeout: '10 minutes',
    });
    log(`started workflow ${workflowId}`);
    const poll = setInterval(() => {
      handle
        .query(progressQuery)
        .then((stages) => log(`  ${stages.map((s) => `${s.stage} ${s.done}/${s.total}`).join('  ')}`))
        .catch(() => undefined);
    }, 1_000);
    const result = await handle.result().finally(() => clearInterval(poll));
    log(`run ${result.runId} completed: ${result.promptIds.length} prompts stored; trainer sees torch ${result.trainer.torch}, ${result.trainer.devices} GPU(s)`);
    console.log('');
    console.log('Look at the results:');
    if (input.uiUrl) console.log(`  Temporal UI   ${input.uiUrl}/namespaces/${settings.namespace}/workflows/${workflowId}`);
    const passwordHint = settings.databaseUrl ? '' : `   (password in ${settings.home}/pg-credentials.json)`;
    console.log(`  Postgres      psql '${redactUrl(databaseUrl)}'${passwordHint}`);
    console.log(`                select * from runs where id = ${result.runId};  select * from prompts where run_id = ${result.runId};`);
    console.log('  Stack health  npx tenet status   (with `npx tenet dev` running in another terminal)');
  } finally {
    await connection.close();
    await closeDatabase();
  }
}
