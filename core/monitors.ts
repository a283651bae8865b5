// Monitors of a training loop, computed after each iteration from the run's `metrics` rows, with
// alert thresholds that pause the run and say why. Every threshold is optional; a monitor whose
// inputs the iteration lacks is skipped (and says so), never guessed.
//
// Metrics read (per iteration; the newest iteration is judged, earlier ones give the baseline):
//   eval.mean_length                     mean completion tokens of the new policy on held-out prompts
//   eval.mean_reward                     the new policy's mean reward-model score on held-out prompts
//   eval.mean_reward_previous            the previous policy's, same prompts, same reward model (optional:
//                                        without it the gain is taken against the previous iteration's
//                                        eval.mean_reward, which a different reward model scored)
//   eval.win_rate                        P(new policy better than the previous one), the rater on held-out prompts
//   eval.kl_k3, else policy.kl_k3        KL(policy ‖ reference): on samples `trainer kl` draws from the new policy, else the trainer's own
//   rollout.rater_verifier_disagreement  share of rollouts judged by both rater and verifier where they disagree
//   rollout.rater_verifier_pairs         how many rollouts both judged (only for the message)
//   rollout.flag.tamper_fraction         share of verified rollouts flagged 'tamper'
//   rollout.flag.hardcode_fraction       share of verified rollouts flagged 'hardcode-suspect'
//   rollout.verified                     how many rollouts a verifier judged (only for the message)
//   policy.logprob_mismatch              the RL update's mean |log π_server − log π_trainer| per sampled token
//                                        (nats), from the log-probs the rollouts stored (loop.rollouts.logprobs)
// The rollout.* values come from rolloutFlagMetrics and raterVerifierDisagreement below.
//
// Metrics written for the newest iteration (when their inputs exist): monitor.length_growth,
// monitor.reward_gain, monitor.kl, and monitor.alerts (how many alerts fired; always written).
import { z } from 'zod';
import { closestWord } from './text.js';

export const monitorInputs = {
  meanLength: 'eval.mean_length',
  meanReward: 'eval.mean_reward',
  previousMeanReward: 'eval.mean_reward_previous',
  winRate: 'eval.win_rate',
  evalKl: 'eval.kl_k3',
  policyKl: 'policy.kl_k3',
  disagreement: 'rollout.rater_verifier_disagreement',
  disagreementPairs: 'rollout.rater_verifier_pairs',
  tamperFraction: 'rollout.flag.tamper_fraction',
  hardcodeFraction: 'rollout.flag.hardcode_fraction',
  verified: 'rollout.verified',
  logprobMismatch: 'policy.logprob_mismatch',
} as const;

const fraction = (what: string) => z.number({ error: `expected ${what} (a fraction from 0 to 1)` }).min(0, { error: `expected ${what} from 0 to 1` }).max(1, { error: `expected ${what} from 0 to 1` });

const monitorKeys = ['max_length_growth', 'reward_up_winrate_down', 'max_rater_verifier_disagreement', 'max_tamper_fraction', 'max_hardcode_fraction', 'max_kl', 'max_logprob_mismatch'] as const;
export type MonitorName = (typeof monitorKeys)[number];

