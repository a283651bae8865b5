// The workflow bundle (webpack over workflows/index.ts), cached on disk by the content of every
// source it can include. Bundling costs about 2 s of CPU; every worker process, replay test and
// chaos restart needs one, and the sources rarely change between them.
//
// The key is a sha256 over every source file of the folders a workflow can import from (relative
// path and content), the lock file (the SDK's and every other package's version) and the bundler
// options, so any edit gives a new bundle. The cache lives in node_modules/.cache (the usual place
// for build caches, owned by whoever installed the packages; not a shared /tmp); a file is written
// under a temporary name and renamed, so a reader never sees half a bundle. TENET_BUNDLE_CACHE=off
// bundles every time; a cache that cannot be read or written is skipped without a word.
import { createHash, randomUUID } from 'node:crypto';
import { mkdir, readdir, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { WorkflowBundle } from '@temporalio/worker';

const projectRoot = fileURLToPath(new URL('..', import.meta.url));
export const cacheDir = path.join(projectRoot, 'node_modules', '.cache', 'tenet-workflow-bundles');
/** Folders whose sources a workflow bundle may include (workflows import core and worker modules). */
const sourceFolders = ['workflows', 'core', 'worker', 'activities', 'db'];
const sourceFile = /\.(ts|mts|cts|js|mjs|cjs|json)$/;
/** Bundles kept; older ones are deleted. */
const keep = 8;

async function sources(folder: string): Promise<string[]> {
  const entries = await readdir(folder, { withFileTypes: true }).catch(() => []);
  const files = await Promise.all(
    entries.map(async (entry) => {
      const full = path.join(folder, entry.name);
      if (entry.isDirectory()) return sources(full);
      return entry.isFile() && sourceFile.test(entry.name) ? [full] : [];
    }),
  );
  return files.flat();
}

/** The cache key of the bundle that `options` would produce from the sources as they are now. */
export async function bundleKey(options: Record<string, string>): Promise<string> {
  const hash = createHash('sha256');
  hash.update(JSON.stringify(Object.entries(options).map(([k, v]) => [k, path.relative(projectRoot, v)])));
  const files = (await Promise.all(sourceFolders.map((f) => sources(path.join(projectRoot, f))))).flat().sort();
  for (const file of [...files, path.join(projectRoot, 'package-lock.json')]) {
    hash.update(`\0${path.relative(projectRoot, file)}\0`);
    hash.update(await readFile(file).catch(() => Buffer.from('missing')));
  }
  return hash.digest('hex');
}

/** `build()`'s bundle, from the cache when the sources are unchanged since it was last built. */
export async function cachedBundle(options: Record<string, string>, build: () => Promise<WorkflowBundle>): Promise<WorkflowBundle> {
  if (process.env.TENET_BUNDLE_CACHE === 'off') return build();
  const file = path.join(cacheDir, `${await bundleKey(options)}.js`);
  const cached = await readFile(file, 'utf8').catch(() => undefined);
  if (cached) return { code: cached };
  const bundle = await build();
  try {
    await mkdir(cacheDir, { recursive: true });
    const temporary = `${file}.${randomUUID()}.tmp`;
    await writeFile(temporary, bundle.code);
    await rename(temporary, file);
    await prune();
  } catch {
    // A read-only install: bundle each time.
  }
  return { code: bundle.code };
}

async function prune(): Promise<void> {
  const all = await readdir(cacheDir);
  // A writer that died between write and rename leaves a .tmp file; one an hour old is not in use.
  const hourAgo = Date.now() - 3_600_000;
  await Promise.all(all.filter((name) => name.endsWith('.tmp')).map(async (name) => ((await stat(path.join(cacheDir, name)).catch(() => ({ mtimeMs: Infinity }))).mtimeMs < hourAgo ? unlink(path.join(cacheDir, name)).catch(() => undefined) : undefined)));
  const names = all.filter((name) => name.endsWith('.js'));
  if (names.length <= keep) return;
  const aged = await Promise.all(names.map(async (name) => ({ name, mtime: (await stat(path.join(cacheDir, name)).catch(() => ({ mtimeMs: 0 }))).mtimeMs })));
  aged.sort((a, b) => b.mtime - a.mtime);
  await Promise.all(aged.slice(keep).map(({ name }) => unlink(path.join(cacheDir, name)).catch(() => undefined)));
}
