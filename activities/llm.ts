// Model access for every role, through the `openai` package against any OpenAI-compatible endpoint:
// per-endpoint concurrency and rate limits, retries with backoff and jitter that honour Retry-After
// (the client's own), non-retryable failures for requests the endpoint rejects, and a request cache
// in Postgres so a retried activity or a re-run never pays twice.
import { createHash } from 'node:crypto';
import { ApplicationFailure } from '@temporalio/activity';
import OpenAI from 'openai';
import PQueue from 'p-queue';
import { z } from 'zod';
import { canonicalJson } from '../core/constitution/hash.js';
import type { TopLogprob } from '../core/rater/labels.js';
import type { EndpointConfig } from '../core/run-config.js';
import type { ToolCall, ToolDefinition, TraceMessage } from '../core/tools/environment.js';
import { storableJson } from '../core/text.js';
import { inList, insertNewRows } from '../db/bulk.js';
import type { Database } from '../db/pool.js';
import { requestCache } from '../db/schema.js';

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

export interface ChatRequest {
  /** The prompt, then (in a tool-using rollout) the turns so far. */
  messages: (ChatMessage | TraceMessage)[];
  /** Tools the model may call (OpenAI function tools). */
  tools?: ToolDefinition[];
  max_tokens: number;
  temperature: number;
  top_p?: number;
  seed?: number;
  stop?: string[];
  logprobs?: boolean;
  top_logprobs?: number;
  /** vLLM and `trainer serve`: logprob entries name their token as "token_id:123" (OpenAI's API rejects it). */
  return_tokens_as_token_ids?: boolean;
}

export interface ChatResult {
  text: string;
  /** Top log-probabilities of the first generated token, when asked for and returned. */
  firstTokenTopLogprobs: TopLogprob[] | undefined;
  /** The log-prob of each generated token as the endpoint sampled it, when asked for and returned. */
  sampledLogprobs: number[] | undefined;
  /** Their token ids, when every entry named its token as "token_id:123" (return_tokens_as_token_ids). */
  sampledTokenIds: number[] | undefined;
  /** The tool calls of the answer, when it made any. */
  toolCalls: ToolCall[] | undefined;
  finishReason: string | null;
  promptTokens: number | null;
  completionTokens: number | null;
  fromCache: boolean;
  latencyMs: number;
  cacheKey: string;
  /** The response body as the endpoint sent it. */
  raw: unknown;
}

// zod at the boundary: what we read of an OpenAI-compatible chat response.
const responseSchema = z.object({
  choices: z
    .array(
      z.object({
        message: z
          .object({
            content: z.string().nullable().optional(),
            tool_calls: z
              .array(z.object({ id: z.string(), type: z.literal('function').default('function'), function: z.object({ name: z.string(), arguments: z.string() }) }))
              .nullable()
              .optional(),
          })
          .passthrough(),
        finish_reason: z.string().nullable().optional(),
        logprobs: z
          .object({
            content: z
              .array(z.object({ token: z.string(), logprob: z.number(), top_logprobs: z.array(z.object({ token: z.string(), logprob: z.number() })).optional() }))
              .nullable()
              .optional(),
          })
          .nullable()
          .optional(),
      }),
    )
    .min(1),
  usage: z.object({ prompt_tokens: z.number().optional(), completion_tokens: z.number().optional() }).nullable().optional(),
});

/** A failure with the endpoint and model named, never the key. */
function describe(config: EndpointConfig): string {
  return `${config.base_url} (model ${config.model})`;
}

export function requestKey(config: EndpointConfig, request: ChatRequest): string {
  return createHash('sha256').update(canonicalJson({ endpoint: config.base_url, model: config.model, body: request })).digest('hex');
}

type CacheRow = typeof requestCache.$inferInsert;