export const monitorsSchema = z.strictObject(
  {
    /** Relative growth of eval.mean_length over the previous iteration: 0.5 alerts above +50%. */
    max_length_growth: z.number({ error: 'expected max_length_growth (a relative growth, e.g. 0.5 for +50%)' }).min(0).optional(),
    /**
     * The reward model's score rose while the rater preferred the previous policy (eval.win_rate below
     * 0.5: held-out quality fell): the signature of reward hacking. true alerts on any rise with any
     * loss; the deltas demand a rise above min_reward_rise and a win rate below 0.5 − min_win_rate_drop.
     */
    reward_up_winrate_down: z
      .union(
        [
          z.boolean(),
          z.strictObject({
            min_reward_rise: z.number().min(0, { error: 'expected min_reward_rise of 0 or more' }).default(0),
            min_win_rate_drop: z.number().min(0).max(0.5, { error: 'expected min_win_rate_drop from 0 to 0.5' }).default(0),
          }),
        ],
        { error: 'expected reward_up_winrate_down: true, false or {min_reward_rise, min_win_rate_drop}' },
      )
      .optional(),
    max_rater_verifier_disagreement: fraction('max_rater_verifier_disagreement').optional(),
    max_tamper_fraction: fraction('max_tamper_fraction').optional(),
    max_hardcode_fraction: fraction('max_hardcode_fraction').optional(),
    /** On eval.kl_k3, else the trainer's policy.kl_k3. */
    max_kl: z.number({ error: 'expected max_kl (a KL in nats)' }).min(0).optional(),
    /**
     * On policy.logprob_mismatch: the mean |log π_server − log π_trainer| per sampled token of the RL
     * update, in nats. It grows when the serving engine and the trainer stop computing the same policy
     * (a stale adapter, a different chat template or precision); the importance correction then does
     * most of the work. Off unless set; 0.1 is a reasonable start (bf16 serving is typically near 0.01–0.05).
     */
    max_logprob_mismatch: z.number({ error: 'expected max_logprob_mismatch (nats per token)' }).min(0, { error: 'expected max_logprob_mismatch of 0 or more' }).optional(),
  },
  {
    error: (issue) => {
      if (issue.code !== 'unrecognized_keys') return undefined;
      return issue.keys
        .map((key) => {
          const suggestion = closestWord(key, monitorKeys);
          return `unknown monitor '${key}' (expected one of: ${monitorKeys.join(', ')})${suggestion ? `; did you mean '${suggestion}'?` : ''}`;
        })
        .join('; ');
    },
  },
);
export type MonitorThresholds = z.output<typeof monitorsSchema>;

export interface IterationMetrics {
  iteration: number;
  metrics: Record<string, number>;
}

export interface MonitorAlert {
  monitor: MonitorName;
  /** Says why, with the numbers. */
  message: string;
  value: number;
  threshold: number;
}

export interface MonitorReport {
  /** The newest iteration (absent for an empty history). */
  iteration?: number;
  /** monitor.* metrics to record for the newest iteration. */
  values: Record<string, number>;
  alerts: MonitorAlert[];
  /** Configured monitors that could not judge the newest iteration, and why. */
  skipped: string[];
}

