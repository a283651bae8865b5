// Putting a trained policy adapter into service on the policy endpoint (vLLM's
// /v1/load_lora_adapter API, which `trainer serve` shares), and the name of the policy before any.
import { ApplicationFailure, Context } from '@temporalio/activity';
import { eq } from 'drizzle-orm';
import type { Database } from '../db/pool.js';
import { models } from '../db/schema.js';
import type { RunContexts } from './run-context.js';

export function createAdapterActivities(deps: { db: Database; contexts: RunContexts }) {
  const { db, contexts } = deps;
  return {
    /** The policy endpoint's own model name (the policy before the first update). */
    async basePolicyName(input: { runId: number }): Promise<string> {
      return (await contexts.get(input.runId)).config.endpoints.policy.model;
    },

    /** Loads the adapter into the policy endpoint under `name` (vLLM's /v1/load_lora_adapter API, which `trainer serve` shares). */
    async activatePolicy(input: { runId: number; modelId: number; name: string }): Promise<void> {
      const { config } = await contexts.get(input.runId);
      if (!config.loop.serve_adapters) return;
      const [row] = await db.select({ path: models.artifactPath }).from(models).where(eq(models.id, input.modelId));
      if (!row) throw ApplicationFailure.nonRetryable(`model ${input.modelId} is not registered`, 'ModelMissing');
      const endpoint = config.endpoints.policy;
      const url = `${endpoint.base_url.replace(/\/+$/, '')}/load_lora_adapter`;
      const apiKey = endpoint.api_key_env ? process.env[endpoint.api_key_env] : undefined;
      // Heartbeats while the endpoint loads it (loading can take a while): a worker lost mid-load is noticed within the heartbeat timeout.
      const activity = Context.current();
      const pulse = setInterval(() => activity.heartbeat(), Math.max(200, Math.min(5_000, (activity.info.heartbeatTimeoutMs ?? 15_000) / 3)));
      let response: Response;
      try {
        response = await fetch(url, {
          method: 'POST',
          headers: { 'content-type': 'application/json', ...(apiKey ? { authorization: `Bearer ${apiKey}` } : {}) },
          body: JSON.stringify({ lora_name: input.name, lora_path: row.path }),
          signal: AbortSignal.timeout(endpoint.timeout_s * 1000),
        });
      } catch (error) {
        clearInterval(pulse);
        throw ApplicationFailure.retryable(`policy endpoint ${endpoint.base_url}: cannot load adapter ${input.name}: ${(error as Error).message}`, 'EndpointUnavailable');
      }
      const text = await response.text().finally(() => clearInterval(pulse));
      if (!response.ok) {
        const body = text.slice(0, 500);
        const message = `policy endpoint ${endpoint.base_url} (model ${endpoint.model}) refused adapter ${input.name} from ${row.path}: HTTP ${response.status} ${body}`;
        if (response.status >= 500 || response.status === 429) throw ApplicationFailure.retryable(message, 'EndpointUnavailable');
        // vLLM refuses a name it already holds (400 "has already been loaded"), e.g. when this is the
        // retry of a load that went through before its worker was lost. The same adapter under the
        // same name is what was asked for; another one under that name is a conflict.
        const loaded = await loadedAdapterRoot(endpoint.base_url, apiKey, input.name, endpoint.timeout_s);
        if (loaded === row.path) return;
        throw ApplicationFailure.nonRetryable(loaded === undefined ? message : `${message} (the endpoint holds ${input.name} from ${loaded})`, 'AdapterRejected');
      }
    },
  };
}

/** Where the endpoint's model list says the adapter `name` was loaded from (its `root`), or undefined when it is not listed or the list cannot be read. */
async function loadedAdapterRoot(baseUrl: string, apiKey: string | undefined, name: string, timeoutS: number): Promise<string | undefined> {
  try {
    const response = await fetch(`${baseUrl.replace(/\/+$/, '')}/models`, {
      headers: apiKey ? { authorization: `Bearer ${apiKey}` } : {},
      signal: AbortSignal.timeout(timeoutS * 1000),
    });
    if (!response.ok) return undefined;
    const list = (await response.json()) as { data?: { id?: unknown; root?: unknown }[] };
    const entry = list.data?.find((model) => model.id === name);
    return typeof entry?.root === 'string' ? entry.root : undefined;
  } catch {
    return undefined;
  }
}
