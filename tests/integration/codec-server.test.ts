// The codec server over real HTTP: encode/decode in the Temporal codec-server format, CORS for the
// UI origin only, the bearer token, and `tenet codec-server` refusing to listen beyond loopback
// without a token.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { rmSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { defaultPayloadConverter } from '@temporalio/common';
import { EncryptionCodec, parseKeyList } from '../../worker/codec.js';
import { startCodecServer, type CodecServer } from '../../worker/codec-server.js';
import { projectRoot } from '../../worker/settings.js';
import { cliEntry, cliEnv, runCli, tempDir } from '../helpers.js';

const keysText = `k2:${randomBytes(32).toString('base64')},k1:${randomBytes(32).toString('base64')}`;
const codec = new EncryptionCodec(parseKeyList(keysText, 'test'));
const uiOrigin = 'http://127.0.0.1:8233';
const token = 'codec-test-token-0123456789';
const marker = 'CODEC-SERVER-MARKER-51c2';

type PayloadJson = { metadata: Record<string, string>; data: string };
const asJson = (value: unknown): PayloadJson => {
  const payload = defaultPayloadConverter.toPayload(value);
  return {
    metadata: Object.fromEntries(Object.entries(payload.metadata!).map(([k, v]) => [k, Buffer.from(v).toString('base64')])),
    data: Buffer.from(payload.data!).toString('base64'),
  };
};
const metadataText = (payload: PayloadJson, key: string) => Buffer.from(payload.metadata[key]!, 'base64').toString('utf8');

async function post(url: string, body: unknown, headers: Record<string, string> = {}) {
  const response = await fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/json', ...headers }, body: JSON.stringify(body) });
  return { status: response.status, headers: response.headers, body: (await response.json()) as { payloads: PayloadJson[]; error?: string } };
}

describe('codec server', () => {
  let open: CodecServer;
  let guarded: CodecServer;

  before(async () => {
    [open, guarded] = await Promise.all([
      startCodecServer({ host: '127.0.0.1', port: 0, token: undefined, codec, origins: [uiOrigin] }),
      startCodecServer({ host: '127.0.0.1', port: 0, token, codec, origins: [uiOrigin] }),
    ]);
  });
  after(async () => {
    await open?.close();
    await guarded?.close();
  });

  it('encodes with the first key and decodes back, in the codec-server JSON format', async () => {
    const plain = [asJson({ prompt: marker }), asJson(42)];
    const encoded = await post(`${open.url}/encode`, { payloads: plain });
    assert.equal(encoded.status, 200);
    assert.equal(encoded.body.payloads.length, 2);
    for (const payload of encoded.body.payloads) {
      assert.equal(metadataText(payload, 'encoding'), 'binary/encrypted');
      assert.equal(metadataText(payload, 'encryption-key-id'), 'k2');
      assert.equal(Buffer.from(payload.data, 'base64').includes(marker), false);
    }
    const decoded = await post(`${open.url}/decode`, encoded.body);
    assert.equal(decoded.status, 200);
    assert.deepEqual(decoded.body.payloads, plain);
  });

  it('decodes what a worker\'s codec sealed with an older key, and passes plain payloads through', async () => {
    const olderOnly = new EncryptionCodec(parseKeyList(keysText.split(',')[1]!, 'test'));
    const [sealed] = await olderOnly.encode([defaultPayloadConverter.toPayload({ completion: marker })]);
    const sealedJson = { metadata: { encoding: Buffer.from(sealed!.metadata!.encoding!).toString('base64'), 'encryption-key-id': Buffer.from('k1').toString('base64') }, data: Buffer.from(sealed!.data!).toString('base64') };
    const decoded = await post(`${open.url}/decode`, { payloads: [sealedJson, asJson('plain')] });
    assert.equal(decoded.status, 200);
    assert.deepEqual(decoded.body.payloads, [asJson({ completion: marker }), asJson('plain')]);
  });

  it('an unknown key id or a malformed body is a clear client error', async () => {
    const stranger = new EncryptionCodec(parseKeyList(`gone:${randomBytes(32).toString('base64')}`, 'test'));
    const [sealed] = await stranger.encode([defaultPayloadConverter.toPayload(1)]);
    const unknown = await post(`${open.url}/decode`, { payloads: [{ metadata: { encoding: Buffer.from('binary/encrypted').toString('base64'), 'encryption-key-id': Buffer.from('gone').toString('base64') }, data: Buffer.from(sealed!.data!).toString('base64') }] });
    assert.equal(unknown.status, 422);
    assert.match(unknown.body.error!, /key id "gone", which is not among the configured keys \(k2, k1\)/);
    const malformed = await post(`${open.url}/decode`, { payloads: [{ data: 'not base64!' }] });
    assert.equal(malformed.status, 400);
    assert.match(malformed.body.error!, /payloads\.0\.data: expected base64/);
    assert.equal((await post(`${open.url}/other`, { payloads: [] })).status, 404);
  });

  it('CORS: the Temporal UI origin may call, another origin may not', async () => {
    const preflight = await fetch(`${open.url}/decode`, { method: 'OPTIONS', headers: { Origin: uiOrigin, 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'content-type,x-namespace' } });
    assert.equal(preflight.status, 204);
    assert.equal(preflight.headers.get('access-control-allow-origin'), uiOrigin);
    assert.match(preflight.headers.get('access-control-allow-headers')!, /X-Namespace/);
    const fromUi = await post(`${open.url}/decode`, { payloads: [] }, { Origin: uiOrigin });
    assert.equal(fromUi.status, 200);
    assert.equal(fromUi.headers.get('access-control-allow-origin'), uiOrigin);
    const elsewhere = await post(`${open.url}/decode`, { payloads: [] }, { Origin: 'http://evil.example' });
    assert.equal(elsewhere.status, 403);
    assert.equal(elsewhere.headers.get('access-control-allow-origin'), null);
  });

  it('with a token configured, requests need it as a bearer token', async () => {
    const body = { payloads: [asJson(marker)] };
    assert.equal((await post(`${guarded.url}/encode`, body)).status, 401);
    assert.equal((await post(`${guarded.url}/encode`, body, { Authorization: 'Bearer wrong-token-0123456789' })).status, 401);
    assert.equal((await post(`${guarded.url}/encode`, body, { Authorization: `Bearer ${token}` })).status, 200);
  });
});

