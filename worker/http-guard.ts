// The rule for tenet's own HTTP servers (the codec server; the console): they listen on 127.0.0.1
// by default; listening on any other address needs a token (TENET_UI_TOKEN), and they refuse to
// start without one. A configured token is then required on every request as a bearer token.
import { timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { isIP } from 'node:net';
import { z } from 'zod';
import { SettingsError } from './settings.js';

export const tokenVariable = 'TENET_UI_TOKEN';

const tokenSchema = z.string().trim().min(16, { error: `${tokenVariable}: the token must be at least 16 characters` }).optional();

/** True for addresses only this machine can reach: 127.0.0.0/8, ::1, localhost. */
export function isLoopback(host: string): boolean {
  if (host === 'localhost' || host === '::1') return true;
  return isIP(host) === 4 && host.startsWith('127.');
}

/** The token requests must carry, or undefined (loopback only); throws when `host` is beyond loopback and no token is set. */
export function listenToken(host: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const parsed = tokenSchema.safeParse(env[tokenVariable] || undefined);
  if (!parsed.success) throw new SettingsError(parsed.error.issues[0]!.message);
  if (!parsed.data && !isLoopback(host)) {
    throw new SettingsError(`refusing to listen on ${host} without a token: set ${tokenVariable} (clients then send "Authorization: Bearer <token>"), or listen on 127.0.0.1`);
  }
  return parsed.data;
}

/** Whether the request carries the token (always, when none is configured). */
export function authorized(request: IncomingMessage, token: string | undefined): boolean {
  if (token === undefined) return true;
  const match = /^Bearer (.+)$/.exec(request.headers.authorization ?? '');
  if (!match) return false;
  const given = Buffer.from(match[1]!.trim());
  const expected = Buffer.from(token);
  return given.length === expected.length && timingSafeEqual(given, expected);
}