export class ModelEndpoints {
  private readonly clients = new Map<string, { openai: OpenAI; queue: PQueue }>();
  // Answers wait here a few milliseconds so they reach the cache in multi-row writes; a crash loses
  // at most the calls in flight and this short buffer.
  private buffer: CacheRow[] = [];
  /** Settles once the rows now in the buffer are stored (or their write failed). */
  private bufferStored: { promise: Promise<void>; resolve: () => void; reject: (error: unknown) => void } | undefined;
  private flushTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly db: Database,
    /** Buffered answers that make the cache write go out at once, without waiting for the timer. */
    private readonly bufferRows = 64,
  ) {}

  /** Buffers an answer for the cache; the promise settles when it is stored. */
  private remember(row: CacheRow): Promise<void> {
    this.buffer.push(row);
    if (!this.bufferStored) {
      let resolve!: () => void;
      let reject!: (error: unknown) => void;
      const promise = new Promise<void>((ok, fail) => ([resolve, reject] = [ok, fail]));
      promise.catch(() => undefined); // a failed write is reported to the calls that wait for their rows
      this.bufferStored = { promise, resolve, reject };
    }
    const stored = this.bufferStored.promise;
    if (this.buffer.length >= this.bufferRows) this.flush();
    else this.flushTimer ??= setTimeout(() => this.flush(), 10);
    return stored;
  }

  /** Starts writing every buffered answer to the cache (writes of earlier buffers may still be running). */
  private flush(): void {
    clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    const [rows, stored] = [this.buffer, this.bufferStored];
    this.buffer = [];
    this.bufferStored = undefined;
    if (!stored) return;
    (async () => {
      for (let i = 0; i < rows.length; i += 500) await insertNewRows(this.db, requestCache, rows.slice(i, i + 500));
    })().then(stored.resolve, stored.reject);
  }

  private clientFor(config: EndpointConfig) {
    // One client and one queue per endpoint and key variable: limits hold across every activity of this worker.
    const id = `${config.base_url}|${config.api_key_env ?? ''}`;
    let entry = this.clients.get(id);
    if (!entry) {
      const apiKey = config.api_key_env ? process.env[config.api_key_env] : 'unused';
      if (!apiKey) {
        throw ApplicationFailure.nonRetryable(`${describe(config)}: the environment variable ${config.api_key_env} that should hold its API key is not set on this worker`, 'EndpointKeyMissing');
      }
      entry = {
        openai: new OpenAI({ baseURL: config.base_url, apiKey, maxRetries: config.max_retries, timeout: config.timeout_s * 1000 }),
        queue: new PQueue({
          concurrency: config.max_concurrency,
          ...(config.requests_per_second ? { intervalCap: Math.max(1, Math.round(config.requests_per_second)), interval: 1000 } : {}),
        }),
      };
      this.clients.set(id, entry);
    }
    return entry;
  }

  async chat(config: EndpointConfig, request: ChatRequest): Promise<ChatResult> {
    const [result] = await this.chatMany(config, [request]);
    return result!;
  }

  /**
   * Many calls to one endpoint: one cache read for all, the misses sent concurrently (within the
   * endpoint's limits), one cache write for every answer that came back — also when another call
   * failed, so a retry pays only for what failed.
   */
  async chatMany(config: EndpointConfig, requests: readonly ChatRequest[]): Promise<ChatResult[]> {
    const keys = requests.map((request) => requestKey(config, request));
    const started = performance.now();
    const cached = new Map<string, unknown>();
    for (let i = 0; i < keys.length; i += 500) {
      const rows = await this.db
        .select({ key: requestCache.key, response: requestCache.response })
        .from(requestCache)
        .where(inList(requestCache.key, [...new Set(keys.slice(i, i + 500))]));
      for (const row of rows) cached.set(row.key, row.response);
    }
    const lookupMs = Math.round(performance.now() - started);

    const { openai, queue } = this.clientFor(config);
    const sent = new Map<string, Promise<{ body: unknown; answer: Answer; latencyMs: number; stored: Promise<void> }>>();
    for (const [index, key] of keys.entries()) {
      if (cached.has(key) || sent.has(key)) continue;
      const request = requests[index]!;
      sent.set(
        key,
        queue.add(async () => {
          const began = performance.now();
          try {
            // Stored as is, less what Postgres cannot hold (NUL, lone surrogates).
            const body: unknown = storableJson(await openai.chat.completions.create({ model: config.model, ...request, stream: false }));
            const answer = read(body, config); // a malformed answer fails here and is never cached
            const latencyMs = Math.round(performance.now() - began);
            const stored = this.remember({ key, endpoint: config.base_url, model: config.model, response: body, latencyMs });
            return { body, answer, latencyMs, stored };
          } catch (error) {
            throw error instanceof ApplicationFailure ? error : endpointFailure(config, error);
          }
        }),
      );
    }
    const settled = await Promise.allSettled(sent.values());
    const fresh = new Map<string, { body: unknown; answer: Answer; latencyMs: number }>();
    const stored: Promise<void>[] = [];
    [...sent.keys()].forEach((key, i) => {
      const outcome = settled[i]!;
      if (outcome.status === 'fulfilled') {
        fresh.set(key, outcome.value);
        stored.push(outcome.value.stored);
      }
    });
    // Every answer is in the cache before this returns (and before a failure is reported).
    if (stored.length > 0) {
      this.flush();
      await Promise.all(stored);
    }
    const failure = settled.find((outcome) => outcome.status === 'rejected');
    if (failure?.status === 'rejected') throw failure.reason;

    return keys.map((key) => {
      const hit = cached.get(key);
      if (hit !== undefined) return chatResult(read(hit, config), { fromCache: true, latencyMs: lookupMs, cacheKey: key, raw: hit });
      const { body, answer, latencyMs } = fresh.get(key)!;
      return chatResult(answer, { fromCache: false, latencyMs, cacheKey: key, raw: body });
    });
  }
}

