// `npm run bench -- NAME`: runs one benchmark from bench/. Each prints its figures and ends with
// `ratio=<measured/baseline>` against a baseline it measures in the same run.
const benchmarks: Record<string, () => Promise<unknown>> = {
  attacks: () => import('./attacks.js'),
  learn: () => import('./learn.js'),
  console: () => import('./console.js'),
  rater: () => import('./rater.js'),
  score: () => import('./score.js'),
  serve: () => import('./serve.js'),
  upserts: () => import('./upserts.js'),
  verify: () => import('./verify.js'),
  workers: () => import('./workers.js'),
};

const name = process.argv[2];
if (!name || !(name in benchmarks)) {
  console.error(`usage: npm run bench -- <${Object.keys(benchmarks).join('|')}>`);
  process.exit(2);
}
await benchmarks[name]!();
