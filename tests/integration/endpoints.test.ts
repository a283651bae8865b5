// Model access over real HTTP against the scripted server: retries, Retry-After, rejections,
// malformed bodies, unreachable endpoints, the request cache.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ApplicationFailure } from '@temporalio/common';
import { ModelEndpoints } from '../../activities/llm.js';
import { endpointSchema } from '../../core/run-config.js';
import { applyMigrations } from '../../db/migrate.js';
import { createDatabase, type Database } from '../../db/pool.js';
import { startScriptedEndpoint, type ScriptedEndpoint } from '../../worker/scripted-endpoint.js';
import { createTestDatabase, freePort, type TestDatabase } from '../helpers.js';

describe('model endpoints', () => {
  let database: TestDatabase;
  let db: Database;
  let server: ScriptedEndpoint;
  const ask = (content: string) => ({ messages: [{ role: 'user' as const, content }], max_tokens: 8, temperature: 0 });
  const endpoint = (overrides: Record<string, unknown> = {}) => endpointSchema.parse({ base_url: server.url, model: 'scripted', max_retries: 3, timeout_s: 5, ...overrides });

  before(async () => {
    [database, server] = await Promise.all([createTestDatabase('tenet_llm'), startScriptedEndpoint()]);
    await applyMigrations(database.url);
    db = createDatabase(database.url);
  });
  after(async () => {
    await server.close();
    await db.$client.end();
    await database.drop();
  });

  it('caches by request: the second identical call is not sent', async () => {
    const llm = new ModelEndpoints(db);
    const first = await llm.chat(endpoint(), ask('cache me'));
    const second = await llm.chat(endpoint(), ask('cache me'));
    assert.equal(first.fromCache, false);
    assert.equal(second.fromCache, true);
    assert.equal(second.text, first.text);
    assert.equal(second.cacheKey, first.cacheKey);
    assert.equal(server.requests.filter((r) => r.body.messages[0]!.content === 'cache me').length, 1);
  });

  it('many calls at once: every answer is in the cache when chatMany returns, also past the write buffer and when one call fails', async () => {
    // A write buffer of 5 rows: most answers go out because the buffer is full, not on its timer.
    const llm = new ModelEndpoints(db, 5);
    const requests = Array.from({ length: 150 }, (_, i) => ask(`many ${i}`));
    const results = await llm.chatMany(endpoint({ max_concurrency: 64 }), requests);
    assert.equal(results.length, 150);
    assert.ok(results.every((r, i) => !r.fromCache && r.text.includes(`many ${i}`)));
    const stored = await db.$client.query<{ key: string }>('select key from request_cache where key = any($1::text[])', [results.map((r) => r.cacheKey)]);
    assert.equal(stored.rows.length, 150, 'all 150 answers stored before chatMany returned');

    // One call of a batch fails for good: the batch fails, and the answers that came back are cached.
    server.setScript((r) => (r.body.messages[0]!.content === 'doomed 7' ? { status: 400 } : undefined));
    const doomed = Array.from({ length: 80 }, (_, i) => ask(`doomed ${i}`));
    await assert.rejects(llm.chatMany(endpoint({ max_concurrency: 64 }), doomed), /rejected the request with 400/);
    server.setScript(undefined);
    const sent = server.requests.length;
    const again = await llm.chatMany(endpoint(), doomed.filter((_, i) => i !== 7));
    assert.ok(again.every((r) => r.fromCache), 'the 79 answers were cached');
    assert.equal(server.requests.length, sent, 'nothing was sent again');
  });

  it('retries 429 honouring Retry-After, and 500, then succeeds', async () => {
    server.setScript((r) => {
      const text = r.body.messages[0]!.content;
      if (text === 'busy' && r.seen === 1) return { status: 429, headers: { 'retry-after': '1' } };
      if (text === 'flaky' && r.seen <= 2) return { status: 500 };
      return undefined;
    });
    const llm = new ModelEndpoints(db);
    const started = Date.now();
    const busy = await llm.chat(endpoint(), ask('busy'));
    assert.ok(Date.now() - started >= 900, 'waited for Retry-After');
    assert.match(busy.text, /Answer/);
    const flaky = await llm.chat(endpoint(), ask('flaky'));
    assert.match(flaky.text, /Answer/);
    assert.equal(server.requests.filter((r) => r.body.messages[0]!.content === 'flaky').length, 3);
    server.setScript(undefined);
  });

  it('fails at once, non-retryable, naming endpoint and model, when the endpoint rejects the request', async () => {
    for (const status of [400, 401, 404]) {
      server.setScript(() => ({ status, content: 'no such model' }));
      const llm = new ModelEndpoints(db);
      const before = server.requests.length;
      await assert.rejects(llm.chat(endpoint(), ask(`reject ${status}`)), (error: unknown) => {
        assert.ok(error instanceof ApplicationFailure);
        assert.equal(error.nonRetryable, true);
        assert.match(error.message, new RegExp(`${server.url.replace(/[/.]/g, '\\$&')} \\(model scripted\\) rejected the request with ${status}`));
        return true;
      });
      assert.equal(server.requests.length - before, 1, 'no retries');
    }
    server.setScript(undefined);
  });

  it('a malformed body is a retryable failure that names the endpoint', async () => {
    server.setScript(() => ({ rawBody: '{"choices": [oops' }));
    const llm = new ModelEndpoints(db);
    await assert.rejects(llm.chat(endpoint({ max_retries: 0 }), ask('malformed')), (error: unknown) => {
      assert.ok(error instanceof ApplicationFailure);
      assert.equal(error.nonRetryable, false);
      assert.match(error.message, /model scripted/);
      return true;
    });
    server.setScript(undefined);
  });

  it('an unreachable endpoint is a retryable failure that names it', async () => {
    const port = await freePort();
    const llm = new ModelEndpoints(db);
    const gone = endpointSchema.parse({ base_url: `http://127.0.0.1:${port}/v1`, model: 'ghost', max_retries: 1, timeout_s: 2 });
    await assert.rejects(llm.chat(gone, ask('anyone?')), (error: unknown) => {
      assert.ok(error instanceof ApplicationFailure);
      assert.equal(error.nonRetryable, false);
      assert.match(error.message, new RegExp(`http://127\\.0\\.0\\.1:${port}/v1 \\(model ghost\\) is unreachable`));
      return true;
    });
  });

  it('a missing API key variable fails non-retryable, naming the variable and never a key', async () => {
    const llm = new ModelEndpoints(db);
    delete process.env.TENET_TEST_MISSING_KEY;
    await assert.rejects(llm.chat(endpoint({ api_key_env: 'TENET_TEST_MISSING_KEY' }), ask('key')), /TENET_TEST_MISSING_KEY that should hold its API key is not set/);
  });

  it('sends the key from the named variable as a bearer token', async () => {
    process.env.TENET_TEST_KEY = 'sk-test-secret';
    const llm = new ModelEndpoints(db);
    await llm.chat(endpoint({ api_key_env: 'TENET_TEST_KEY' }), ask('with key'));
    assert.equal(server.requests.at(-1)?.authorization, 'Bearer sk-test-secret');
    const cached = await db.$client.query<{ n: string }>("select count(*) as n from request_cache where response::text like '%sk-test-secret%'");
    assert.equal(Number(cached.rows[0]!.n), 0, 'the key is not in the cache');
  });
});
