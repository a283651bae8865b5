// The message a person wants from a Temporal failure: the innermost cause, not "Activity task failed".
export function rootCauseMessage(error: unknown): string {
  let current: unknown = error;
  for (let depth = 0; depth < 10; depth++) {
    const cause = (current as { cause?: unknown } | null)?.cause;
    if (!(cause instanceof Error)) break;
    current = cause;
  }
  return current instanceof Error ? current.message : String(current);
}
