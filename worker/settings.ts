// Where things are: the project root, the state folder, and the addresses of Temporal and Postgres,
// read from the environment once and checked with zod; how to reach your own Temporal (TLS, mTLS,
// API key) and Postgres (sslmode, certificate files in DATABASE_URL), checked before anything connects.
import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { inspect } from 'node:util';
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
  /** Threads of each trainer process (the trainer reads it; checked here so a worker refuses a bad value at start). */
  TENET_TORCH_THREADS: z.string().regex(/^[1-9][0-9]*$/, { error: 'expected a whole number of threads, 1 or more' }).optional(),
  /** A CPU-only worker forks trainer jobs from a pre-imported interpreter (activities/trainer-forkserver.ts); false: a fresh `python` per job. */
  TENET_TRAINER_PREIMPORT: z.enum(['true', 'false', '1', '0'], { error: 'expected true or false' }).optional(),
  /** TLS to TEMPORAL_ADDRESS; implied by any of the settings below. */
  TEMPORAL_TLS: z.enum(['true', 'false', '1', '0'], { error: 'expected true or false' }).optional(),
  /** PEM file of the CA that signed the server's certificate (else the system's CAs). */
  TEMPORAL_TLS_CA: z.string().min(1).optional(),
  /** PEM files of the client certificate and its private key, for mTLS: both or neither. */
  TEMPORAL_TLS_CERT: z.string().min(1).optional(),
  TEMPORAL_TLS_KEY: z.string().min(1).optional(),
  /** The name the server's certificate is checked against, when it is not the host of TEMPORAL_ADDRESS. */
  TEMPORAL_TLS_SERVER_NAME: z
    .string()
    .regex(/^[A-Za-z0-9]([A-Za-z0-9.-]{0,252}[A-Za-z0-9])?$/, { error: 'expected a host name such as temporal.example.com' })
    .optional(),
  /** Temporal Cloud (or a server with API-key auth): sent as "Authorization: Bearer …"; implies TLS. */
  TEMPORAL_API_KEY: z.string().regex(/^\S+$/, { error: 'expected the key alone: no spaces or line breaks' }).optional(),
});

/** A value that must never be printed: it shows as [secret] in logs, JSON and inspect. */
export class Secret {
  readonly #value: string;
  constructor(value: string) {
    this.#value = value;
  }
  reveal(): string {
    return this.#value;
  }
  toString(): string {
    return '[secret]';
  }
  toJSON(): string {
    return '[secret]';
  }
  [inspect.custom](): string {
    return '[secret]';
  }
}

/** How to reach your own Temporal (TEMPORAL_ADDRESS) over TLS: paths only; worker/temporal-connection.ts reads them. */
export interface TemporalTls {
  /** TEMPORAL_TLS_CA */
  caFile?: string;
  /** TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY */
  clientCert?: { certFile: string; keyFile: string };
  /** TEMPORAL_TLS_SERVER_NAME */
  serverName?: string;
}

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
  /** CPU-only workers fork trainer jobs from a pre-imported interpreter (TENET_TRAINER_PREIMPORT, default true). */
  trainerPreimport: boolean;
  /** TLS to `temporalAddress`, or undefined for plain gRPC. Never applied to the dev stack's own Temporal. */
  temporalTls: TemporalTls | undefined;
  /** TEMPORAL_API_KEY. */
  temporalApiKey: Secret | undefined;
}

export class SettingsError extends Error {
  override name = 'SettingsError';
}

