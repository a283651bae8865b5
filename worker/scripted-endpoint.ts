// A small OpenAI-compatible server on 127.0.0.1 whose answers are scripted: deterministic
// completions, critiques, revisions and rater verdicts by default, and any status, header, delay or
// body a test asks for (429 with Retry-After, 500, slow replies, malformed JSON, injection-bearing
// text), and, when started with `logprobs`, the log-probs of the generated tokens as vLLM returns them
// (tokens named "token_id:123" on return_tokens_as_token_ids), and tool calls a script asks for. Tests use it for exact assertions; the demo uses it as its model endpoint until a local
// model server is configured. It is a real HTTP server: the `openai` client talks to it unchanged.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { stableHash, stableUniform } from '../core/rater/principles.js';

export interface ChatBody {
  model: string;
  /** content is typed as text for the scripts' sake; an assistant turn that only calls tools sends null. */
  messages: { role: string; content: string; tool_calls?: { id: string; function: { name: string; arguments: string } }[]; tool_call_id?: string }[];
  tools?: { type: string; function: { name: string } }[];
  max_tokens?: number;
  temperature?: number;
  seed?: number;
  logprobs?: boolean;
  top_logprobs?: number;
  [key: string]: unknown;
}

export interface ScriptedReply {
  status?: number;
  headers?: Record<string, string>;
  delayMs?: number;
  /** Sent as is (e.g. malformed JSON). */
  rawBody?: string;
  /** The assistant's text; a chat completion is built around it. */
  content?: string;
  /** Top log-probabilities of the first token, when the request asked for logprobs. */
  topLogprobs?: { token: string; logprob: number }[];
  /** The generated tokens (content defaults to their texts); each gets a logprob entry when the request asked for logprobs. */
  tokens?: ScriptedToken[];
  /** Tool calls of the answer (finish_reason 'tool_calls'; content null unless given); arguments objects are sent as JSON text. */
  toolCalls?: { name: string; arguments: string | Record<string, unknown> }[];
}

export interface ScriptedToken {
  id: number;
  text: string;
  logprob: number;
}

/** The pseudo-tokens of a text, as the endpoint's `logprobs` option makes them: 4-character pieces with stable ids and log-probs. */
export function scriptedTokens(content: string, seed = 0): ScriptedToken[] {
  const pieces = content.match(/[\s\S]{1,4}/g) ?? [];
  return pieces.map((text, i) => ({ id: stableHash(text) % 32_000, text, logprob: -4 * stableUniform(`${seed}:${i}:${text}`) }));
}

/** A `POST …/load_lora_adapter` request (vLLM's API, which `trainer serve` shares). */
export interface AdapterLoad {
  path: string;
  body: { lora_name?: string; lora_path?: string };
  /** When it arrived (ms since the epoch). */
  at: number;
}

export interface RecordedRequest {
  path: string;
  body: ChatBody;
  /** 1 for the first time this exact body arrived, 2 for the second… */
  seen: number;
  authorization: string | undefined;
}

/** Returns a reply, or undefined for the default behaviour. */
export type Script = (request: RecordedRequest) => ScriptedReply | undefined;

export interface ScriptedEndpoint {
  url: string;
  port: number;
  requests: RecordedRequest[];
  setScript(script: Script | undefined): void;
  setLatency(ms: number): void;
  /** Adapter loads received, in order (each answered once `loadAdapter` resolves; see `adapters` for a name loaded twice). */
  adapterLoads: AdapterLoad[];
  close(): Promise<void>;
}

const lastUser = (body: ChatBody) => [...body.messages].reverse().find((m) => m.role === 'user')?.content ?? '';

/** The tool calls of a scripted reply as an endpoint sends them, with ids stable per request and position. */
function toolCallsBody(body: ChatBody, calls: NonNullable<ScriptedReply['toolCalls']>) {
  const turn = body.messages.filter((m) => m.role === 'assistant').length;
  return calls.map((call, i) => ({
    id: `call_${turn}_${i}`,
    type: 'function',
    function: { name: call.name, arguments: typeof call.arguments === 'string' ? call.arguments : JSON.stringify(call.arguments) },
  }));
}

