// Small text helpers shared by error messages.

/** Levenshtein distance, for "did you mean" hints on short words. */
export function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diagonal = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = row[j]!;
      row[j] = Math.min(above + 1, row[j - 1]! + 1, diagonal + (a[i - 1] === b[j - 1] ? 0 : 1));
      diagonal = above;
    }
  }
  return row[b.length]!;
}

/** The candidate closest to `word`, when it is close enough to be a likely typo. */
export function closestWord(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of candidates) {
    const distance = editDistance(word.toLowerCase(), candidate.toLowerCase());
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return best !== undefined && bestDistance <= Math.max(2, Math.floor(best.length / 3)) ? best : undefined;
}

/** NUL characters and lone UTF-16 surrogates: what Postgres text and jsonb reject. */
const unstorable = /\0|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
const unstorableAll = new RegExp(unstorable.source, 'g');

/**
 * A JSON value that Postgres can store: text and jsonb reject NUL characters and lone UTF-16
 * surrogates, which models do emit. Each becomes U+FFFD, as an invalid byte would in UTF-8. A value
 * with nothing to replace (nearly all) is returned as it is, not copied.
 */
export function storableJson<T>(value: T): T {
  return isStorable(value) ? value : repaired(value);
}

function isStorable(value: unknown): boolean {
  if (typeof value === 'string') return !unstorable.test(value);
  if (Array.isArray(value)) return value.every(isStorable);
  if (value !== null && typeof value === 'object') {
    for (const key of Object.keys(value)) if (unstorable.test(key) || !isStorable((value as Record<string, unknown>)[key])) return false;
  }
  return true;
}

function repaired<T>(value: T): T {
  if (typeof value === 'string') return value.replace(unstorableAll, '\uFFFD') as T;
  if (Array.isArray(value)) return value.map((item: unknown) => repaired(item)) as T;
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [repaired(key), repaired(item as unknown)])) as T;
  }
  return value;
}
