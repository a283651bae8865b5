import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { evaluateMonitors, monitorsSchema, pauseReason, raterVerifierDisagreement, rolloutFlagMetrics, type IterationMetrics, type MonitorThresholds } from '../../core/monitors.js';

const thresholds = (input: unknown): MonitorThresholds => monitorsSchema.parse(input);
const history = (...iterations: Record<string, number>[]): IterationMetrics[] => iterations.map((metrics, iteration) => ({ iteration, metrics }));
const only = (report: ReturnType<typeof evaluateMonitors>) => {
  assert.equal(report.alerts.length, 1, JSON.stringify(report.alerts));
  return report.alerts[0]!;
};

describe('monitors config', () => {
  it('all thresholds optional; unknown names get a suggestion', () => {
    assert.deepEqual(thresholds({}), {});
    const parsed = monitorsSchema.safeParse({ max_tamper_fracton: 0.1 });
    assert.equal(parsed.success, false);
    assert.match(parsed.error.issues[0]!.message, /unknown monitor 'max_tamper_fracton'.*did you mean 'max_tamper_fraction'\?/);
  });

  it('fractions stay in [0, 1]; the win-rate drop in [0, 0.5]', () => {
    assert.match(monitorsSchema.safeParse({ max_tamper_fraction: 1.5 }).error!.issues[0]!.message, /from 0 to 1/);
    assert.equal(monitorsSchema.safeParse({ reward_up_winrate_down: { min_win_rate_drop: 0.6 } }).success, false);
    assert.deepEqual(thresholds({ reward_up_winrate_down: {} }).reward_up_winrate_down, { min_reward_rise: 0, min_win_rate_drop: 0 });
  });
});