/** The text of a fenced block in a rater prompt (see core/rater/prompt.ts). */
export function fencedBlock(text: string, name: string): string | undefined {
  const match = new RegExp(`⟦BEGIN ${name}⟧\\n([\\s\\S]*?)\\n⟦END ${name}⟧`).exec(text);
  return match?.[1];
}

/** Default answers: plausible, deterministic, and a function of the request only. */
export function defaultReply(request: RecordedRequest): ScriptedReply {
  const body = request.body;
  const prompt = body.messages.find((m) => m.role === 'user')?.content ?? '';
  const last = lastUser(body);
  if (body.messages.length > 1 && body.messages.at(-2)?.role === 'assistant') {
    // A repair prompt after an unreadable answer.
    return { content: 'A' };
  }
  const responseA = fencedBlock(prompt, 'response_a');
  const responseB = fencedBlock(prompt, 'response_b');
  if (responseA !== undefined && responseB !== undefined) {
    // The rater prefers the response with the higher pseudo-quality, the same in both orders.
    const probabilityA = 1 / (1 + Math.exp(-6 * (stableUniform(responseA) - stableUniform(responseB))));
    const choice = probabilityA >= 0.5 ? 'A' : 'B';
    if (/The answer is: \(A\)" or/.test(last)) return { content: `Comparing both: option ${choice} follows the principle more closely.\nThe answer is: (${choice})` };
    return {
      content: choice,
      topLogprobs: [
        { token: 'A', logprob: Math.log(probabilityA) },
        { token: 'B', logprob: Math.log(1 - probabilityA) },
      ],
    };
  }
  const response = fencedBlock(prompt, 'response');
  if (response !== undefined && /Revision request:/.test(prompt)) return { content: `${response.split('\n')[0]} (revised to be clearer, more careful and more honest)` };
  if (response !== undefined && /Critique request:/.test(prompt)) return { content: 'The response is vague in places and could state its uncertainty more plainly.' };
  if (response !== undefined && /Score:/.test(prompt)) return { content: String(1 + Math.floor(stableUniform(response) * 10)) };
  const words = prompt.split(/\s+/).filter(Boolean).slice(0, 12).join(' ');
  return { content: `Answer ${body.seed ?? 0}: here is a careful reply about "${words}".` };
}

function completionBody(body: ChatBody, reply: ScriptedReply, options: { logprobs: boolean; tokenIds: boolean }) {
  const content = reply.content ?? reply.tokens?.map((t) => t.text).join('') ?? '';
  const toolCalls = reply.toolCalls && reply.toolCalls.length > 0 ? toolCallsBody(body, reply.toolCalls) : undefined;
  const generated = reply.tokens ?? (options.logprobs && !reply.topLogprobs ? scriptedTokens(content, body.seed) : undefined);
  const tokens = generated ? generated.length : Math.max(1, Math.ceil(content.length / 4));
  const first = reply.topLogprobs?.[0];
  const asIds = options.tokenIds && body.return_tokens_as_token_ids === true;
  const logprobs = !body.logprobs
    ? null
    : first
      ? { content: [{ token: first.token, logprob: first.logprob, bytes: null, top_logprobs: reply.topLogprobs!.slice(0, body.top_logprobs ?? 5) }] }
      : generated
        ? { content: generated.map((t) => ({ token: asIds ? `token_id:${t.id}` : t.text, logprob: t.logprob, bytes: [...Buffer.from(t.text)], top_logprobs: [] })) }
        : null;
  return {
    id: `chatcmpl-scripted-${Math.floor(stableUniform(JSON.stringify(body)) * 1e9)}`,
    object: 'chat.completion',
    created: 0,
    model: body.model,
    choices: [
      {
        index: 0,
        message: toolCalls ? { role: 'assistant', content: reply.content ?? null, tool_calls: toolCalls } : { role: 'assistant', content },
        finish_reason: toolCalls ? 'tool_calls' : tokens >= (body.max_tokens ?? Infinity) ? 'length' : 'stop',
        logprobs,
      },
    ],
    usage: { prompt_tokens: Math.ceil(JSON.stringify(body.messages).length / 4), completion_tokens: tokens, total_tokens: 0 },
  };
}

export async function startScriptedEndpoint(
  options: {
    port?: number;
    script?: Script;
    latencyMs?: number;
    /** Runs while an adapter load is in flight (e.g. holds it, as a real load takes time). */
    loadAdapter?: (load: AdapterLoad) => Promise<void> | void;
    /**
     * A second load under a name already loaded: `replace` answers 200 (as `trainer serve` does);
     * `vllm` answers 400 "has already been loaded", as vLLM does. The load takes effect once
     * `loadAdapter` resolves, even if the client has gone meanwhile.
     */
    adapters?: 'replace' | 'vllm';
    /**
     * Log-probs of every generated token when a request asks for them (replies without topLogprobs get
     * scriptedTokens of their content); without it only replies with topLogprobs or tokens carry any.
     */
    logprobs?: boolean;
    /** Honour return_tokens_as_token_ids (default true); false names tokens by text, as OpenAI's API does. */
    tokenIds?: boolean;
  } = {},
): Promise<ScriptedEndpoint> {
  let script = options.script;
  let latency = options.latencyMs ?? 0;
  const requests: RecordedRequest[] = [];
  const adapterLoads: AdapterLoad[] = [];
  const seen = new Map<string, number>();
  // Loaded adapters per API root (the path before /models or /load_lora_adapter): name → path.
  const loaded = new Map<string, Map<string, string | undefined>>();
  const adaptersAt = (root: string) => loaded.get(root) ?? loaded.set(root, new Map()).get(root)!;

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '').split('?')[0]!;
    if (req.method === 'GET' && path.endsWith('/models')) {
      const adapters = [...adaptersAt(path.slice(0, -'/models'.length))].map(([id, root]) => ({ id, object: 'model', root, parent: 'scripted' }));
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ object: 'list', data: [{ id: 'scripted', object: 'model' }, ...adapters] }));
      return;
    }
    if (req.method === 'POST' && path.endsWith('/load_lora_adapter')) {
      let raw = '';
      for await (const chunk of req) raw += String(chunk);
      const load: AdapterLoad = { path, body: JSON.parse(raw) as AdapterLoad['body'], at: Date.now() };
      adapterLoads.push(load);
      const adapters = adaptersAt(path.slice(0, -'/load_lora_adapter'.length));
      const name = load.body.lora_name ?? '';
      if (options.adapters === 'vllm' && adapters.has(name)) {
        res.writeHead(400, { 'content-type': 'application/json' }).end(JSON.stringify({ object: 'error', message: `The lora adapter '${name}' has already been loaded.`, type: 'InvalidUserInput', code: 400 }));
        return;
      }
      await options.loadAdapter?.(load);
      adapters.set(name, load.body.lora_path);
      if (!res.destroyed) res.writeHead(200, { 'content-type': 'text/plain' }).end(`Success: LoRA adapter '${load.body.lora_name}' added successfully.`);
      return;
    }
    if (req.method !== 'POST' || !path.endsWith('/chat/completions')) {
      res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { message: `no route ${req.method} ${path}` } }));
      return;
    }
    let raw = '';
    for await (const chunk of req) raw += String(chunk);
    let body: ChatBody;
    try {
      body = JSON.parse(raw) as ChatBody;
    } catch {
      res.writeHead(400, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { message: 'request body is not JSON' } }));
      return;
    }
    const key = JSON.stringify(body);
    const count = (seen.get(key) ?? 0) + 1;
    seen.set(key, count);
    const request: RecordedRequest = { path, body, seen: count, authorization: req.headers.authorization };
    requests.push(request);
    const reply = script?.(request) ?? defaultReply(request);
    const delay = reply.delayMs ?? latency;
    if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay));
    if (res.destroyed) return;
    const status = reply.status ?? 200;
    const headers = { 'content-type': 'application/json', ...reply.headers };
    if (reply.rawBody !== undefined) res.writeHead(status, headers).end(reply.rawBody);
    else if (status !== 200) res.writeHead(status, headers).end(JSON.stringify({ error: { message: reply.content ?? `scripted status ${status}`, type: 'scripted' } }));
    else res.writeHead(200, headers).end(JSON.stringify(completionBody(body, reply, { logprobs: options.logprobs ?? false, tokenIds: options.tokenIds ?? true })));
  };

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      if (!res.headersSent) res.writeHead(500).end(String(error));
    });
  });
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((resolve) => server.listen(options.port ?? 0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/v1`,
    port,
    requests,
    adapterLoads,
    setScript: (next) => (script = next),
    setLatency: (ms) => (latency = ms),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
