// The payload codec: AES-256-GCM round trips, key rotation by key id, tampering, unknown keys, the
// environment's key settings, the dev key file, and which keys a client of which Temporal gets.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { ApplicationFailure, defaultPayloadConverter, type Payload } from '@temporalio/common';
import { decodeOptionalFailureToOptionalError, encodeErrorToFailure, loadDataConverter } from '@temporalio/common/lib/internal-non-workflow/index.js';
import proto from '@temporalio/proto';
import { rootCauseMessage } from '../../core/failure.js';
import { CodecError, codecKeysFromEnv, EncryptionCodec, ensureDevKey, parseKeyList, readKeyFile, type CodecKeys } from '../../worker/codec.js';
import { dataConverterFor, resolveCodecKeys } from '../../worker/data-converter.js';
import { failureTextLimits } from '../../worker/failure-converter.js';
import { isLoopback, listenToken } from '../../worker/http-guard.js';
import { readSettings, SettingsError } from '../../worker/settings.js';

const newKey = () => randomBytes(32).toString('base64');
const keyList = (...ids: string[]) => ids.map((id) => `${id}:${newKey()}`).join(',');
const text = (bytes: Uint8Array | null | undefined) => Buffer.from(bytes ?? []).toString('utf8');
const marker = 'PLAINTEXT-MARKER-7f3a';
const payloads = (): Payload[] => [defaultPayloadConverter.toPayload({ prompt: `tell me about ${marker}` }), defaultPayloadConverter.toPayload(null), defaultPayloadConverter.toPayload(new Uint8Array([0, 1, 2]))];

describe('EncryptionCodec', () => {
  const keys = parseKeyList(keyList('k1'), 'test');
  const codec = new EncryptionCodec(keys);

  it('seals every payload (marked with its key id) and opens it back unchanged', async () => {
    const original = payloads();
    const sealed = await codec.encode(original);
    assert.equal(sealed.length, original.length);
    for (const payload of sealed) {
      assert.equal(text(payload.metadata!.encoding), 'binary/encrypted');
      assert.equal(text(payload.metadata!['encryption-key-id']), 'k1');
      assert.equal(Buffer.from(payload.data!).includes(marker), false);
    }
    const opened = await codec.decode(sealed);
    assert.deepEqual(opened.map((p) => defaultPayloadConverter.fromPayload(p)), original.map((p) => defaultPayloadConverter.fromPayload(p)));
    assert.deepEqual(opened.map((p) => text(p.metadata!.encoding)), original.map((p) => text(p.metadata!.encoding)));
  });

  it('a fresh IV each time: the same payload seals to different bytes', async () => {
    const [a, b] = await codec.encode([payloads()[0]!, payloads()[0]!]);
    assert.notDeepEqual(Buffer.from(a!.data!), Buffer.from(b!.data!));
  });

  it('passes payloads that were never encrypted (older histories) through unchanged', async () => {
    const plain = payloads();
    assert.deepEqual(await codec.decode(plain), plain);
  });

  it('rotation: the first key encrypts, an older key id still decrypts', async () => {
    const [oldEntry] = keyList('old').split(',');
    const oldCodec = new EncryptionCodec(parseKeyList(oldEntry!, 'test'));
    const rotated = new EncryptionCodec(parseKeyList(`new:${newKey()},${oldEntry}`, 'test'));
    const sealedWithOld = await oldCodec.encode(payloads());
    assert.deepEqual(await rotated.decode(sealedWithOld), await oldCodec.decode(sealedWithOld));
    const sealedWithNew = await rotated.encode(payloads());
    assert.equal(text(sealedWithNew[0]!.metadata!['encryption-key-id']), 'new');
    await assert.rejects(oldCodec.decode(sealedWithNew), (error: Error) => error instanceof CodecError && /key id "new"/.test(error.message));
  });

  it('altered ciphertext, tag or key id does not authenticate', async () => {
    const other = new EncryptionCodec(parseKeyList(`k1:${newKey()},k2:${newKey()}`, 'test'));
    const [sealed] = await other.encode([payloads()[0]!]);
    for (const index of [0, 20, sealed!.data!.length - 1]) {
      const data = Buffer.from(sealed!.data!);
      data[index] = data[index]! ^ 0x01;
      await assert.rejects(other.decode([{ ...sealed!, data }]), /with key id "k1" does not authenticate/);
    }
    const relabelled = { ...sealed!, metadata: { ...sealed!.metadata, 'encryption-key-id': Buffer.from('k2') } };
    await assert.rejects(other.decode([relabelled]), /with key id "k2" does not authenticate/);
    await assert.rejects(other.decode([{ ...sealed!, data: Buffer.alloc(10) }]), /too short/);
  });

  it('an unknown key id fails with an error naming it and the configured ids', async () => {
    const [sealed] = await new EncryptionCodec(parseKeyList(keyList('retired-2024'), 'test')).encode([payloads()[0]!]);
    await assert.rejects(codec.decode([sealed!]), (error: Error) => {
      assert.ok(error instanceof CodecError);
      assert.match(error.message, /key id "retired-2024", which is not among the configured keys \(k1\)/);
      return true;
    });
  });
});

