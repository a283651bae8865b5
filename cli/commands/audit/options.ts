// Option schemas the `tenet audit` subcommands share.
import { userInfo } from 'node:os';
import { z } from 'zod';

export const id = (what: string) => z.coerce.number({ error: `expected a ${what} id (a whole number)` }).int({ error: `expected a ${what} id (a whole number)` }).positive({ error: `expected a ${what} id (a whole number)` });
export const date = z.iso.datetime({ offset: true, local: true, error: 'expected a date such as 2026-11-27 or 2026-11-27T10:00:00Z' }).or(z.iso.date({ error: 'expected a date such as 2026-11-27' }));
export const reviewer = z.string().trim().min(1).default(process.env.USER ?? userInfo().username);
export const jsonOnly = z.object({ json: z.boolean().default(false) });
