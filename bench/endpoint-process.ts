// The benchmark's model endpoint in a process of its own, as vLLM or any real endpoint would be: its
// 50 ms are then 50 ms whatever the benchmarked process does with its CPU. Run by `fork` from a
// benchmark; it sends `{ url }` once it listens, and answers `requests` with the bodies it has
// received so far (from a given index on).
import { startScriptedEndpoint } from '../worker/scripted-endpoint.js';

const send = (message: unknown) => process.send?.(message);
if (!process.send) {
  console.error('bench/endpoint-process.ts is started by a benchmark (child_process.fork), not by hand');
  process.exit(2);
}
const endpoint = await startScriptedEndpoint({ latencyMs: Number(process.env.BENCH_LATENCY_MS ?? 50) });
process.on('message', (message: { type: 'requests'; from: number }) => {
  if (message.type === 'requests') send({ type: 'requests', bodies: endpoint.requests.slice(message.from).map((r) => r.body) });
});
process.on('disconnect', () => void endpoint.close().then(() => process.exit(0)));
send({ type: 'ready', url: endpoint.url });