describe('keys from the environment', () => {
  const fails = (env: NodeJS.ProcessEnv, pattern: RegExp) => {
    assert.throws(() => codecKeysFromEnv(env), (error: Error) => {
      assert.ok(error instanceof SettingsError);
      assert.match(error.message, pattern);
      assert.equal(error.message.includes('\n'), false, 'one line');
      for (const value of Object.values(env)) for (const part of (value ?? '').split(/[,:]/)) if (part.length >= 8) assert.equal(error.message.includes(part), false, 'the key is not repeated');
      return true;
    });
  };

  it('none configured: undefined; empty values count as unset', () => {
    assert.equal(codecKeysFromEnv({}), undefined);
    assert.equal(codecKeysFromEnv({ TENET_CODEC_KEYS: ' ', TENET_CODEC_KEY: '' }), undefined);
  });

  it('TENET_CODEC_KEYS: the first encrypts, all decrypt', () => {
    const keys = codecKeysFromEnv({ TENET_CODEC_KEYS: ` ${keyList('a', 'b', 'c')} ` })!;
    assert.equal(keys.current.id, 'a');
    assert.deepEqual([...keys.byId.keys()], ['a', 'b', 'c']);
    assert.ok([...keys.byId.values()].every((k) => k.key.length === 32));
  });

  it('TENET_CODEC_KEY with TENET_CODEC_KEY_ID, or the id "default"', () => {
    const key = newKey();
    assert.equal(codecKeysFromEnv({ TENET_CODEC_KEY: key, TENET_CODEC_KEY_ID: 'prod-3' })!.current.id, 'prod-3');
    const keys = codecKeysFromEnv({ TENET_CODEC_KEY: key })!;
    assert.equal(keys.current.id, 'default');
    assert.deepEqual(keys.current.key, Buffer.from(key, 'base64'));
  });

  it('bad values get one line naming the variable, the entry and the id, never the key', () => {
    const short = randomBytes(16).toString('base64');
    fails({ TENET_CODEC_KEYS: `a:${newKey()},b:${short}` }, /^TENET_CODEC_KEYS: entry 2 \("b"\): the key must be 32 bytes in base64 \(it is 16\)$/);
    fails({ TENET_CODEC_KEYS: `a:not*base64${newKey()}` }, /^TENET_CODEC_KEYS: entry 1 \("a"\): the key is not base64$/);
    fails({ TENET_CODEC_KEYS: newKey() }, /^TENET_CODEC_KEYS: entry 1 is not "id:base64key"$/);
    fails({ TENET_CODEC_KEYS: `bad id:${newKey()}` }, /^TENET_CODEC_KEYS: entry 1: a key id is 1-64 letters/);
    fails({ TENET_CODEC_KEYS: `a:${newKey()},a:${newKey()}` }, /key id "a" appears twice/);
    fails({ TENET_CODEC_KEYS: ',,' }, /^TENET_CODEC_KEYS: no key/);
    fails({ TENET_CODEC_KEY: short }, /^TENET_CODEC_KEY \("default"\): the key must be 32 bytes/);
    fails({ TENET_CODEC_KEY: newKey(), TENET_CODEC_KEYS: keyList('a') }, /both set/);
    fails({ TENET_CODEC_KEY_ID: 'x' }, /TENET_CODEC_KEY_ID is set but TENET_CODEC_KEY is not/);
  });
});

