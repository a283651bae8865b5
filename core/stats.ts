// Small statistics over evaluation results: the 95% interval printed beside a win rate.

/** z for a two-sided 95% interval. */
export const z95 = 1.959963984540054;

export interface Interval {
  low: number;
  high: number;
}

/**
 * Wilson score interval for a proportion from `n` outcomes in [0, 1] whose mean is `mean`.
 * Soft outcomes (the rater's P(better) per prompt) are allowed: a variable in [0, 1] with mean p has
 * variance at most p(1 − p), the Bernoulli case, so the interval is conservative for them. Unlike
 * mean ± z·se it stays inside [0, 1] and is not zero-width at 0 or 1.
 */
export function wilsonInterval(mean: number, n: number, z = z95): Interval {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`wilsonInterval: n must be a whole number of at least 1, got ${n}`);
  if (!(mean >= 0 && mean <= 1)) throw new RangeError(`wilsonInterval: mean must be in [0, 1], got ${mean}`);
  const z2 = z * z;
  const centre = (mean + z2 / (2 * n)) / (1 + z2 / n);
  const half = (z / (1 + z2 / n)) * Math.sqrt((mean * (1 - mean)) / n + z2 / (4 * n * n));
  // Exact arithmetic puts the bound at the mean when it is 0 or 1; float rounding may miss it by 1e-17.
  return { low: Math.min(mean, Math.max(0, centre - half)), high: Math.max(mean, Math.min(1, centre + half)) };
}