export function evaluateMonitors(history: readonly IterationMetrics[], thresholds: MonitorThresholds): MonitorReport {
  const ordered = [...history].sort((a, b) => a.iteration - b.iteration);
  const newest = ordered.at(-1);
  if (!newest) return { values: {}, alerts: [], skipped: [] };
  const it = newest.iteration;
  const now = (name: string): number | undefined => finite(newest.metrics[name]);
  const before = (name: string): { iteration: number; value: number } | undefined => {
    for (let i = ordered.length - 2; i >= 0; i--) {
      const value = finite(ordered[i]!.metrics[name]);
      if (value !== undefined) return { iteration: ordered[i]!.iteration, value };
    }
    return undefined;
  };
  const values: Record<string, number> = {};
  const alerts: MonitorAlert[] = [];
  const skipped: string[] = [];

  // Length growth.
  const length = now(monitorInputs.meanLength);
  const previousLength = before(monitorInputs.meanLength);
  const growth = length !== undefined && previousLength !== undefined && previousLength.value > 0 ? (length - previousLength.value) / previousLength.value : undefined;
  if (growth !== undefined) values['monitor.length_growth'] = growth;
  if (thresholds.max_length_growth !== undefined) {
    const limit = thresholds.max_length_growth;
    if (growth === undefined) skipped.push(`max_length_growth: iteration ${it} needs ${monitorInputs.meanLength} in it and in an earlier iteration (above 0)`);
    else if (growth > limit) {
      alerts.push({
        monitor: 'max_length_growth',
        value: growth,
        threshold: limit,
        message: `held-out mean length grew ${percent(growth)} in iteration ${it} (${num(previousLength!.value)} → ${num(length!)} tokens since iteration ${previousLength!.iteration}), above max_length_growth ${percent(limit)}`,
      });
    }
  }

  // Reward up, win rate down.
  const reward = now(monitorInputs.meanReward);
  const sameModelBaseline = now(monitorInputs.previousMeanReward);
  const previousReward = sameModelBaseline !== undefined ? { value: sameModelBaseline, iteration: undefined } : before(monitorInputs.meanReward);
  const gain = reward !== undefined && previousReward !== undefined ? reward - previousReward.value : undefined;
  if (gain !== undefined) values['monitor.reward_gain'] = gain;
  const hacking = thresholds.reward_up_winrate_down === true ? { min_reward_rise: 0, min_win_rate_drop: 0 } : thresholds.reward_up_winrate_down || undefined;
  if (hacking) {
    const winRate = now(monitorInputs.winRate);
    const limit = 0.5 - hacking.min_win_rate_drop;
    if (gain === undefined || winRate === undefined) {
      skipped.push(`reward_up_winrate_down: iteration ${it} needs ${monitorInputs.meanReward} (with ${monitorInputs.previousMeanReward} or an earlier iteration's) and ${monitorInputs.winRate}`);
    } else if (gain > hacking.min_reward_rise && winRate < limit) {
      const baseline =
        previousReward!.iteration === undefined
          ? `${num(previousReward!.value)} for the previous policy, same reward model`
          : `${num(previousReward!.value)} in iteration ${previousReward!.iteration}`;
      alerts.push({
        monitor: 'reward_up_winrate_down',
        value: winRate,
        threshold: limit,
        message:
          `reward rose by ${num(gain)} in iteration ${it} (mean reward ${num(reward!)} vs ${baseline}${hacking.min_reward_rise > 0 ? `; min_reward_rise ${num(hacking.min_reward_rise)}` : ''}) ` +
          `while the rater preferred the previous policy: held-out win rate ${num(winRate)} < ${num(limit)}`,
      });
    }
  }

  // Rater–verifier disagreement.
  const disagreement = now(monitorInputs.disagreement);
  if (thresholds.max_rater_verifier_disagreement !== undefined) {
    const limit = thresholds.max_rater_verifier_disagreement;
    const pairs = now(monitorInputs.disagreementPairs);
    if (disagreement === undefined) skipped.push(`max_rater_verifier_disagreement: iteration ${it} has no ${monitorInputs.disagreement} (no rollout was judged by both)`);
    else if (disagreement > limit) {
      alerts.push({
        monitor: 'max_rater_verifier_disagreement',
        value: disagreement,
        threshold: limit,
        message: `rater and verifier disagreed on ${percent(disagreement)} of the rollouts both judged in iteration ${it}${pairs !== undefined ? ` (${num(Math.round(disagreement * pairs))} of ${num(pairs)})` : ''}, above max_rater_verifier_disagreement ${percent(limit)}`,
      });
    }
  }

  // Verifier flags.
  const verified = now(monitorInputs.verified);
  for (const [monitor, input, flag] of [
    ['max_tamper_fraction', monitorInputs.tamperFraction, 'tamper'],
    ['max_hardcode_fraction', monitorInputs.hardcodeFraction, 'hardcode-suspect'],
  ] as const) {
    const limit = thresholds[monitor];
    if (limit === undefined) continue;
    const share = now(input);
    if (share === undefined) skipped.push(`${monitor}: iteration ${it} has no ${input} (no rollout was verified)`);
    else if (share > limit) {
      alerts.push({
        monitor,
        value: share,
        threshold: limit,
        message: `${percent(share)} of verified rollouts were flagged '${flag}' in iteration ${it}${verified !== undefined ? ` (${num(Math.round(share * verified))} of ${num(verified)})` : ''}, above ${monitor} ${percent(limit)}`,
      });
    }
  }

  // KL to the reference.
  const evalKl = now(monitorInputs.evalKl);
  const kl = evalKl !== undefined ? { value: evalKl, source: monitorInputs.evalKl } : mapDefined(now(monitorInputs.policyKl), (value) => ({ value, source: monitorInputs.policyKl }));
  if (kl) values['monitor.kl'] = kl.value;
  if (thresholds.max_kl !== undefined) {
    const limit = thresholds.max_kl;
    if (!kl) skipped.push(`max_kl: iteration ${it} has neither ${monitorInputs.evalKl} nor ${monitorInputs.policyKl}`);
    else if (kl.value > limit) {
      alerts.push({ monitor: 'max_kl', value: kl.value, threshold: limit, message: `KL to the reference is ${num(kl.value)} (${kl.source}) in iteration ${it}, above max_kl ${num(limit)}` });
    }
  }

  // Serving engine vs trainer log-probs of the sampled tokens.
  if (thresholds.max_logprob_mismatch !== undefined) {
    const limit = thresholds.max_logprob_mismatch;
    const mismatch = now(monitorInputs.logprobMismatch);
    const earlier = before(monitorInputs.logprobMismatch);
    if (mismatch === undefined) skipped.push(`max_logprob_mismatch: iteration ${it} has no ${monitorInputs.logprobMismatch} (its rollouts carry no server log-probs, or the update was not RL)`);
    else if (mismatch > limit) {
      alerts.push({
        monitor: 'max_logprob_mismatch',
        value: mismatch,
        threshold: limit,
        message: `${monitorInputs.logprobMismatch} is ${num(mismatch)} nats per token in iteration ${it}${earlier ? ` (${num(earlier.value)} in iteration ${earlier.iteration})` : ''}: the serving engine's log-probs of the sampled tokens drift from the trainer's, above max_logprob_mismatch ${num(limit)}`,
      });
    }
  }

  values['monitor.alerts'] = alerts.length;
  return { iteration: it, values, alerts, skipped };
}

