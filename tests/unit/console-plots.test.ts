// The run page's plot specs (console/plots.ts): which metrics share a plot, when the interval is a
// band, and which monitors an iteration's alerts name, recomputed from the run's config.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { alertMarks, plotSpecs, type MetricRow } from '../../console/plots.js';

const rows = (byIteration: Record<string, number>[]): MetricRow[] => byIteration.flatMap((values, iteration) => Object.entries(values).map(([name, value]) => ({ iteration, name, value })));

describe('run page plots', () => {
  const history = rows([
    { 'eval.kl_k3': 0.01, 'monitor.alerts': 0, 'label.done': 4 },
    { 'eval.kl_k3': 0.3, 'monitor.alerts': 1, 'eval.win_rate': 0.6, 'eval.win_rate_low': 0.5 },
  ]);

  it('names the monitors that fired from the thresholds in the run config', () => {
    const marks = alertMarks(history, { loop: { monitors: { max_kl: 0.2 } } });
    assert.deepEqual(marks.map((m) => [m.iteration, m.count, m.label]), [[1, 1, 'max_kl']]);
    assert.match(marks[0]!.alerts[0]!.message, /KL to the reference is 0\.3 \(eval\.kl_k3\) in iteration 1, above max_kl 0\.2/);
  });

  it('says only how many fired where the config cannot name them', () => {
    for (const config of [null, {}, { loop: { monitors: { max_kl: 'high' } } }, { loop: { monitors: { max_length_growth: 5 } } }]) {
      assert.deepEqual(alertMarks(history, config).map((m) => [m.iteration, m.label, m.alerts.length]), [[1, '1 alert', 0]]);
    }
  });

  it('groups the loop metrics, draws a band only with both edges, and marks alerts on loop metrics only', () => {
    const marks = alertMarks(history, {});
    const specs = plotSpecs(history, marks);
    assert.deepEqual(specs.map((s) => s.id), ['win-rate', 'kl', 'metric-label.done']);
    const winRate = specs[0]!;
    assert.deepEqual(winRate.series, [{ name: 'eval.win_rate', label: 'win rate' }, { name: 'eval.win_rate_low', label: 'interval low' }]);
    assert.deepEqual(winRate.x, [0, 1]);
    assert.deepEqual(winRate.values, [[null, 0.6], [null, 0.5]]);
    assert.deepEqual(winRate.alerts, [{ iteration: 1, label: '1 alert' }]);
    assert.deepEqual(specs[2]!.alerts, []);
    const withBand = plotSpecs([...history, { iteration: 1, name: 'eval.win_rate_high', value: 0.7 }], marks)[0]!;
    assert.deepEqual(withBand.series.map((s) => s.band), [undefined, 'low', 'high']);
  });
});
