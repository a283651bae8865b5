// Payloads encrypted at rest in Temporal: a PayloadCodec that seals every payload (inputs, results,
// markers, failure attributes) with AES-256-GCM and names its key in the payload's metadata, so keys
// can rotate: the first configured key encrypts, every configured key decrypts. Keys come from the
// environment (TENET_CODEC_KEYS, or TENET_CODEC_KEY + TENET_CODEC_KEY_ID) or, for the dev stack, a
// key file in its state folder. The codec runs on clients and workers, never in the workflow sandbox.
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Payload, PayloadCodec } from '@temporalio/common';
import proto from '@temporalio/proto';
import { z } from 'zod';
import { SettingsError } from './settings.js';

export const encryptedEncoding = 'binary/encrypted';
export const keyIdMetadataKey = 'encryption-key-id';
const ivBytes = 12;
const tagBytes = 16;
const PayloadMessage = proto.temporal.api.common.v1.Payload;

export interface CodecKey {
  id: string;
  key: Buffer;
}

export interface CodecKeys {
  /** The key new payloads are sealed with. */
  current: CodecKey;
  /** Every key that opens payloads, by id (the current one included). */
  byId: ReadonlyMap<string, CodecKey>;
}

/** A payload that cannot be opened: unknown key id, altered bytes, a malformed envelope. */
export class CodecError extends Error {
  override name = 'CodecError';
}

const keyIdSchema = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, { error: 'a key id is 1-64 letters, digits, ".", "_" or "-"' });
const keySchema = z
  .string()
  .regex(/^[A-Za-z0-9+/]+={0,2}$/, { error: 'the key is not base64' })
  .transform((text) => Buffer.from(text, 'base64'))
  .refine((key) => key.length === 32, { error: (issue) => `the key must be 32 bytes in base64 (it is ${(issue.input as Buffer).length})` });

/**
 * Reads "id1:base64key,id2:base64key" (the first encrypts). `source` names where the text came from
 * in the one-line error; the error never repeats a key.
 */
export function parseKeyList(text: string, source: string): CodecKeys {
  const entries = text.split(',').map((entry) => entry.trim()).filter((entry) => entry !== '');
  if (entries.length === 0) throw new SettingsError(`${source}: no key; expected "id:base64key[,id:base64key…]"`);
  const keys = entries.map((entry, i) => {
    const colon = entry.indexOf(':');
    if (colon < 0) throw new SettingsError(`${source}: entry ${i + 1} is not "id:base64key"`);
    return parseKey(entry.slice(0, colon), entry.slice(colon + 1), `${source}: entry ${i + 1}`);
  });
  const byId = new Map<string, CodecKey>();
  for (const key of keys) {
    if (byId.has(key.id)) throw new SettingsError(`${source}: key id "${key.id}" appears twice`);
    byId.set(key.id, key);
  }
  return { current: keys[0]!, byId };
}

function parseKey(id: string, key: string, where: string): CodecKey {
  const parsedId = keyIdSchema.safeParse(id.trim());
  if (!parsedId.success) throw new SettingsError(`${where}: ${parsedId.error.issues[0]!.message}`);
  const parsedKey = keySchema.safeParse(key.trim());
  if (!parsedKey.success) throw new SettingsError(`${where} ("${parsedId.data}"): ${parsedKey.error.issues[0]!.message}`);
  return { id: parsedId.data, key: parsedKey.data };
}

const codecEnvSchema = z.object({
  TENET_CODEC_KEYS: z.string().trim().optional(),
  TENET_CODEC_KEY: z.string().trim().optional(),
  TENET_CODEC_KEY_ID: z.string().trim().optional(),
});

/** The keys the environment configures, or undefined when it configures none (empty values count as unset). */
export function codecKeysFromEnv(env: NodeJS.ProcessEnv = process.env): CodecKeys | undefined {
  const e = codecEnvSchema.parse({ TENET_CODEC_KEYS: env.TENET_CODEC_KEYS, TENET_CODEC_KEY: env.TENET_CODEC_KEY, TENET_CODEC_KEY_ID: env.TENET_CODEC_KEY_ID });
  if (e.TENET_CODEC_KEYS && e.TENET_CODEC_KEY) throw new SettingsError('TENET_CODEC_KEYS and TENET_CODEC_KEY are both set; set one of them');
  if (e.TENET_CODEC_KEYS) return parseKeyList(e.TENET_CODEC_KEYS, 'TENET_CODEC_KEYS');
  if (e.TENET_CODEC_KEY) {
    const key = parseKey(e.TENET_CODEC_KEY_ID || 'default', e.TENET_CODEC_KEY, 'TENET_CODEC_KEY');
    return { current: key, byId: new Map([[key.id, key]]) };
  }
  if (e.TENET_CODEC_KEY_ID) throw new SettingsError('TENET_CODEC_KEY_ID is set but TENET_CODEC_KEY is not');
  return undefined;
}