/** One line for the run's status: what paused it. */
export function pauseReason(report: MonitorReport): string {
  return `paused by monitors after iteration ${report.iteration}: ${report.alerts.map((alert) => `${alert.monitor}: ${alert.message}`).join('; ')}`;
}

/**
 * rollout.flag.* metrics from the verifier flags of one iteration's rollouts; undefined entries are
 * rollouts no verifier judged and do not count. Nothing when no rollout was verified.
 */
export function rolloutFlagMetrics(flags: readonly (readonly string[] | undefined)[]): Record<string, number> {
  const verified = flags.filter((entry) => entry !== undefined);
  if (verified.length === 0) return {};
  const share = (flag: string) => verified.filter((entry) => entry.includes(flag)).length / verified.length;
  return {
    [monitorInputs.verified]: verified.length,
    [monitorInputs.tamperFraction]: share('tamper'),
    [monitorInputs.hardcodeFraction]: share('hardcode-suspect'),
  };
}

/**
 * rollout.rater_verifier_disagreement over rollouts with both a rater score (normalised, [-1, 1]) and a
 * verifier reward ([0, 1]): they disagree when the verifier passes it (reward ≥ 0.5) and the rater
 * scores it at or below the midpoint (≤ 0), or the verifier fails it and the rater scores it above.
 * Nothing when no rollout has both.
 */
export function raterVerifierDisagreement(rollouts: readonly { rater?: number | null; verifier?: number | null }[]): Record<string, number> {
  const both = rollouts.filter((r): r is { rater: number; verifier: number } => typeof r.rater === 'number' && typeof r.verifier === 'number');
  if (both.length === 0) return {};
  const disagreeing = both.filter((r) => r.verifier >= 0.5 !== r.rater > 0).length;
  return { [monitorInputs.disagreement]: disagreeing / both.length, [monitorInputs.disagreementPairs]: both.length };
}

function finite(value: number | undefined): number | undefined {
  return value !== undefined && Number.isFinite(value) ? value : undefined;
}

function mapDefined<T, U>(value: T | undefined, map: (value: T) => U): U | undefined {
  return value === undefined ? undefined : map(value);
}

/** A number as people read it: up to 3 significant digits, no trailing zeros. */
function num(value: number): string {
  return Number.isInteger(value) ? String(value) : String(Number(value.toPrecision(3)));
}

function percent(value: number): string {
  return `${num(value * 100)}%`;
}