type Answer = Omit<ChatResult, 'fromCache' | 'latencyMs' | 'cacheKey' | 'raw'>;

/** Written out rather than spread: V8 builds `{ ...answer, more }` slowly, a kilobyte of garbage a call. */
function chatResult(answer: Answer, call: Pick<ChatResult, 'fromCache' | 'latencyMs' | 'cacheKey' | 'raw'>): ChatResult {
  return {
    text: answer.text,
    firstTokenTopLogprobs: answer.firstTokenTopLogprobs,
    sampledLogprobs: answer.sampledLogprobs,
    sampledTokenIds: answer.sampledTokenIds,
    toolCalls: answer.toolCalls,
    finishReason: answer.finishReason,
    promptTokens: answer.promptTokens,
    completionTokens: answer.completionTokens,
    fromCache: call.fromCache,
    latencyMs: call.latencyMs,
    cacheKey: call.cacheKey,
    raw: call.raw,
  };
}

function read(body: unknown, config: EndpointConfig): Answer {
  const parsed = responseSchema.safeParse(body);
  if (!parsed.success) {
    throw ApplicationFailure.retryable(`${describe(config)} sent a response that is not a chat completion: ${JSON.stringify(body).slice(0, 200)}`, 'EndpointMalformed');
  }
  const choice = parsed.data.choices[0]!;
  const sampled = choice.logprobs?.content ?? undefined;
  const first = sampled?.[0];
  return {
    text: choice.message.content ?? '',
    firstTokenTopLogprobs: first ? (first.top_logprobs && first.top_logprobs.length > 0 ? first.top_logprobs : [{ token: first.token, logprob: first.logprob }]) : undefined,
    sampledLogprobs: sampled && sampled.length > 0 ? sampled.map((entry) => entry.logprob) : undefined,
    sampledTokenIds: sampled && sampled.length > 0 ? tokenIds(sampled) : undefined,
    toolCalls: choice.message.tool_calls && choice.message.tool_calls.length > 0 ? choice.message.tool_calls : undefined,
    finishReason: choice.finish_reason ?? null,
    promptTokens: parsed.data.usage?.prompt_tokens ?? null,
    completionTokens: parsed.data.usage?.completion_tokens ?? null,
  };
}

/** The ids of "token_id:123" entries (vLLM's and `trainer serve`'s return_tokens_as_token_ids); undefined unless every entry has one. */
function tokenIds(entries: readonly { token: string }[]): number[] | undefined {
  const ids: number[] = [];
  for (const entry of entries) {
    const match = /^token_id:(\d+)$/.exec(entry.token);
    if (!match) return undefined;
    ids.push(Number(match[1]));
  }
  return ids;
}

/** Requests the endpoint rejects fail at once; everything else is retried by Temporal once the client's own retries are spent. */
export function endpointFailure(config: EndpointConfig, error: unknown): ApplicationFailure {
  if (error instanceof OpenAI.APIError && error.status !== undefined) {
    const status = Number(error.status as unknown);
    const message = (error.message || '').slice(0, 300);
    if ([400, 401, 403, 404, 422].includes(status)) {
      return ApplicationFailure.nonRetryable(`${describe(config)} rejected the request with ${status}: ${message}`, `EndpointRejected${status}`);
    }
    return ApplicationFailure.retryable(`${describe(config)} failed with ${status} after ${config.max_retries} retries: ${message}`, 'EndpointUnavailable');
  }
  if (error instanceof OpenAI.APIConnectionTimeoutError) {
    return ApplicationFailure.retryable(`${describe(config)} timed out after ${config.timeout_s} s (${config.max_retries} retries)`, 'EndpointTimeout');
  }
  if (error instanceof OpenAI.APIConnectionError) {
    return ApplicationFailure.retryable(`${describe(config)} is unreachable: ${error.message}`, 'EndpointUnavailable');
  }
  const message = error instanceof Error ? error.message : String(error);
  return ApplicationFailure.retryable(`${describe(config)}: ${message}`, 'EndpointError');
}
