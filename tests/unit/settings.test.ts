// The environment tenet reads (worker/settings.ts) and the Temporal connection options built from it
// (worker/temporal-connection.ts): every variable read and checked, TLS and mTLS with real
// certificates made by openssl, half-given settings refused in one line, and the API key never shown.
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { inspect } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { projectRoot, readSettings, SettingsError } from '../../worker/settings.js';
import { describeTemporal, temporalConnectOptions } from '../../worker/temporal-connection.js';
import { tempDir } from '../helpers.js';
import { makeTestCerts, type TestCerts } from '../tls-certs.js';

const apiKey = 'tcld-API-KEY-SECRET-9b1e4c77';
const cluster = 'temporal.example.com:7233';

function refused(env: NodeJS.ProcessEnv, pattern: RegExp): SettingsError {
  let caught: unknown;
  try {
    readSettings(env);
  } catch (error) {
    caught = error;
  }
  assert.ok(caught instanceof SettingsError, `expected a SettingsError for ${Object.keys(env).join(', ')}, got ${String(caught)}`);
  assert.match(caught.message, pattern);
  assert.equal(caught.message.includes('\n'), false, `one line: ${caught.message}`);
  return caught;
}

describe('settings: the plain variables', () => {
  it('defaults: the embedded stack under the project, no cluster, no TLS', () => {
    const s = readSettings({});
    assert.equal(s.temporalAddress, undefined);
    assert.equal(s.namespace, 'default');
    assert.equal(s.databaseUrl, undefined);
    assert.equal(s.home, path.join(projectRoot, '.tenet'));
    assert.deepEqual(s.ports, { temporal: 7233, temporalUi: 8233, postgres: 5433 });
    assert.equal(s.temporalCli, path.join(projectRoot, '.venv', 'bin', 'temporal'));
    assert.equal(s.python, path.join(projectRoot, '.venv', 'bin', 'python'));
    assert.equal(s.artifacts, path.join(projectRoot, '.tenet', 'artifacts'));
    assert.equal(s.trainerPreimport, true);
    assert.equal(s.temporalTls, undefined);
    assert.equal(s.temporalApiKey, undefined);
  });

  it('reads each variable', () => {
    const s = readSettings({
      TEMPORAL_ADDRESS: cluster,
      TEMPORAL_NAMESPACE: 'prod.a1b2c',
      DATABASE_URL: 'postgresql://tenet:pw@db.internal:5432/tenet',
      TENET_HOME: '/srv/tenet-state',
      TENET_TEMPORAL_PORT: '17233',
      TENET_TEMPORAL_UI_PORT: '18233',
      TENET_PG_PORT: '15433',
      TEMPORAL_CLI: '/usr/local/bin/temporal',
      TENET_PYTHON: '/opt/venv/bin/python',
      TENET_ARTIFACTS: '/mnt/shared/artifacts',
      TENET_TORCH_THREADS: '4',
      TENET_TRAINER_PREIMPORT: 'false',
    });
    assert.equal(s.temporalAddress, cluster);
    assert.equal(s.namespace, 'prod.a1b2c');
    assert.equal(s.databaseUrl, 'postgresql://tenet:pw@db.internal:5432/tenet');
    assert.equal(s.home, '/srv/tenet-state');
    assert.deepEqual(s.ports, { temporal: 17233, temporalUi: 18233, postgres: 15433 });
    assert.equal(s.temporalCli, '/usr/local/bin/temporal');
    assert.equal(s.python, '/opt/venv/bin/python');
    assert.equal(s.artifacts, '/mnt/shared/artifacts');
    assert.equal(s.trainerPreimport, false);
    assert.equal(readSettings({ TENET_TRAINER_PREIMPORT: '1' }).trainerPreimport, true);
  });

  it('TENET_ARTIFACTS defaults under TENET_HOME; an empty value counts as unset', () => {
    assert.equal(readSettings({ TENET_HOME: '/srv/t' }).artifacts, '/srv/t/artifacts');
    assert.equal(readSettings({ TEMPORAL_NAMESPACE: '', TEMPORAL_TLS: '' }).namespace, 'default');
  });

  it('refuses bad values in one line naming the variable', () => {
    refused({ TENET_TEMPORAL_PORT: '70000' }, /^bad environment: TENET_TEMPORAL_PORT: /);
    refused({ TENET_PG_PORT: 'five' }, /^bad environment: TENET_PG_PORT: /);
    refused({ TENET_TEMPORAL_UI_PORT: '0' }, /^bad environment: TENET_TEMPORAL_UI_PORT: /);
    refused({ DATABASE_URL: 'mysql://x' }, /DATABASE_URL: expected a postgres:\/\/ or postgresql:\/\/ URL/);
    refused({ TENET_TORCH_THREADS: '0' }, /^bad environment: TENET_TORCH_THREADS: expected a whole number of threads, 1 or more$/);
    refused({ TENET_TORCH_THREADS: 'many' }, /^bad environment: TENET_TORCH_THREADS: /);
    refused({ TEMPORAL_TLS: 'yes' }, /^bad environment: TEMPORAL_TLS: expected true or false$/);
    refused({ TENET_TRAINER_PREIMPORT: 'sometimes' }, /^bad environment: TENET_TRAINER_PREIMPORT: expected true or false$/);
    refused({ TEMPORAL_ADDRESS: cluster, TEMPORAL_TLS_SERVER_NAME: 'not a host!' }, /TEMPORAL_TLS_SERVER_NAME: expected a host name/);
    // Two problems, still one line.
    refused({ TENET_PG_PORT: 'x', TEMPORAL_TLS: 'maybe' }, /TENET_PG_PORT: .*; TEMPORAL_TLS: /);
  });
});

