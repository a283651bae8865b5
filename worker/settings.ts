// Where things are: the project root, the state folder, and the addresses of Temporal and Postgres,
// read from the environment once and checked with zod.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';

export const projectRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

const port = (fallback: number) => z.coerce.number().int().min(1).max(65535).default(fallback);

const envSchema = z.object({
  TEMPORAL_ADDRESS: z.string().min(1).optional(),
  TEMPORAL_NAMESPACE: z.string().min(1).default('default'),
  DATABASE_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\//, { error: 'expected a postgres:// or postgresql:// URL' })
    .optional(),
  TENET_HOME: z.string().min(1).optional(),
  TENET_TEMPORAL_PORT: port(7233),
  TENET_TEMPORAL_UI_PORT: port(8233),
  TENET_PG_PORT: port(5433),
  TEMPORAL_CLI: z.string().min(1).optional(),
  TENET_PYTHON: z.string().min(1).optional(),
  /** Job data, checkpoints and model artifacts; a shared volume when GPU workers run on several machines. */
  TENET_ARTIFACTS: z.string().min(1).optional(),
});

export interface Settings {
  /** Set when the user points tenet at their own cluster; then nothing of ours is started. */
  temporalAddress: string | undefined;
  namespace: string;
  databaseUrl: string | undefined;
  /** The state folder of the embedded stack (.tenet/ under the project). */
  home: string;
  ports: { temporal: number; temporalUi: number; postgres: number };
  temporalCli: string;
  python: string;
  artifacts: string;
}

export class SettingsError extends Error {
  override name = 'SettingsError';
}

export function readSettings(env: NodeJS.ProcessEnv = process.env): Settings {
  const parsed = envSchema.safeParse(env);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((issue) => `  ${issue.path.join('.')}: ${issue.message}`);
    throw new SettingsError(`bad environment:\n${lines.join('\n')}`);
  }
  const e = parsed.data;
  const venvBin = path.join(projectRoot, '.venv', 'bin');
  const home = path.resolve(e.TENET_HOME ?? path.join(projectRoot, '.tenet'));
  return {
    temporalAddress: e.TEMPORAL_ADDRESS,
    namespace: e.TEMPORAL_NAMESPACE,
    databaseUrl: e.DATABASE_URL,
    home,
    ports: { temporal: e.TENET_TEMPORAL_PORT, temporalUi: e.TENET_TEMPORAL_UI_PORT, postgres: e.TENET_PG_PORT },
    temporalCli: e.TEMPORAL_CLI ?? path.join(venvBin, 'temporal'),
    python: e.TENET_PYTHON ?? path.join(venvBin, 'python'),
    artifacts: path.resolve(e.TENET_ARTIFACTS ?? path.join(home, 'artifacts')),
  };
}

export function requireFile(file: string, what: string, hint: string): string {
  if (!existsSync(file)) throw new SettingsError(`${what} not found at ${file}. ${hint}`);
  return file;
}