describe('evaluateMonitors', () => {
  it('an empty history judges nothing', () => {
    assert.deepEqual(evaluateMonitors([], thresholds({ max_kl: 0.1 })), { values: {}, alerts: [], skipped: [] });
  });

  it('length growth: fires above the threshold, with both lengths and the share', () => {
    const grown = history({ 'eval.mean_length': 80 }, { 'eval.mean_length': 130 });
    const alert = only(evaluateMonitors(grown, thresholds({ max_length_growth: 0.5 })));
    assert.equal(alert.monitor, 'max_length_growth');
    assert.equal(alert.value, 0.625);
    assert.equal(alert.threshold, 0.5);
    assert.match(alert.message, /grew 62\.5% in iteration 1 \(80 → 130 tokens since iteration 0\), above max_length_growth 50%/);
    const calm = evaluateMonitors(grown, thresholds({ max_length_growth: 0.7 }));
    assert.deepEqual(calm.alerts, []);
    assert.equal(calm.values['monitor.length_growth'], 0.625);
    assert.equal(calm.values['monitor.alerts'], 0);
  });

  it('length growth: compares with the newest earlier iteration that measured it, in iteration order', () => {
    const shuffled: IterationMetrics[] = [
      { iteration: 3, metrics: { 'eval.mean_length': 120 } },
      { iteration: 0, metrics: { 'eval.mean_length': 10 } },
      { iteration: 2, metrics: {} },
      { iteration: 1, metrics: { 'eval.mean_length': 100 } },
    ];
    const report = evaluateMonitors(shuffled, thresholds({ max_length_growth: 0.5 }));
    assert.equal(report.iteration, 3);
    assert.equal(report.values['monitor.length_growth'], 0.2);
    assert.deepEqual(report.alerts, []);
  });

  it('length growth: the first iteration is skipped, and says so', () => {
    const report = evaluateMonitors(history({ 'eval.mean_length': 50 }), thresholds({ max_length_growth: 0.1 }));
    assert.deepEqual(report.alerts, []);
    assert.equal(report.values['monitor.length_growth'], undefined);
    assert.match(report.skipped[0]!, /^max_length_growth: iteration 0 needs eval\.mean_length/);
  });

  it('reward up while the rater prefers the previous policy: same-iteration baseline first', () => {
    const hacked = history({ 'eval.mean_reward': 0.2, 'eval.win_rate': 0.6 }, { 'eval.mean_reward': 1.3, 'eval.mean_reward_previous': 0.88, 'eval.win_rate': 0.38 });
    const alert = only(evaluateMonitors(hacked, thresholds({ reward_up_winrate_down: true })));
    assert.equal(alert.monitor, 'reward_up_winrate_down');
    assert.equal(alert.value, 0.38);
    assert.equal(alert.threshold, 0.5);
    assert.match(alert.message, /reward rose by 0\.42 in iteration 1 \(mean reward 1\.3 vs 0\.88 for the previous policy, same reward model\)/);
    assert.match(alert.message, /held-out win rate 0\.38 < 0\.5/);
  });

  it('reward up, win rate down: falls back to the previous iteration, honours the deltas', () => {
    const drift = history({ 'eval.mean_reward': 1 }, { 'eval.mean_reward': 1.5, 'eval.win_rate': 0.45 });
    assert.match(only(evaluateMonitors(drift, thresholds({ reward_up_winrate_down: true }))).message, /vs 1 in iteration 0/);
    assert.equal(evaluateMonitors(drift, thresholds({ reward_up_winrate_down: true })).values['monitor.reward_gain'], 0.5);
    // The rise must exceed min_reward_rise, and the win rate fall below 0.5 − min_win_rate_drop.
    assert.deepEqual(evaluateMonitors(drift, thresholds({ reward_up_winrate_down: { min_reward_rise: 0.5 } })).alerts, []);
    assert.deepEqual(evaluateMonitors(drift, thresholds({ reward_up_winrate_down: { min_win_rate_drop: 0.05 } })).alerts, []);
    const alert = only(evaluateMonitors(drift, thresholds({ reward_up_winrate_down: { min_reward_rise: 0.4, min_win_rate_drop: 0.04 } })));
    assert.ok(Math.abs(alert.threshold - 0.46) < 1e-12);
    assert.match(alert.message, /min_reward_rise 0\.4/);
  });

  it('reward up, win rate down: quiet when either side holds, off when false', () => {
    const improving = history({ 'eval.mean_reward': 1 }, { 'eval.mean_reward': 1.5, 'eval.win_rate': 0.7 });
    assert.deepEqual(evaluateMonitors(improving, thresholds({ reward_up_winrate_down: true })).alerts, []);
    const worse = history({ 'eval.mean_reward': 1 }, { 'eval.mean_reward': 0.5, 'eval.win_rate': 0.3 });
    assert.deepEqual(evaluateMonitors(worse, thresholds({ reward_up_winrate_down: true })).alerts, []);
    const hacked = history({ 'eval.mean_reward': 1 }, { 'eval.mean_reward': 2, 'eval.win_rate': 0.1 });
    const off = evaluateMonitors(hacked, thresholds({ reward_up_winrate_down: false }));
    assert.deepEqual([off.alerts, off.skipped], [[], []]);
    const noWinRate = evaluateMonitors(history({ 'eval.mean_reward': 1 }, { 'eval.mean_reward': 2 }), thresholds({ reward_up_winrate_down: true }));
    assert.match(noWinRate.skipped[0]!, /eval\.win_rate/);
  });

  it('rater–verifier disagreement above the rate fires with the counts', () => {
    const metrics = history({ 'rollout.rater_verifier_disagreement': 0.25, 'rollout.rater_verifier_pairs': 40 });
    const alert = only(evaluateMonitors(metrics, thresholds({ max_rater_verifier_disagreement: 0.15 })));
    assert.equal(alert.monitor, 'max_rater_verifier_disagreement');
    assert.match(alert.message, /disagreed on 25% of the rollouts both judged in iteration 0 \(10 of 40\), above max_rater_verifier_disagreement 15%/);
    assert.deepEqual(evaluateMonitors(metrics, thresholds({ max_rater_verifier_disagreement: 0.25 })).alerts, [], 'at the threshold is fine');
  });

  it('tamper and hardcode fractions fire separately; 0 means any flag pauses', () => {
    const metrics = history({ 'rollout.verified': 200, 'rollout.flag.tamper_fraction': 0.005, 'rollout.flag.hardcode_fraction': 0.1 });
    const tamper = only(evaluateMonitors(metrics, thresholds({ max_tamper_fraction: 0, max_hardcode_fraction: 0.2 })));
    assert.equal(tamper.monitor, 'max_tamper_fraction');
    assert.match(tamper.message, /0\.5% of verified rollouts were flagged 'tamper' in iteration 0 \(1 of 200\), above max_tamper_fraction 0%/);
    const hardcode = only(evaluateMonitors(metrics, thresholds({ max_tamper_fraction: 0.01, max_hardcode_fraction: 0.05 })));
    assert.equal(hardcode.monitor, 'max_hardcode_fraction');
    assert.match(hardcode.message, /10% of verified rollouts were flagged 'hardcode-suspect' .*\(20 of 200\), above max_hardcode_fraction 5%/);
    const unverified = evaluateMonitors(history({}), thresholds({ max_tamper_fraction: 0 }));
    assert.deepEqual(unverified.alerts, []);
    assert.match(unverified.skipped[0]!, /no rollout\.flag\.tamper_fraction/);
  });

  it('KL above the bound: eval.kl_k3 first, else the trainer’s policy.kl_k3', () => {
    const both = history({ 'eval.kl_k3': 0.31, 'policy.kl_k3': 0.01 });
    const alert = only(evaluateMonitors(both, thresholds({ max_kl: 0.2 })));
    assert.match(alert.message, /KL to the reference is 0\.31 \(eval\.kl_k3\) in iteration 0, above max_kl 0\.2/);
    assert.equal(evaluateMonitors(both, thresholds({})).values['monitor.kl'], 0.31);
    const trainerOnly = history({ 'policy.kl_k3': 0.25 });
    assert.match(only(evaluateMonitors(trainerOnly, thresholds({ max_kl: 0.2 }))).message, /0\.25 \(policy\.kl_k3\)/);
    assert.deepEqual(evaluateMonitors(history({ 'eval.kl_k3': 0.19 }), thresholds({ max_kl: 0.2 })).alerts, []);
  });

  it('log-prob mismatch: fires above max_logprob_mismatch, naming the metric, value, threshold and the earlier value', () => {
    const drifting = history({ 'policy.logprob_mismatch': 0.02 }, { 'policy.logprob_mismatch': 0.35 });
    const alert = only(evaluateMonitors(drifting, thresholds({ max_logprob_mismatch: 0.1 })));
    assert.equal(alert.monitor, 'max_logprob_mismatch');
    assert.equal(alert.value, 0.35);
    assert.equal(alert.threshold, 0.1);
    assert.match(alert.message, /policy\.logprob_mismatch is 0\.35 nats per token in iteration 1 \(0\.02 in iteration 0\).*above max_logprob_mismatch 0\.1/);
    const report = evaluateMonitors(drifting, thresholds({ max_logprob_mismatch: 0.1 }));
    assert.match(pauseReason(report), /^paused by monitors after iteration 1: max_logprob_mismatch: policy\.logprob_mismatch is 0\.35/);
    // At the threshold, and without one (off by default), nothing fires.
    assert.deepEqual(evaluateMonitors(history({ 'policy.logprob_mismatch': 0.1 }), thresholds({ max_logprob_mismatch: 0.1 })).alerts, []);
    assert.deepEqual(evaluateMonitors(drifting, thresholds({})).alerts, []);
  });

  it('log-prob mismatch: an iteration whose rollouts carried no server log-probs is skipped, and says so', () => {
    const report = evaluateMonitors(history({ 'policy.kl_k3': 0.01 }), thresholds({ max_logprob_mismatch: 0.1 }));
    assert.deepEqual(report.alerts, []);
    assert.match(report.skipped.join('\n'), /max_logprob_mismatch: iteration 0 has no policy\.logprob_mismatch/);
    assert.match(monitorsSchema.safeParse({ max_logprob_mismatch: -1 }).error!.issues[0]!.message, /max_logprob_mismatch of 0 or more/);
  });

  it('judges the newest iteration only: an older breach does not fire again', () => {
    const recovered = history({ 'eval.kl_k3': 0.5, 'rollout.flag.tamper_fraction': 0.3 }, { 'eval.kl_k3': 0.05, 'rollout.flag.tamper_fraction': 0 });
    const report = evaluateMonitors(recovered, thresholds({ max_kl: 0.2, max_tamper_fraction: 0.01 }));
    assert.deepEqual(report.alerts, []);
    assert.equal(report.iteration, 1);
  });

  it('several alerts at once, counted and joined into the pause reason', () => {
    const bad = history({ 'eval.mean_length': 100 }, { 'eval.mean_length': 300, 'eval.kl_k3': 1 });
    const report = evaluateMonitors(bad, thresholds({ max_length_growth: 1, max_kl: 0.5 }));
    assert.deepEqual(report.alerts.map((alert) => alert.monitor), ['max_length_growth', 'max_kl']);
    assert.equal(report.values['monitor.alerts'], 2);
    assert.match(pauseReason(report), /^paused by monitors after iteration 1: max_length_growth: .*200%.*; max_kl: .*KL to the reference is 1/);
  });
});