describe('settings: Temporal TLS, mTLS and API key', () => {
  let certs: TestCerts;
  let dir: string;
  before(() => {
    dir = tempDir('tenet-tls-');
    certs = makeTestCerts(dir);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('TEMPORAL_TLS=true alone: TLS with the system CAs', () => {
    for (const value of ['true', '1']) {
      const s = readSettings({ TEMPORAL_ADDRESS: cluster, TEMPORAL_TLS: value });
      assert.deepEqual(s.temporalTls, {});
      assert.deepEqual(temporalConnectOptions(s, cluster), { address: cluster, tls: {} });
    }
    for (const value of ['false', '0']) assert.equal(readSettings({ TEMPORAL_ADDRESS: cluster, TEMPORAL_TLS: value }).temporalTls, undefined);
  });

  it('CA, client certificate and key, server name: read, checked, and passed to the connection as bytes', () => {
    const s = readSettings({
      TEMPORAL_ADDRESS: cluster,
      TEMPORAL_TLS_CA: certs.ca,
      TEMPORAL_TLS_CERT: certs.clientCert,
      TEMPORAL_TLS_KEY: certs.clientKey,
      TEMPORAL_TLS_SERVER_NAME: 'temporal.test',
    });
    assert.deepEqual(s.temporalTls, { caFile: certs.ca, clientCert: { certFile: certs.clientCert, keyFile: certs.clientKey }, serverName: 'temporal.test' });
    const options = temporalConnectOptions(s, cluster);
    assert.deepEqual(options.tls?.serverRootCACertificate, readFileSync(certs.ca));
    assert.deepEqual(options.tls?.clientCertPair, { crt: readFileSync(certs.clientCert), key: readFileSync(certs.clientKey) });
    assert.equal(options.tls?.serverNameOverride, 'temporal.test');
    assert.equal(options.apiKey, undefined);
    assert.equal(describeTemporal(options), `${cluster} (TLS, client certificate)`);
  });

  it('a certificate without its key (and a key without its certificate) is refused in one line naming what is missing', () => {
    refused({ TEMPORAL_ADDRESS: cluster, TEMPORAL_TLS_CERT: certs.clientCert }, /^TEMPORAL_TLS_CERT is set but TEMPORAL_TLS_KEY is not: mTLS needs the client certificate and its private key$/);
    refused({ TEMPORAL_ADDRESS: cluster, TEMPORAL_TLS_KEY: certs.clientKey }, /^TEMPORAL_TLS_KEY is set but TEMPORAL_TLS_CERT is not/);
  });

  it('files that are missing, not files, or hold the wrong thing are refused, naming the variable and the file', () => {
    const base = { TEMPORAL_ADDRESS: cluster };
    refused({ ...base, TEMPORAL_TLS_CA: path.join(dir, 'nope.pem') }, new RegExp(`^TEMPORAL_TLS_CA: no file at ${dir}/nope\\.pem$`));
    refused({ ...base, TEMPORAL_TLS_CA: dir }, /^TEMPORAL_TLS_CA: .* is not a file$/);
    refused({ ...base, TEMPORAL_TLS_CA: certs.clientKey }, /^TEMPORAL_TLS_CA: .*client\.key holds no PEM certificate/);
    refused({ ...base, TEMPORAL_TLS_CERT: path.join(dir, 'gone.pem'), TEMPORAL_TLS_KEY: certs.clientKey }, /^TEMPORAL_TLS_CERT: no file at /);
    refused({ ...base, TEMPORAL_TLS_CERT: certs.clientCert, TEMPORAL_TLS_KEY: certs.ca }, /^TEMPORAL_TLS_KEY: .*ca\.pem holds no PEM private key/);
    refused({ ...base, TEMPORAL_TLS_CERT: certs.clientCert, TEMPORAL_TLS_KEY: certs.strayKey }, /^TEMPORAL_TLS_KEY: the key in .*stray\.key does not belong to the certificate in TEMPORAL_TLS_CERT/);
    refused({ ...base, TEMPORAL_TLS_CERT: certs.expiredCert, TEMPORAL_TLS_KEY: certs.expiredKey }, /^TEMPORAL_TLS_CERT: the certificate in .*expired\.pem expired on Jan {1,2}2 00:00:00 2020 GMT$/);
    const garbled = path.join(dir, 'garbled.pem');
    writeFileSync(garbled, '-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n');
    refused({ ...base, TEMPORAL_TLS_CA: garbled }, /^TEMPORAL_TLS_CA: .*garbled\.pem holds a PEM certificate that does not parse$/);
  });

  it('an unreadable file is refused (when the process is not root, which reads anything)', { skip: process.getuid?.() === 0 }, () => {
    const locked = path.join(dir, 'locked.pem');
    writeFileSync(locked, readFileSync(certs.ca));
    chmodSync(locked, 0o000);
    refused({ TEMPORAL_ADDRESS: cluster, TEMPORAL_TLS_CA: locked }, /^TEMPORAL_TLS_CA: cannot read .*locked\.pem \(EACCES\)$/);
  });

  it('a key error never quotes the key', () => {
    const error = refused({ TEMPORAL_ADDRESS: cluster, TEMPORAL_TLS_CERT: certs.clientCert, TEMPORAL_TLS_KEY: certs.strayKey }, /does not belong/);
    const keyBody = readFileSync(certs.strayKey, 'utf8').split('\n')[1]!;
    assert.equal(error.message.includes(keyBody), false);
  });

  it('TLS settings without TEMPORAL_ADDRESS are refused: the dev stack\'s Temporal is plain', () => {
    refused({ TEMPORAL_TLS_CA: certs.ca }, /^TEMPORAL_TLS_CA is set but TEMPORAL_ADDRESS is not/);
    refused({ TEMPORAL_TLS: 'true' }, /^TEMPORAL_TLS is set but TEMPORAL_ADDRESS is not/);
    refused({ TEMPORAL_API_KEY: apiKey }, /^TEMPORAL_API_KEY is set but TEMPORAL_ADDRESS is not/);
  });

  it('TEMPORAL_TLS=false with settings that need TLS is refused', () => {
    refused({ TEMPORAL_ADDRESS: cluster, TEMPORAL_TLS: 'false', TEMPORAL_TLS_CA: certs.ca }, /^TEMPORAL_TLS=false contradicts TEMPORAL_TLS_CA, which need TLS/);
    refused({ TEMPORAL_ADDRESS: cluster, TEMPORAL_TLS: '0', TEMPORAL_API_KEY: apiKey }, /^TEMPORAL_TLS=0 contradicts TEMPORAL_API_KEY/);
  });

  it('TEMPORAL_API_KEY turns TLS on and goes to the connection, and nowhere else', () => {
    const s = readSettings({ TEMPORAL_ADDRESS: cluster, TEMPORAL_NAMESPACE: 'prod.a1b2c', TEMPORAL_API_KEY: apiKey });
    assert.deepEqual(s.temporalTls, {});
    const options = temporalConnectOptions(s, cluster);
    assert.deepEqual(options, { address: cluster, tls: {}, apiKey });
    assert.equal(describeTemporal(options), `${cluster} (TLS, API key)`);
    // The settings object, however it is printed, never shows the key.
    for (const shown of [JSON.stringify(s), inspect(s, { depth: 5, showHidden: true }), String(s.temporalApiKey), `${String(s.temporalApiKey)}`, `${s.temporalApiKey?.toString() ?? ''}`]) {
      assert.equal(shown.includes(apiKey), false, shown);
    }
    assert.match(JSON.stringify(s), /"temporalApiKey":"\[secret\]"/);
    assert.equal(s.temporalApiKey?.reveal(), apiKey);
  });

  it('a malformed API key is refused without quoting it', () => {
    const error = refused({ TEMPORAL_ADDRESS: cluster, TEMPORAL_API_KEY: `${apiKey} trailing` }, /^bad environment: TEMPORAL_API_KEY: expected the key alone/);
    assert.equal(error.message.includes(apiKey), false);
  });

  it('the TLS and API-key settings apply to TEMPORAL_ADDRESS only; any other address (the dev stack) is plain', () => {
    const s = readSettings({ TEMPORAL_ADDRESS: cluster, TEMPORAL_TLS_CA: certs.ca, TEMPORAL_API_KEY: apiKey });
    assert.deepEqual(temporalConnectOptions(s, '127.0.0.1:7233'), { address: '127.0.0.1:7233' });
    assert.equal(describeTemporal(temporalConnectOptions(s, '127.0.0.1:7233')), '127.0.0.1:7233');
  });
});

describe('settings: DATABASE_URL TLS parameters (managed Postgres)', () => {
  let certs: TestCerts;
  let dir: string;
  const db = 'postgres://tenet:S3cretPassw0rd@db.example.com:5432/tenet';
  before(() => {
    dir = tempDir('tenet-pg-tls-');
    mkdirSync(dir, { recursive: true });
    certs = makeTestCerts(dir);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('accepts every sslmode pg knows, a CA file, and a client certificate with its key', () => {
    for (const mode of ['disable', 'prefer', 'require', 'verify-ca', 'verify-full', 'no-verify']) {
      assert.equal(readSettings({ DATABASE_URL: `${db}?sslmode=${mode}` }).databaseUrl, `${db}?sslmode=${mode}`);
    }
    const url = `${db}?sslmode=verify-full&sslrootcert=${certs.ca}&sslcert=${certs.clientCert}&sslkey=${certs.clientKey}`;
    assert.equal(readSettings({ DATABASE_URL: url }).databaseUrl, url);
  });

  it('refuses an unknown sslmode, a missing CA file, and a certificate without its key, in one line without the password', () => {
    const errors = [
      refused({ DATABASE_URL: `${db}?sslmode=verify_full` }, /^DATABASE_URL: sslmode=verify_full is not one of disable, prefer, require, verify-ca, verify-full, no-verify$/),
      refused({ DATABASE_URL: `${db}?sslmode=verify-full&sslrootcert=${dir}/rds-ca.pem` }, /^DATABASE_URL sslrootcert: no file at .*rds-ca\.pem$/),
      refused({ DATABASE_URL: `${db}?sslcert=${certs.clientCert}` }, /^DATABASE_URL: sslcert is given but sslkey is not/),
      refused({ DATABASE_URL: `${db}?sslkey=${certs.clientKey}` }, /^DATABASE_URL: sslkey is given but sslcert is not/),
      refused({ DATABASE_URL: `${db}?sslcert=${certs.clientCert}&sslkey=${certs.strayKey}` }, /^DATABASE_URL sslkey: the key in .*stray\.key does not belong/),
      refused({ DATABASE_URL: 'postgres://tenet:S3cretPassw0rd@db:port/x' }, /^DATABASE_URL: not a valid URL/),
    ];
    for (const error of errors) assert.equal(error.message.includes('S3cretPassw0rd'), false, error.message);
  });
});

describe('the README and `tenet --help` name the variables the code reads', () => {
  const readme = readFileSync(path.join(projectRoot, 'README.md'), 'utf8');
  const start = readme.indexOf('### Every environment variable tenet reads');
  const table = readme.slice(start, readme.indexOf('\n## ', start));
  const named = new Set([...table.matchAll(/^\| `([A-Z][A-Z0-9_]+)`(?:, `([A-Z][A-Z0-9_]+)`)?(?:, `([A-Z][A-Z0-9_]+)`)?/gm)].flatMap((m) => m.slice(1).filter((v): v is string => v !== undefined)));
  const sources = ['worker/settings.ts', 'worker/codec.ts', 'worker/http-guard.ts', 'worker/worker.ts', 'cli/demo-model.ts', 'trainer/tenet_trainer/common.py', 'trainer/tenet_trainer/models.py', 'Makefile']
    .map((file) => readFileSync(path.join(projectRoot, file), 'utf8'))
    .join('\n');

  it('every variable in the README table is read by the code', () => {
    assert.ok(start > 0 && named.size >= 20, `found ${named.size} variables`);
    for (const name of named) assert.ok(sources.includes(name), `${name} is in the README but no source reads it`);
  });

  it('every variable the settings schema reads is in the README table and the help text', () => {
    const settingsSource = readFileSync(path.join(projectRoot, 'worker', 'settings.ts'), 'utf8');
    const schema = settingsSource.slice(settingsSource.indexOf('const envSchema'), settingsSource.indexOf('});', settingsSource.indexOf('const envSchema')));
    const keys = [...schema.matchAll(/^ {2}([A-Z][A-Z0-9_]+):/gm)].map((m) => m[1]!);
    assert.ok(keys.length >= 16, `found ${keys.length} keys`);
    const help = readFileSync(path.join(projectRoot, 'cli', 'main.ts'), 'utf8');
    for (const key of [...keys, 'TENET_CODEC_KEYS', 'TENET_CODEC_KEY', 'TENET_CODEC_KEY_ID', 'TENET_UI_TOKEN']) {
      assert.ok(named.has(key), `${key} is read but not in the README table`);
      assert.match(help, new RegExp(`\\b${key}\\b`), `${key} is not in tenet --help`);
    }
  });
});
