// Length-controlled win rate: a rater that likes longer answers makes a policy that only grew longer
// look better. Regress the preference on the length difference with a logistic model,
//   P(new wins | d) = sigmoid(a + b·d),  d = length(new) − length(base),
// fitted on the soft preferences by maximum likelihood (Newton's method), and report the model at
// d = 0: sigmoid(a), the win rate of an answer no longer than the one it is compared with.

export interface LengthControlled {
  /** sigmoid(a): the fitted P(win) at zero length difference. */
  winRate: number;
  /** b: change in the log-odds of winning per unit of length difference. */
  slope: number;
  pairs: number;
}

const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));

/**
 * `preferences[i]` is P(the new answer is better) of pair i (in [0, 1], soft or hard), and
 * `lengthDiffs[i]` its length difference. Null when it cannot be told: no pairs, or every pair
 * has the same non-zero difference (nothing then says what happens at zero). A small ridge
 * (1e-6 on the standardised slope) keeps the fit finite when length separates wins from losses.
 */
export function lengthControlledWinRate(preferences: readonly number[], lengthDiffs: readonly number[]): LengthControlled | null {
  if (preferences.length !== lengthDiffs.length) throw new RangeError(`lengthControlledWinRate: ${preferences.length} preferences but ${lengthDiffs.length} length differences`);
  for (const p of preferences) if (!(p >= 0 && p <= 1)) throw new RangeError(`lengthControlledWinRate: a preference must be in [0, 1], got ${p}`);
  for (const d of lengthDiffs) if (!Number.isFinite(d)) throw new RangeError(`lengthControlledWinRate: a length difference must be finite, got ${d}`);
  const n = preferences.length;
  if (n === 0) return null;
  const meanPreference = preferences.reduce((a, b) => a + b, 0) / n;
  // Scale (not centre) the differences, so the intercept stays the value at zero difference.
  const scale = Math.sqrt(lengthDiffs.reduce((sum, d) => sum + d * d, 0) / n);
  if (scale === 0) return { winRate: meanPreference, slope: 0, pairs: n };
  if (lengthDiffs.every((d) => d === lengthDiffs[0])) return null;
  const x = lengthDiffs.map((d) => d / scale);
  const ridge = 1e-6;
  // Start at the mean preference (clamped away from 0 and 1, where the log-odds are infinite).
  const start = Math.min(1 - 1e-6, Math.max(1e-6, meanPreference));
  let a = Math.log(start / (1 - start));
  let b = 0;
  for (let step = 0; step < 100; step++) {
    let ga = 0;
    let gb = ridge * b;
    let haa = 1e-12;
    let hab = 0;
    let hbb = ridge;
    for (let i = 0; i < n; i++) {
      const p = sigmoid(a + b * x[i]!);
      const r = p - preferences[i]!;
      const w = p * (1 - p);
      ga += r;
      gb += r * x[i]!;
      haa += w;
      hab += w * x[i]!;
      hbb += w * x[i]! * x[i]!;
    }
    const det = haa * hbb - hab * hab;
    if (!(det > 0)) break;
    const da = (hbb * ga - hab * gb) / det;
    const db = (haa * gb - hab * ga) / det;
    // Damped: a step of more than 5 in the log-odds is cut to 5, so the iteration cannot overshoot to infinity.
    const size = Math.max(Math.abs(da), Math.abs(db));
    const damp = size > 5 ? 5 / size : 1;
    a -= damp * da;
    b -= damp * db;
    if (size < 1e-10) break;
  }
  return { winRate: sigmoid(a), slope: b / scale, pairs: n };
}
