// Option schemas the `tenet constitution` subcommands share.
import { z } from 'zod';

export const jsonOption = z.object({ json: z.boolean().default(false) });
