// The workflow bundle cache: a second worker with unchanged sources reuses the bundle; other bundler
// options (or sources) give another key; TENET_BUNDLE_CACHE=off builds every time. Unique options
// keep these entries apart from the real bundle's.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { existsSync, unlinkSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { bundleKey, cacheDir, cachedBundle } from '../../worker/workflow-bundle.js';

describe('workflow bundle cache', () => {
  it('builds once per key and reuses the file; other options are another key; off builds every time', async () => {
    const options = { workflowsPath: `/nonexistent/${randomUUID()}.ts` };
    const key = await bundleKey(options);
    assert.match(key, /^[0-9a-f]{64}$/);
    assert.equal(await bundleKey(options), key, 'the same sources and options give the same key');
    assert.notEqual(await bundleKey({ workflowsPath: `${options.workflowsPath}x` }), key);
    let builds = 0;
    const build = () => Promise.resolve({ code: `// bundle ${++builds} ✓` });
    try {
      assert.deepEqual(await cachedBundle(options, build), { code: '// bundle 1 ✓' });
      assert.deepEqual(await cachedBundle(options, build), { code: '// bundle 1 ✓' }, 'read back from the cache, multibyte text intact');
      assert.equal(builds, 1);
      assert.ok(existsSync(path.join(cacheDir, `${key}.js`)));
      process.env.TENET_BUNDLE_CACHE = 'off';
      assert.deepEqual(await cachedBundle(options, build), { code: '// bundle 2 ✓' });
    } finally {
      delete process.env.TENET_BUNDLE_CACHE;
      if (existsSync(path.join(cacheDir, `${key}.js`))) unlinkSync(path.join(cacheDir, `${key}.js`));
    }
  });
});
