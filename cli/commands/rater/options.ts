// Option schemas the `tenet rater` subcommands share.
import { z } from 'zod';

export const id = (what: string) => z.coerce.number({ error: `expected ${what} id (a whole number)` }).int({ error: `expected ${what} id (a whole number)` }).positive({ error: `expected ${what} id (a whole number)` });
export const jsonOption = z.object({ json: z.boolean().default(false) });
