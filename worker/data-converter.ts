// The one place that decides how tenet's Temporal clients and workers encode payloads: encrypted
// with the environment's keys; else, when they talk to the dev stack's own Temporal, with the key
// the dev stack keeps in its state folder; else in plain JSON (and the worker says so).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { DataConverter } from '@temporalio/common';
import { codecKeysFromEnv, devKeyFile, EncryptionCodec, readKeyFile, type CodecKeys } from './codec.js';
import { readRunningStack } from './dev-stack.js';
import type { Settings } from './settings.js';

export const failureConverterPath = fileURLToPath(new URL('./failure-converter.ts', import.meta.url));

export function dataConverterFor(keys: CodecKeys | undefined): DataConverter {
  return { failureConverterPath, payloadCodecs: keys ? [new EncryptionCodec(keys)] : [] };
}

export interface ResolvedKeys {
  keys: CodecKeys | undefined;
  /** Where they came from, for a log line. */
  source: string;
}

/** The environment's keys; else, when `useDevKey`, the dev stack's key file if there is one. */
export function configuredKeys(settings: Settings, useDevKey: boolean, env: NodeJS.ProcessEnv = process.env): ResolvedKeys {
  const fromEnv = codecKeysFromEnv(env);
  if (fromEnv) return { keys: fromEnv, source: env.TENET_CODEC_KEYS?.trim() ? 'TENET_CODEC_KEYS' : 'TENET_CODEC_KEY' };
  const file = devKeyFile(settings.home);
  if (useDevKey && existsSync(file)) return { keys: readKeyFile(file), source: file };
  return { keys: undefined, source: 'none' };
}

/** The keys for a client or worker of the Temporal at `temporalAddress`: the dev key only for the running dev stack's own Temporal. */
export function resolveCodecKeys(settings: Settings, temporalAddress: string, env: NodeJS.ProcessEnv = process.env): ResolvedKeys {
  return configuredKeys(settings, readRunningStack(settings.home)?.temporal.address === temporalAddress, env);
}

/** The data converter for the Temporal at `temporalAddress`, and one line saying how payloads are stored. */
export function temporalDataConverter(settings: Settings, temporalAddress: string): { dataConverter: DataConverter; description: string } {
  const { keys, source } = resolveCodecKeys(settings, temporalAddress);
  return { dataConverter: dataConverterFor(keys), description: describeEncryption(keys, source) };
}

export function describeEncryption(keys: CodecKeys | undefined, source: string): string {
  if (!keys) return 'payloads are NOT encrypted in Temporal: set TENET_CODEC_KEYS (see the README)';
  return `payloads encrypted with key "${keys.current.id}" (from ${source}; ${keys.byId.size} key(s) decrypt)`;
}