export function readSettings(env: NodeJS.ProcessEnv = process.env): Settings {
  // Empty values count as unset, as a shell's `VAR=` usually means.
  const given = Object.fromEntries(Object.entries(env).filter(([, value]) => value !== undefined && value !== ''));
  const parsed = envSchema.safeParse(given);
  if (!parsed.success) {
    // One line; zod's messages here never quote the value, so no secret reaches it.
    const problems = parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`);
    throw new SettingsError(`bad environment: ${problems.join('; ')}`);
  }
  const e = parsed.data;
  if (e.DATABASE_URL) checkDatabaseUrl(e.DATABASE_URL);
  const temporalTls = readTemporalTls(e);
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
    trainerPreimport: e.TENET_TRAINER_PREIMPORT === undefined || e.TENET_TRAINER_PREIMPORT === 'true' || e.TENET_TRAINER_PREIMPORT === '1',
    temporalTls,
    temporalApiKey: e.TEMPORAL_API_KEY ? new Secret(e.TEMPORAL_API_KEY) : undefined,
  };
}

type Env = z.output<typeof envSchema>;

/** TLS settings for TEMPORAL_ADDRESS, checked: a cert goes with its key, every file is there and holds what it should. */
function readTemporalTls(e: Env): TemporalTls | undefined {
  const tlsOnly = (['TEMPORAL_TLS_CA', 'TEMPORAL_TLS_CERT', 'TEMPORAL_TLS_KEY', 'TEMPORAL_TLS_SERVER_NAME', 'TEMPORAL_API_KEY'] as const).filter((name) => e[name] !== undefined);
  const tlsFlag = e.TEMPORAL_TLS === undefined ? undefined : e.TEMPORAL_TLS === 'true' || e.TEMPORAL_TLS === '1';
  if (tlsFlag === false && tlsOnly.length > 0) {
    throw new SettingsError(`TEMPORAL_TLS=${e.TEMPORAL_TLS} contradicts ${tlsOnly.join(', ')}, which need TLS; unset TEMPORAL_TLS or those`);
  }
  if (!(tlsFlag ?? tlsOnly.length > 0)) return undefined;
  if (!e.TEMPORAL_ADDRESS) {
    const named = tlsOnly[0] ?? 'TEMPORAL_TLS';
    throw new SettingsError(`${named} is set but TEMPORAL_ADDRESS is not: TLS and API-key settings are for your own Temporal (the dev stack's is plain)`);
  }
  if (e.TEMPORAL_TLS_CERT && !e.TEMPORAL_TLS_KEY) {
    throw new SettingsError('TEMPORAL_TLS_CERT is set but TEMPORAL_TLS_KEY is not: mTLS needs the client certificate and its private key');
  }
  if (e.TEMPORAL_TLS_KEY && !e.TEMPORAL_TLS_CERT) {
    throw new SettingsError('TEMPORAL_TLS_KEY is set but TEMPORAL_TLS_CERT is not: mTLS needs the client certificate and its private key');
  }
  const tls: TemporalTls = {};
  if (e.TEMPORAL_TLS_CA) {
    readCertificate(e.TEMPORAL_TLS_CA, 'TEMPORAL_TLS_CA');
    tls.caFile = path.resolve(e.TEMPORAL_TLS_CA);
  }
  if (e.TEMPORAL_TLS_CERT && e.TEMPORAL_TLS_KEY) {
    checkCertificatePair(e.TEMPORAL_TLS_CERT, 'TEMPORAL_TLS_CERT', e.TEMPORAL_TLS_KEY, 'TEMPORAL_TLS_KEY');
    tls.clientCert = { certFile: path.resolve(e.TEMPORAL_TLS_CERT), keyFile: path.resolve(e.TEMPORAL_TLS_KEY) };
  }
  if (e.TEMPORAL_TLS_SERVER_NAME) tls.serverName = e.TEMPORAL_TLS_SERVER_NAME;
  return tls;
}

/** The bytes of a file named by `variable`, or one line saying why not. */
export function readSettingFile(file: string, variable: string): Buffer {
  let stat;
  try {
    stat = statSync(file);
  } catch {
    throw new SettingsError(`${variable}: no file at ${file}`);
  }
  if (!stat.isFile()) throw new SettingsError(`${variable}: ${file} is not a file`);
  try {
    return readFileSync(file);
  } catch (error) {
    throw new SettingsError(`${variable}: cannot read ${file} (${(error as NodeJS.ErrnoException).code ?? 'error'})`);
  }
}

/** A PEM certificate (the first of a bundle), parsed; expired ones are refused. */
export function readCertificate(file: string, variable: string): X509Certificate {
  const pem = readSettingFile(file, variable);
  if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw new SettingsError(`${variable}: ${file} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`);
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(pem);
  } catch {
    throw new SettingsError(`${variable}: ${file} holds a PEM certificate that does not parse`);
  }
  if (Date.parse(cert.validTo) < Date.now()) throw new SettingsError(`${variable}: the certificate in ${file} expired on ${cert.validTo}`);
  return cert;
}

/** A PEM private key, parsed; the message never quotes the file's content. */
export function readPrivateKey(file: string, variable: string): KeyObject {
  const pem = readSettingFile(file, variable);
  if (!/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(pem.toString('latin1'))) {
    throw new SettingsError(`${variable}: ${file} holds no PEM private key (-----BEGIN … PRIVATE KEY-----)`);
  }
  try {
    return createPrivateKey(pem);
  } catch {
    throw new SettingsError(`${variable}: ${file} holds a private key that does not parse (encrypted keys are not supported)`);
  }
}

function checkCertificatePair(certFile: string, certVariable: string, keyFile: string, keyVariable: string): void {
  const cert = readCertificate(certFile, certVariable);
  const key = readPrivateKey(keyFile, keyVariable);
  if (!cert.checkPrivateKey(key)) throw new SettingsError(`${keyVariable}: the key in ${keyFile} does not belong to the certificate in ${certVariable} (${certFile})`);
}

const sslModes = ['disable', 'prefer', 'require', 'verify-ca', 'verify-full', 'no-verify'];

/**
 * DATABASE_URL's TLS parameters, as pg reads them (sslmode, sslrootcert, sslcert, sslkey): a known
 * sslmode, files that exist and parse, a client certificate with its key. Messages name the
 * parameter, never the password.
 */
function checkDatabaseUrl(url: string): void {
  let params: URLSearchParams;
  try {
    params = new URL(url).searchParams;
  } catch {
    throw new SettingsError('DATABASE_URL: not a valid URL (a password with @, : or / must be percent-encoded)');
  }
  const mode = params.get('sslmode');
  if (mode !== null && !sslModes.includes(mode)) throw new SettingsError(`DATABASE_URL: sslmode=${mode} is not one of ${sslModes.join(', ')}`);
  const rootCert = params.get('sslrootcert');
  if (rootCert !== null) readCertificate(rootCert, 'DATABASE_URL sslrootcert');
  const cert = params.get('sslcert');
  const key = params.get('sslkey');
  if (cert !== null && key === null) throw new SettingsError('DATABASE_URL: sslcert is given but sslkey is not: a client certificate needs its private key');
  if (key !== null && cert === null) throw new SettingsError('DATABASE_URL: sslkey is given but sslcert is not: a client certificate needs its private key');
  if (cert !== null && key !== null) checkCertificatePair(cert, 'DATABASE_URL sslcert', key, 'DATABASE_URL sslkey');
}

export function requireFile(file: string, what: string, hint: string): string {
  if (!existsSync(file)) throw new SettingsError(`${what} not found at ${file}. ${hint}`);
  return file;
}