describe('the dev key and who uses it', () => {
  const home = mkdtempSync(path.join(tmpdir(), 'tenet-codec-'));
  after(() => rmSync(home, { recursive: true, force: true }));
  const settings = readSettings({ TENET_HOME: home });

  it('is made once, mode 600, and read back the same', () => {
    const first = ensureDevKey(home);
    assert.equal(first.created, true);
    assert.equal(statSync(first.file).mode & 0o777, 0o600);
    assert.match(readFileSync(first.file, 'utf8'), /^dev-[0-9a-f]{8}:[A-Za-z0-9+/]{43}=\n$/);
    const second = ensureDevKey(home);
    assert.equal(second.created, false);
    assert.equal(second.keys.current.id, first.keys.current.id);
    assert.deepEqual(second.keys.current.key, first.keys.current.key);
  });

  it('a key file others can read is refused', () => {
    const file = path.join(home, 'loose-key');
    writeFileSync(file, keyList('x'), { mode: 0o644 });
    chmodSync(file, 0o644);
    assert.throws(() => readKeyFile(file), /readable by its owner only \(mode 644\); run chmod 600/);
  });

  const recordStack = (address: string) =>
    writeFileSync(path.join(home, 'dev.json'), JSON.stringify({ pid: process.pid, startedAt: new Date().toISOString(), ready: true, temporal: { address }, postgres: { embedded: true }, worker: {} }));

  it('clients of the running dev stack\'s Temporal use it; clients of any other Temporal do not', () => {
    const devKey = ensureDevKey(home).keys;
    recordStack('127.0.0.1:17233');
    try {
      assert.equal(resolveCodecKeys(settings, '127.0.0.1:17233', {}).keys?.current.id, devKey.current.id);
      assert.equal(resolveCodecKeys(settings, '127.0.0.1:7233', {}).keys, undefined);
      const fromEnv = resolveCodecKeys(settings, '127.0.0.1:17233', { TENET_CODEC_KEYS: keyList('env-key') });
      assert.equal(fromEnv.keys?.current.id, 'env-key');
      assert.equal(fromEnv.source, 'TENET_CODEC_KEYS');
    } finally {
      rmSync(path.join(home, 'dev.json'));
    }
    assert.equal(resolveCodecKeys(settings, '127.0.0.1:17233', {}).keys, undefined, 'no stack running: no dev key');
  });

  it('the data converter always encodes failure attributes; the codec only with keys', () => {
    const keys: CodecKeys = parseKeyList(keyList('k'), 'test');
    assert.match(dataConverterFor(undefined).failureConverterPath!, /failure-converter\.ts$/);
    assert.equal(dataConverterFor(undefined).payloadCodecs!.length, 0);
    assert.ok(dataConverterFor(keys).payloadCodecs![0] instanceof EncryptionCodec);
  });

  // Temporal keeps a retrying activity's last failure only up to 4 KiB (limit.mutableStateActivityFailureSize.error)
  // and otherwise shows "Failure exceeds size limit." with no message at all: what a database outage did to a
  // run's reason, since drizzle's query errors carry the statement and every parameter (whole texts).
  it('a failure with huge messages and stacks encodes under 4 KiB, encrypted, and keeps its root cause and the start of each message', async () => {
    const converter = loadDataConverter(dataConverterFor(parseKeyList(keyList('k'), 'test')));
    const refused = new Error('connect ECONNREFUSED 127.0.0.1:5432');
    refused.stack = `Error: ${refused.message}\n${'    at TCPConnectWrap.afterConnect [as oncomplete] (node:net:1555:16)\n'.repeat(200)}`;
    const params = 'a whole completion, '.repeat(20_000);
    const query = new Error(`Failed query: insert into "completions" ("id", "text") values ($1, $2)\nparams: ${params}`, { cause: refused });
    query.name = 'DrizzleQueryError';
    const outer = ApplicationFailure.create({ message: `label batch 3: ${query.message}`, type: 'DrizzleQueryError', cause: query });
    const failure = await encodeErrorToFailure(converter, outer);
    const bytes = proto.temporal.api.failure.v1.Failure.encode(failure).finish().length;
    assert.ok(bytes < 4096, `the encoded failure is ${bytes} bytes`);
    assert.equal(failure.message, 'Encoded failure', 'messages travel encrypted');

    const decoded = await decodeOptionalFailureToOptionalError(converter, failure);
    assert.equal(rootCauseMessage(decoded), 'connect ECONNREFUSED 127.0.0.1:5432');
    assert.match(decoded!.message, /^label batch 3: Failed query: insert into "completions" \("id", "text"\) values \(\$1, \$2\)\nparams: a whole completion, /);
    assert.match(decoded!.message, /… \(\d+ more characters cut\)$/);
    assert.ok(decoded!.message.length < failureTextLimits.message + 40);
    const causeStack = (decoded!.cause as Error).cause!;
    assert.ok(causeStack instanceof Error && causeStack.stack!.includes('at TCPConnectWrap.afterConnect'), 'a cut stack trace keeps its frames');

    // A failure within the limits is unchanged.
    const small = await decodeOptionalFailureToOptionalError(converter, await encodeErrorToFailure(converter, new Error('endpoint unreachable')));
    assert.equal(small!.message, 'endpoint unreachable');
  });
});

describe('the listen rule of tenet\'s HTTP servers', () => {
  it('loopback addresses', () => {
    for (const host of ['127.0.0.1', '127.1.2.3', '::1', 'localhost']) assert.equal(isLoopback(host), true, host);
    for (const host of ['0.0.0.0', '::', '10.0.0.5', 'example.org', '128.0.0.1']) assert.equal(isLoopback(host), false, host);
  });

  it('beyond loopback only with a token of 16+ characters', () => {
    assert.equal(listenToken('127.0.0.1', {}), undefined);
    assert.throws(() => listenToken('0.0.0.0', {}), /refusing to listen on 0.0.0.0 without a token: set TENET_UI_TOKEN/);
    assert.throws(() => listenToken('0.0.0.0', { TENET_UI_TOKEN: 'short' }), /TENET_UI_TOKEN: the token must be at least 16 characters/);
    assert.equal(listenToken('0.0.0.0', { TENET_UI_TOKEN: 'a-long-enough-token' }), 'a-long-enough-token');
    assert.equal(listenToken('127.0.0.1', { TENET_UI_TOKEN: 'a-long-enough-token' }), 'a-long-enough-token');
  });
});
