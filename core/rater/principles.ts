// Principle sampling that a retry cannot change: the draw is a pure function of a stable key
// (run, pair, slot), so a retried activity asks the rater the same question and hits the cache.

/** 32-bit FNV-1a, then a splitmix-style finaliser: a stable, well-spread hash of a text. */
export function stableHash(key: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** A uniform number in [0, 1) for `key`. */
export function stableUniform(key: string): number {
  return stableHash(key) / 2 ** 32;
}

export interface Weighted {
  weight: number;
}

/** Picks one item for `key`, by weight (or uniformly), the same pick every time for the same key. */
export function pickWeighted<T extends Weighted>(items: readonly T[], key: string, strategy: 'weighted' | 'uniform'): T {
  if (items.length === 0) throw new Error('pickWeighted: nothing to pick from');
  const u = stableUniform(key);
  if (strategy === 'uniform') return items[Math.floor(u * items.length)]!;
  const total = items.reduce((sum, item) => sum + item.weight, 0);
  let threshold = u * total;
  for (const item of items) {
    threshold -= item.weight;
    if (threshold < 0) return item;
  }
  return items.at(-1)!;
}

/** `count` distinct picks (an ensemble of principles for one pair), without replacement. */
export function pickDistinct<T extends Weighted>(items: readonly T[], key: string, count: number, strategy: 'weighted' | 'uniform'): T[] {
  const pool = [...items];
  const picks: T[] = [];
  for (let slot = 0; slot < Math.min(count, items.length); slot++) {
    const pick = pickWeighted(pool, `${key}#${slot}`, strategy);
    picks.push(pick);
    pool.splice(pool.indexOf(pick), 1);
  }
  return picks;
}