/** The dev stack's key file in its state folder; its text is a TENET_CODEC_KEYS value. */
export function devKeyFile(home: string): string {
  return path.join(home, 'codec-key');
}

/** Reads a key file; refuses one that others than its owner can read. */
export function readKeyFile(file: string): CodecKeys {
  const mode = statSync(file).mode & 0o777;
  if ((mode & 0o077) !== 0) throw new SettingsError(`${file}: a key file must be readable by its owner only (mode ${mode.toString(8)}); run chmod 600 ${file}`);
  return parseKeyList(readFileSync(file, 'utf8'), file);
}

/** The dev key in `home`, made (mode 600) when there is none yet. */
export function ensureDevKey(home: string): { keys: CodecKeys; file: string; created: boolean } {
  const file = devKeyFile(home);
  const text = `dev-${randomBytes(4).toString('hex')}:${randomBytes(32).toString('base64')}\n`;
  try {
    writeFileSync(file, text, { flag: 'wx', mode: 0o600 });
    return { keys: parseKeyList(text, file), file, created: true };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  }
  return { keys: readKeyFile(file), file, created: false };
}

const utf8 = (text: string) => new TextEncoder().encode(text);
const metadataText = (payload: Payload, key: string) => {
  const value = payload.metadata?.[key];
  return value ? Buffer.from(value).toString('utf8') : undefined;
};

/** AES-256-GCM with a random 12-byte IV per payload; the key id is authenticated too (additional data). */
export class EncryptionCodec implements PayloadCodec {
  constructor(private readonly keys: CodecKeys) {}

  encode(payloads: Payload[]): Promise<Payload[]> {
    return new Promise((resolve) => resolve(payloads.map((payload) => this.seal(payload))));
  }

  /** Payloads without the encrypted encoding (histories written before encryption) pass unchanged. */
  decode(payloads: Payload[]): Promise<Payload[]> {
    return new Promise((resolve) => resolve(payloads.map((payload) => this.open(payload))));
  }

  private seal(payload: Payload): Payload {
    const { id, key } = this.keys.current;
    const iv = randomBytes(ivBytes);
    const cipher = createCipheriv('aes-256-gcm', key, iv);
    cipher.setAAD(utf8(id));
    const plain = PayloadMessage.encode(payload).finish();
    const data = Buffer.concat([iv, cipher.update(plain), cipher.final(), cipher.getAuthTag()]);
    return { metadata: { encoding: utf8(encryptedEncoding), [keyIdMetadataKey]: utf8(id) }, data };
  }

  private open(payload: Payload): Payload {
    if (metadataText(payload, 'encoding') !== encryptedEncoding) return payload;
    const id = metadataText(payload, keyIdMetadataKey);
    if (!id) throw new CodecError(`an encrypted payload has no ${keyIdMetadataKey} in its metadata`);
    const entry = this.keys.byId.get(id);
    if (!entry) {
      throw new CodecError(`a payload is encrypted with key id "${id}", which is not among the configured keys (${[...this.keys.byId.keys()].join(', ')}); add it to TENET_CODEC_KEYS`);
    }
    const data = Buffer.from(payload.data ?? []);
    if (data.length < ivBytes + tagBytes) throw new CodecError(`an encrypted payload (key id "${id}") is too short to be one`);
    const decipher = createDecipheriv('aes-256-gcm', entry.key, data.subarray(0, ivBytes));
    decipher.setAAD(utf8(id));
    decipher.setAuthTag(data.subarray(data.length - tagBytes));
    let plain: Buffer;
    try {
      plain = Buffer.concat([decipher.update(data.subarray(ivBytes, data.length - tagBytes)), decipher.final()]);
    } catch {
      throw new CodecError(`a payload encrypted with key id "${id}" does not authenticate: it was altered, or that id names a different key here`);
    }
    return PayloadMessage.decode(plain);
  }
}
