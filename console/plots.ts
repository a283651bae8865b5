// The run page's plots: which recorded metrics are drawn together (win rate with its interval,
// reward, KL k1/k3, mean length), one plot for each other metric, and the monitor alerts to mark on
// them. static/run-plots.js draws each plot from the spec this builds (a data attribute, no inline script).
//
// Alerts: checkMonitors (activities/loop.ts) records monitor.alerts (how many fired) for every
// iteration, not which ones. Which monitors fired is recomputed here with the same pure function
// (core/monitors.ts evaluateMonitors) over the run's metrics up to that iteration and the thresholds
// in the run's stored config; where that cannot name them, the mark says only how many fired.
import { evaluateMonitors, monitorsSchema, type IterationMetrics } from '../core/monitors.js';

export interface MetricRow {
  iteration: number;
  name: string;
  value: number;
}

export interface PlotSeries {
  /** The metric's name (metrics.name). */
  name: string;
  label: string;
  /** The lower or upper edge of the band around the plot's first series. */
  band?: 'low' | 'high';
}

export interface AlertMark {
  iteration: number;
  /** monitor.alerts of the iteration. */
  count: number;
  /** The monitors that fired and why; empty where they could not be recomputed. */
  alerts: { monitor: string; message: string }[];
  /** What the plots say at the mark. */
  label: string;
}

export interface PlotSpec {
  id: string;
  title: string;
  series: PlotSeries[];
  /** The run's iterations (x). */
  x: number[];
  /** One row per series, aligned with x; null where the iteration lacks the metric. */
  values: (number | null)[][];
  alerts: { iteration: number; label: string }[];
}

/** Plots of metrics that belong together, in page order; a plot is drawn when one of its metrics was recorded. */
const groups: { id: string; title: string; series: PlotSeries[] }[] = [
  {
    id: 'win-rate',
    title: 'win rate vs previous policy (95% interval)',
    series: [
      { name: 'eval.win_rate', label: 'win rate' },
      { name: 'eval.win_rate_low', label: 'interval low', band: 'low' },
      { name: 'eval.win_rate_high', label: 'interval high', band: 'high' },
      { name: 'eval.win_rate_lc', label: 'length-controlled win rate' },
    ],
  },
  {
    id: 'reward',
    title: 'reward',
    series: [
      { name: 'eval.mean_reward', label: 'held-out mean reward' },
      { name: 'eval.mean_reward_previous', label: 'previous policy, same reward model' },
      { name: 'policy.reward_mean', label: 'rollouts mean reward (trainer)' },
      { name: 'policy.shaped_reward_mean', label: 'shaped rollout reward (trainer)' },
    ],
  },
  {
    id: 'kl',
    title: 'KL to the reference',
    series: [
      { name: 'eval.kl_k1', label: 'k1 (policy samples)' },
      { name: 'eval.kl_k3', label: 'k3 (policy samples)' },
      { name: 'policy.kl_k1', label: 'k1 (trainer)' },
      { name: 'policy.kl_k3', label: 'k3 (trainer)' },
    ],
  },
  { id: 'length', title: 'mean length (tokens)', series: [{ name: 'eval.mean_length', label: 'held-out mean length' }] },
];

/** The metric families the training loop records per iteration (eval, trainer, rollouts, monitors). */
const loopPrefixes = ['eval.', 'policy.', 'reward.', 'rollout.', 'monitor.'];

/** Marked on the plots rather than drawn as a line. */
const alertCount = 'monitor.alerts';

/** The iterations whose monitors raised alerts, with the monitors' names and messages where they can be recomputed. */
export function alertMarks(rows: readonly MetricRow[], config: unknown): AlertMark[] {
  const byIteration = new Map<number, Record<string, number>>();
  for (const row of rows) byIteration.set(row.iteration, { ...byIteration.get(row.iteration), [row.name]: row.value });
  const monitors = (config as { loop?: { monitors?: unknown } } | null)?.loop?.monitors;
  const thresholds = monitorsSchema.safeParse(monitors ?? {});
  const history: IterationMetrics[] = [...byIteration].map(([iteration, metrics]) => ({ iteration, metrics })).sort((a, b) => a.iteration - b.iteration);
  const marks: AlertMark[] = [];
  for (const { iteration, metrics } of history) {
    const count = metrics[alertCount];
    if (count === undefined || !(count > 0)) continue;
    const alerts = thresholds.success ? evaluateMonitors(history.filter((h) => h.iteration <= iteration), thresholds.data).alerts.map((a) => ({ monitor: a.monitor, message: a.message })) : [];
    const label = alerts.length > 0 ? alerts.map((a) => a.monitor).join(', ') : `${count} alert${count === 1 ? '' : 's'}`;
    marks.push({ iteration, count, alerts, label });
  }
  return marks;
}

/** The run's plots: the groups first, then one plot per other metric (monitor.alerts is the marks). */
export function plotSpecs(rows: readonly MetricRow[], marks: readonly AlertMark[]): PlotSpec[] {
  const x = [...new Set(rows.map((r) => r.iteration))].sort((a, b) => a - b);
  const recorded = new Map<string, Map<number, number>>();
  for (const row of rows) {
    if (!recorded.has(row.name)) recorded.set(row.name, new Map());
    recorded.get(row.name)!.set(row.iteration, row.value);
  }
  const alerts = marks.map((m) => ({ iteration: m.iteration, label: m.label }));
  const spec = (id: string, title: string, series: PlotSeries[]): PlotSpec => ({ id, title, series, x, values: series.map((s) => x.map((i) => recorded.get(s.name)?.get(i) ?? null)), alerts });
  const grouped = new Set(groups.flatMap((g) => g.series.map((s) => s.name)));
  const plots: PlotSpec[] = [];
  for (const group of groups) {
    const present = group.series.filter((s) => recorded.has(s.name));
    if (present.length === 0) continue;
    // A band needs both edges; one edge alone is drawn as a plain line.
    const edges = present.filter((s) => s.band).length;
    plots.push(spec(group.id, group.title, edges === 2 ? present : present.map(({ name, label }) => ({ name, label }))));
  }
  for (const name of [...recorded.keys()].sort()) {
    if (grouped.has(name) || name === alertCount) continue;
    // Alerts are marked on the training loop's metrics, not on the pipeline's stage counters.
    const loopMetric = loopPrefixes.some((prefix) => name.startsWith(prefix));
    plots.push({ ...spec(`metric-${name}`, name, [{ name, label: name }]), alerts: loopMetric ? alerts : [] });
  }
  return plots;
}
