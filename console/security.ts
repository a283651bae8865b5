// The console's request guards: the token of tenet's HTTP servers (worker/http-guard.ts) when it
// listens beyond loopback (a bearer header, or a cookie set by the login page), and a CSRF token on every state-changing request (double submit: a
// random per-browser value in an HttpOnly, SameSite=Strict cookie, echoed by each form's hidden field).
import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { HttpBindings } from '@hono/node-server';
import type { Context, MiddlewareHandler } from 'hono';
import { getCookie, setCookie } from 'hono/cookie';
import { authorized } from '../worker/http-guard.js';

export interface ConsoleEnv {
  Bindings: HttpBindings;
  Variables: { csrf: string; form: Record<string, string> };
}

export const csrfCookie = 'tenet_csrf';
export const csrfField = 'csrf';

export const tokenCookie = 'tenet_ui_token';

/**
 * Requests must carry the token (when one is configured): as `Authorization: Bearer <token>`, or in
 * the HttpOnly cookie the login page sets. The login page and the static files are open.
 */
export function requireToken(token: string | undefined, denied: (c: Context<ConsoleEnv>) => Response | Promise<Response>): MiddlewareHandler<ConsoleEnv> {
  return async (c, next) => {
    const open = token === undefined || c.req.path === '/login' || c.req.path.startsWith('/static/');
    const cookie = getCookie(c, tokenCookie);
    if (open || authorized(c.env.incoming, token) || (cookie !== undefined && sameToken(cookie, token))) return next();
    return denied(c);
  };
}

/** Whether a token typed into the login page is the configured one. */
export const tokenMatches = (given: string, token: string) => sameToken(given, token);

/** Keeps the token in an HttpOnly, SameSite=Strict cookie, so a browser can use a console beyond loopback. */
export function rememberToken(c: Context<ConsoleEnv>, token: string): void {
  setCookie(c, tokenCookie, token, { httpOnly: true, sameSite: 'Strict', path: '/' });
}

function sameToken(given: string, expected: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** Reads the form of a POST once (into `form`); refuses it (403) unless its CSRF field matches the cookie. */
export function csrfProtection(refuse: (c: Context<ConsoleEnv>, message: string) => Response | Promise<Response>): MiddlewareHandler<ConsoleEnv> {
  return async (c, next) => {
    let token = getCookie(c, csrfCookie);
    if (!token || !/^[A-Za-z0-9_-]{43}$/.test(token)) {
      token = randomBytes(32).toString('base64url');
      setCookie(c, csrfCookie, token, { httpOnly: true, sameSite: 'Strict', path: '/' });
    }
    c.set('csrf', token);
    if (c.req.method !== 'GET' && c.req.method !== 'HEAD') {
      const body = await c.req.parseBody().catch(() => ({}));
      const form = Object.fromEntries(Object.entries(body).filter((entry): entry is [string, string] => typeof entry[1] === 'string'));
      if (!form[csrfField] || !sameToken(form[csrfField], token)) return refuse(c, 'this form is missing its CSRF token or it does not match: reload the page and try again');
      c.set('form', form);
    }
    await next();
  };
}
