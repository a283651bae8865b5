// Health of each part of the stack, for `tenet status`.
import { Connection } from '@temporalio/client';
import proto from '@temporalio/proto';
import pg from 'pg';
import { taskQueues } from '../core/queues.js';
import { readMigrationState, type MigrationState } from '../db/migrate.js';
import { redactUrl } from '../db/pool.js';
import { connectHint, describeTemporal, type TemporalConnectOptions } from './temporal-connection.js';

const { temporal } = proto;
type TaskQueueType = proto.temporal.api.enums.v1.TaskQueueType;

export interface PartHealth {
  part: string;
  ok: boolean;
  detail: string;
}

// A poller long-polls for up to ~70 s, and its last access time is when the poll began.
const pollerFreshMs = 90_000;

export async function checkHealth(options: {
  temporalAddress: string;
  /** TLS and API key for `temporalAddress` (worker/temporal-connection.ts); plain gRPC without. */
  connectOptions?: TemporalConnectOptions;
  namespace: string;
  databaseUrl: string | undefined;
}): Promise<PartHealth[]> {
  const connect = { ...options.connectOptions, address: options.temporalAddress };
  const [temporalParts, postgresPart] = await Promise.all([checkTemporal(connect, options.namespace), checkPostgres(options.databaseUrl)]);
  return [temporalParts[0]!, postgresPart, ...temporalParts.slice(1)];
}

async function checkTemporal(connect: TemporalConnectOptions, namespace: string): Promise<PartHealth[]> {
  const address = describeTemporal(connect);
  const queueParts = (detail: string): PartHealth[] => [
    { part: `workers ${taskQueues.cpu}`, ok: false, detail },
    { part: `workers ${taskQueues.gpu}`, ok: false, detail },
  ];
  let connection: Connection;
  try {
    connection = await Connection.connect({ ...connect, connectTimeout: 3_000 });
  } catch (error) {
    return [{ part: 'temporal', ok: false, detail: `unreachable at ${address}: ${message(error)}${connectHint(connect)}` }, ...queueParts('Temporal is unreachable')];
  }
  try {
    const info = await connection.workflowService.getSystemInfo({});
    await connection.workflowService.describeNamespace({ namespace });
    const parts: PartHealth[] = [{ part: 'temporal', ok: true, detail: `${address}, namespace ${namespace}, server ${info.serverVersion || 'unknown'}` }];
    // The CPU queue serves workflows and activities; the GPU queue serves activities only.
    parts.push(await checkQueue(connection, namespace, taskQueues.cpu, [temporal.api.enums.v1.TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, temporal.api.enums.v1.TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY]));
    parts.push(await checkQueue(connection, namespace, taskQueues.gpu, [temporal.api.enums.v1.TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY]));
    return parts;
  } catch (error) {
    return [{ part: 'temporal', ok: false, detail: `${address}: ${message(error)}` }, ...queueParts('Temporal is not answering')];
  } finally {
    await connection.close();
  }
}

export async function checkQueue(connection: Pick<Connection, 'workflowService'>, namespace: string, queue: string, types: TaskQueueType[]): Promise<PartHealth> {
  const identities = new Set<string>();
  const missing: string[] = [];
  for (const taskQueueType of types) {
    const response = await connection.workflowService.describeTaskQueue({ namespace, taskQueue: { name: queue }, taskQueueType });
    const fresh = (response.pollers ?? []).filter((poller) => {
      const seconds = Number(poller.lastAccessTime?.seconds ?? 0);
      return Date.now() - seconds * 1000 < pollerFreshMs;
    });
    fresh.forEach((poller) => identities.add(poller.identity ?? 'unknown'));
    if (fresh.length === 0) missing.push(taskQueueType === temporal.api.enums.v1.TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW ? 'workflow' : 'activity');
  }
  if (missing.length > 0) return { part: `workers ${queue}`, ok: false, detail: `no worker polling for ${missing.join(' and ')} tasks` };
  return { part: `workers ${queue}`, ok: true, detail: `${identities.size} polling (${[...identities].join(', ')})` };
}

async function checkPostgres(url: string | undefined): Promise<PartHealth> {
  if (!url) return { part: 'postgres', ok: false, detail: 'no DATABASE_URL and no embedded Postgres here; start `tenet dev` or set DATABASE_URL' };
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3_000 });
  client.on('error', () => undefined); // the failed query or connect says it (db/migrate.ts)
  try {
    await client.connect();
    const version = await client.query<{ server_version: string }>('show server_version');
    const migrations: MigrationState = await readMigrationState(client);
    const where = `${redactUrl(url)}, PostgreSQL ${version.rows[0]?.server_version ?? '?'}`;
    if (!migrations.upToDate) {
      return { part: 'postgres', ok: false, detail: `${where}; migrations behind: ${migrations.applied}/${migrations.expected} applied (at ${migrations.current ?? 'none'}, latest ${migrations.latest})` };
    }
    return { part: 'postgres', ok: true, detail: `${where}, migration ${migrations.current} (${migrations.applied}/${migrations.expected})` };
  } catch (error) {
    return { part: 'postgres', ok: false, detail: `unreachable at ${redactUrl(url)}: ${message(error)}` };
  } finally {
    await client.end().catch(() => undefined);
  }
}

function message(error: unknown): string {
  return error instanceof Error ? error.message.split('\n')[0]! : String(error);
}
