// Temporal over TLS and mTLS, end to end: a real Temporal dev server behind a TLS terminator (Node's
// tls server with ALPN h2, demanding a client certificate signed by the test CA, piping the
// decrypted stream to the server's plain gRPC port). tenet's client and worker reach it with the
// TEMPORAL_TLS_* settings; without the client certificate, or with TLS against the plain port, they
// fail with a message that names the address and that TLS was on.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import net from 'node:net';
import tls from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { Connection } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import { stopProcess } from '../../worker/processes.js';
import { readSettings } from '../../worker/settings.js';
import { startTemporalDevServer, type TemporalServerHandle } from '../../worker/temporal.js';
import { temporalConnectOptions } from '../../worker/temporal-connection.js';
import { cliEntry, cliEnv, createTestDatabase, freePort, runCli, tempDir, temporalCli, type TestDatabase } from '../helpers.js';
import { makeTestCerts, type TestCerts } from '../tls-certs.js';

interface Terminator {
  address: string;
  /** Client certificates the terminator refused. */
  refused: () => number;
  close: () => Promise<void>;
}

async function startTlsTerminator(certs: TestCerts, backend: string): Promise<Terminator> {
  const [host, port] = backend.split(':') as [string, string];
  let refused = 0;
  const sockets = new Set<net.Socket>();
  const server = tls.createServer({
    cert: readFileSync(certs.serverCert),
    key: readFileSync(certs.serverKey),
    ca: readFileSync(certs.ca),
    requestCert: true,
    rejectUnauthorized: true,
    ALPNProtocols: ['h2'],
  });
  server.on('tlsClientError', () => (refused += 1));
  server.on('secureConnection', (socket) => {
    const upstream = net.connect(Number(port), host);
    sockets.add(socket).add(upstream);
    socket.pipe(upstream).pipe(socket);
    const drop = () => {
      socket.destroy();
      upstream.destroy();
    };
    socket.once('error', drop).once('close', drop);
    upstream.once('error', drop).once('close', drop);
  });
  const listenPort = await freePort();
  await new Promise<void>((resolve) => server.listen(listenPort, '127.0.0.1', resolve));
  return {
    address: `127.0.0.1:${listenPort}`,
    refused: () => refused,
    close: () =>
      new Promise((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

describe('Temporal over TLS and mTLS', () => {
  let home: string;
  let certs: TestCerts;
  let temporal: TemporalServerHandle;
  let terminator: Terminator;
  let database: TestDatabase;
  let mtlsEnv: Record<string, string>;

  before(async () => {
    home = tempDir('tenet-tls-it-');
    certs = makeTestCerts(home);
    mkdirSync(path.join(home, 'logs'));
    [temporal, database] = await Promise.all([
      startTemporalDevServer({ cli: temporalCli, home, port: await freePort(), uiPort: await freePort(), namespace: 'default' }),
      createTestDatabase('tenet_tls'),
    ]);
    terminator = await startTlsTerminator(certs, temporal.address);
    mtlsEnv = {
      TENET_HOME: home,
      TEMPORAL_ADDRESS: terminator.address,
      TEMPORAL_TLS_CA: certs.ca,
      TEMPORAL_TLS_CERT: certs.clientCert,
      TEMPORAL_TLS_KEY: certs.clientKey,
      TEMPORAL_TLS_SERVER_NAME: 'temporal.test',
    };
  });

  after(async () => {
    await terminator?.close();
    await temporal?.stop();
    await database?.drop();
    rmSync(home, { recursive: true, force: true });
  });

  it('the client (Connection) and the worker\'s connection (NativeConnection) reach Temporal through mTLS', async () => {
    const options = temporalConnectOptions(readSettings(mtlsEnv), terminator.address);
    assert.ok(options.tls?.clientCertPair);
    const client = await Connection.connect({ ...options, connectTimeout: 5_000 });
    try {
      const info = await client.workflowService.describeNamespace({ namespace: 'default' });
      assert.equal(info.namespaceInfo?.name, 'default');
    } finally {
      await client.close();
    }
    const native = await NativeConnection.connect(options);
    try {
      const info = await native.workflowService.getSystemInfo({});
      assert.ok(info.serverVersion);
    } finally {
      await native.close();
    }
  });

  it('without the client certificate the terminator refuses the handshake', async () => {
    const refusedBefore = terminator.refused();
    const options = temporalConnectOptions(readSettings({ ...mtlsEnv, TEMPORAL_TLS_CERT: '', TEMPORAL_TLS_KEY: '' }), terminator.address);
    assert.equal(options.tls?.clientCertPair, undefined);
    await assert.rejects(async () => {
      const client = await Connection.connect({ ...options, connectTimeout: 3_000 });
      try {
        await client.workflowService.describeNamespace({ namespace: 'default' });
      } finally {
        await client.close();
      }
    });
    assert.ok(terminator.refused() > refusedBefore, 'the terminator saw a handshake without a client certificate');
  });

  it('`tenet worker` polls through mTLS and `tenet status` sees it there', async () => {
    const env = { ...mtlsEnv, DATABASE_URL: database.url };
    const worker: ChildProcess = spawn(process.execPath, [cliEntry, 'worker', '--queue', 'cpu'], { env: cliEnv(env), detached: true });
    let output = '';
    worker.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    worker.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`worker not ready after 120 s:\n${output}`)), 120_000);
        const check = setInterval(() => {
          if (output.includes('tenet worker ready')) {
            clearInterval(check);
            clearTimeout(timer);
            resolve();
          }
        }, 100);
        worker.once('exit', (code) => {
          clearInterval(check);
          clearTimeout(timer);
          reject(new Error(`worker exited with ${code}:\n${output}`));
        });
      });
      assert.match(output, new RegExp(`polling tenet-cpu on ${terminator.address.replace(/\./g, '\\.')}`));
      const status = await runCli(['status', '--json'], env);
      const report = JSON.parse(status.stdout) as { parts: { part: string; ok: boolean; detail: string }[] };
      const part = (name: string) => report.parts.find((p) => p.part === name)!;
      assert.equal(part('temporal').ok, true, part('temporal').detail);
      assert.match(part('temporal').detail, new RegExp(`^${terminator.address.replace(/\./g, '\\.')} \\(TLS, client certificate\\), namespace default`));
      assert.equal(part('postgres').ok, true, part('postgres').detail);
      assert.equal(part('workers tenet-cpu').ok, true, part('workers tenet-cpu').detail);
    } finally {
      if (worker.pid) await stopProcess(worker.pid, { graceMs: 10_000 });
    }
  });

  it('TLS against the plain server fails, and the message says TLS was on', async () => {
    const result = await runCli(['status', '--json'], { TENET_HOME: home, TEMPORAL_ADDRESS: temporal.address, TEMPORAL_TLS_CA: certs.ca, DATABASE_URL: database.url });
    assert.equal(result.code, 3, result.stderr);
    const report = JSON.parse(result.stdout) as { parts: { part: string; ok: boolean; detail: string }[] };
    const part = report.parts.find((p) => p.part === 'temporal')!;
    assert.equal(part.ok, false);
    assert.match(part.detail, new RegExp(`^unreachable at ${temporal.address.replace(/\./g, '\\.')} \\(TLS\\): \\S.* \\(TLS is on: check that the server speaks TLS`));
    // The worker says the same and exits as for any unreachable part.
    const worker = await runCli(['worker', '--queue', 'cpu'], { TENET_HOME: home, TEMPORAL_ADDRESS: temporal.address, TEMPORAL_TLS: 'true', DATABASE_URL: database.url });
    assert.equal(worker.code, 3, worker.stdout + worker.stderr);
    assert.match(worker.stderr, new RegExp(`^error: cannot reach Temporal at ${temporal.address.replace(/\./g, '\\.')} \\(TLS\\): .*TLS is on`, 'm'));
  });

  it('a half-given certificate stops the CLI with one line naming the missing variable', async () => {
    const result = await runCli(['status'], { TENET_HOME: home, TEMPORAL_ADDRESS: terminator.address, TEMPORAL_TLS_CERT: certs.clientCert });
    assert.equal(result.code, 1);
    assert.equal(result.stderr.trim(), 'error: TEMPORAL_TLS_CERT is set but TEMPORAL_TLS_KEY is not: mTLS needs the client certificate and its private key');
  });
});