describe('rollout metrics for the monitors', () => {
  it('flag fractions count verified rollouts only', () => {
    assert.deepEqual(rolloutFlagMetrics([['tamper'], [], undefined, ['hardcode-suspect', 'multiple-answers'], []]), {
      'rollout.verified': 4,
      'rollout.flag.tamper_fraction': 0.25,
      'rollout.flag.hardcode_fraction': 0.25,
    });
    assert.deepEqual(rolloutFlagMetrics([undefined, undefined]), {});
  });

  it('disagreement: verifier pass (≥ 0.5) against rater above the midpoint (> 0)', () => {
    const rollouts = [
      { rater: 0.8, verifier: 1 }, // agree: both pass
      { rater: -0.6, verifier: 0 }, // agree: both fail
      { rater: 0.9, verifier: 0 }, // rater likes a wrong answer
      { rater: 0, verifier: 1 }, // midpoint counts as not passing
      { rater: 0.5 }, // no verifier: not counted
      { verifier: 1, rater: null },
    ];
    assert.deepEqual(raterVerifierDisagreement(rollouts), { 'rollout.rater_verifier_disagreement': 0.5, 'rollout.rater_verifier_pairs': 4 });
    assert.deepEqual(raterVerifierDisagreement([{ rater: 1 }]), {});
  });
});
