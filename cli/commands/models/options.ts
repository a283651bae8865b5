// Option schemas the `tenet models` subcommands share.
import { z } from 'zod';

export const id = (what: string) => z.coerce.number({ error: `expected ${what} (a whole number)` }).int().positive({ error: `expected ${what} (a whole number)` });