describe('tenet codec-server', () => {
  const home = tempDir('tenet-codec-server-');
  after(() => rmSync(home, { recursive: true, force: true }));

  it('refuses to listen beyond loopback without a token, naming TENET_UI_TOKEN', async () => {
    const result = await runCli(['codec-server', '--host', '0.0.0.0', '--port', '0'], { TENET_HOME: home, TENET_CODEC_KEYS: keysText, TENET_UI_TOKEN: undefined });
    assert.equal(result.code, 1);
    assert.match(result.stderr, /refusing to listen on 0\.0\.0\.0 without a token: set TENET_UI_TOKEN/);
  });

  it('without any key it says how to get one', async () => {
    const result = await runCli(['codec-server', '--port', '0'], { TENET_HOME: home, TENET_CODEC_KEYS: undefined, TENET_CODEC_KEY: undefined });
    assert.equal(result.code, 1);
    assert.match(result.stderr, /no payload key: set TENET_CODEC_KEYS, or start `tenet dev` once/);
  });

  it('with a token it listens on 0.0.0.0 and every request must carry the token', async () => {
    const child = spawn(process.execPath, [cliEntry, 'codec-server', '--host', '0.0.0.0', '--port', '0'], {
      cwd: projectRoot,
      env: cliEnv({ TENET_HOME: home, TENET_CODEC_KEYS: keysText, TENET_UI_TOKEN: token }),
    });
    try {
      let output = '';
      child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
      child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
      while (!/listening on http:\/\/0\.0\.0\.0:(\d+)/.test(output)) {
        assert.equal(child.exitCode, null, output);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      assert.match(output, /bearer token from TENET_UI_TOKEN required/);
      const port = /listening on http:\/\/0\.0\.0\.0:(\d+)/.exec(output)![1];
      const url = `http://127.0.0.1:${port}`;
      const body = { payloads: [asJson({ prompt: marker })] };
      assert.equal((await post(`${url}/encode`, body)).status, 401);
      const encoded = await post(`${url}/encode`, body, { Authorization: `Bearer ${token}` });
      assert.equal(encoded.status, 200);
      const decoded = await post(`${url}/decode`, encoded.body, { Authorization: `Bearer ${token}` });
      assert.deepEqual(decoded.body.payloads, body.payloads);
    } finally {
      child.kill('SIGTERM');
      if (child.exitCode === null) await once(child, 'exit');
    }
  });
});
