// The codec server the Temporal UI and CLI call to show encrypted payloads: POST /decode and
// /encode with {"payloads": [{"metadata": {k: base64}, "data": base64}]}, answered in kind. It
// follows the rule of tenet's HTTP servers (worker/http-guard.ts) and answers CORS preflights for
// the UI origins it is given only.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Payload, PayloadCodec } from '@temporalio/common';
import { z } from 'zod';
import { CodecError } from './codec.js';
import { authorized } from './http-guard.js';

export interface CodecServerOptions {
  host: string;
  port: number;
  /** Required on every request as "Authorization: Bearer <token>" when set. */
  token: string | undefined;
  codec: PayloadCodec;
  /** Browser origins allowed to call (the Temporal UI's), e.g. http://127.0.0.1:8233. */
  origins: string[];
}

export interface CodecServer {
  url: string;
  port: number;
  close(): Promise<void>;
}

const maxBodyBytes = 64 * 1024 * 1024;
const base64 = z.string().regex(/^[A-Za-z0-9+/]*={0,2}$/, { error: 'expected base64' });
const bodySchema = z.object({
  payloads: z.array(z.object({ metadata: z.record(z.string(), base64).nullish(), data: base64.nullish() })),
});
type PayloadJson = z.infer<typeof bodySchema>['payloads'][number];

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export async function startCodecServer(options: CodecServerOptions): Promise<CodecServer> {
  const server = createServer((request, response) => {
    handle(options, request, response).catch((error: unknown) => {
      const status = error instanceof HttpError ? error.status : error instanceof CodecError ? 422 : 500;
      send(response, status, { error: status === 500 ? 'internal error' : (error as Error).message });
      if (status === 500) console.error(error);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const host = options.host.includes(':') ? `[${options.host}]` : options.host;
  return {
    url: `http://${host}:${port}`,
    port,
    close: () => new Promise<void>((resolve, reject) => server.close((error) => (error ? reject(error) : resolve()))),
  };
}

async function handle(options: CodecServerOptions, request: IncomingMessage, response: ServerResponse): Promise<void> {
  allowOrigin(options.origins, request, response);
  if (request.method === 'OPTIONS') {
    response.setHeader('Access-Control-Allow-Methods', 'POST, OPTIONS');
    response.setHeader('Access-Control-Allow-Headers', 'Content-Type, X-Namespace, Authorization');
    response.setHeader('Access-Control-Max-Age', '600');
    response.writeHead(204).end();
    return;
  }
  const route = new URL(request.url ?? '/', 'http://codec').pathname;
  if (route !== '/encode' && route !== '/decode') throw new HttpError(404, `no route ${route}: POST /encode or /decode`);
  if (request.method !== 'POST') throw new HttpError(405, `${route} takes POST`);
  if (!authorized(request, options.token)) throw new HttpError(401, 'missing or wrong bearer token');
  const parsed = bodySchema.safeParse(await readJson(request));
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new HttpError(400, `body ${issue.path.join('.') || '(root)'}: ${issue.message}`);
  }
  const payloads = parsed.data.payloads.map(fromJson);
  const result = route === '/encode' ? await options.codec.encode(payloads) : await options.codec.decode(payloads);
  send(response, 200, { payloads: result.map(toJson) });
}

/** Browsers may call from the allowed origins only; requests without an Origin (CLI, curl) pass. */
function allowOrigin(origins: string[], request: IncomingMessage, response: ServerResponse): void {
  const origin = request.headers.origin;
  if (origin === undefined) return;
  if (!origins.includes(origin)) throw new HttpError(403, `origin ${origin} is not allowed (start the codec server with --cors-origin ${origin})`);
  response.setHeader('Access-Control-Allow-Origin', origin);
  response.setHeader('Access-Control-Allow-Credentials', 'true');
  response.setHeader('Vary', 'Origin');
}

async function readJson(request: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > maxBodyBytes) throw new HttpError(413, `body over ${maxBodyBytes} bytes`);
    chunks.push(chunk);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new HttpError(400, 'body is not JSON');
  }
}

function fromJson(payload: PayloadJson): Payload {
  const metadata = Object.fromEntries(Object.entries(payload.metadata ?? {}).map(([key, value]) => [key, Buffer.from(value, 'base64')]));
  return { metadata, data: Buffer.from(payload.data ?? '', 'base64') };
}

function toJson(payload: Payload): { metadata: Record<string, string>; data: string } {
  const metadata = Object.fromEntries(Object.entries(payload.metadata ?? {}).map(([key, value]) => [key, Buffer.from(value).toString('base64')]));
  return { metadata, data: Buffer.from(payload.data ?? []).toString('base64') };
}

function send(response: ServerResponse, status: number, body: unknown): void {
  if (response.headersSent) return void response.end();
  response.writeHead(status, { 'Content-Type': 'application/json' }).end(JSON.stringify(body));
}
