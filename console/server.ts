// Starts the console's HTTP server (the rule of tenet's HTTP servers applies: see worker/http-guard.ts).
import { serve } from '@hono/node-server';
import type { AddressInfo } from 'node:net';
import { consoleApp, type ConsoleOptions } from './app.js';

export interface ConsoleServer {
  url: string;
  close(): Promise<void>;
}

export async function startConsole(options: ConsoleOptions & { host: string; port: number }): Promise<ConsoleServer> {
  const app = consoleApp(options);
  const server = await new Promise<ReturnType<typeof serve>>((resolve, reject) => {
    const started = serve({ fetch: app.fetch, hostname: options.host, port: options.port }, () => resolve(started));
    started.once('error', reject);
  });
  const { port } = server.address() as AddressInfo;
  const host = options.host.includes(':') ? `[${options.host}]` : options.host;
  return {
    url: `http://${host}:${port}`,
    close: () => new Promise<void>((resolve, reject) => server.close((error) => (error ? reject(error) : resolve()))),
  };
}
