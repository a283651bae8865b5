// The run page's plots: one uPlot chart per .plot element, from its data-plot attribute (built by
// console/plots.ts): iterations along x, one line per series, the interval's two edges as a shaded
// band, and each monitor alert as a dashed red vertical line plus a point whose legend entry names
// the monitors that fired. The charts are kept in window.tenetPlots (the browser tests read them).
/* global uPlot */
const colours = ['#1f6feb', '#d97706', '#059669', '#7c3aed'];
const alertColour = '#d1242f';
const bandFill = 'rgba(31, 111, 235, 0.18)';
const charts = [];
window.tenetPlots = charts;

for (const element of document.querySelectorAll('.plot')) {
  const spec = JSON.parse(element.dataset.plot);
  const series = [{ label: 'iteration' }];
  const data = [spec.x];
  const edges = {};
  let colour = 0;
  spec.series.forEach((s, i) => {
    if (s.band) {
      edges[s.band] = series.length;
      series.push({ label: s.label, stroke: 'rgba(31, 111, 235, 0.45)', width: 1, dash: [4, 4], points: { show: false }, spanGaps: true });
    } else {
      series.push({ label: s.label, stroke: colours[colour++ % colours.length], width: 2, points: { show: true, size: 6 }, spanGaps: true });
    }
    data.push(spec.values[i]);
  });
  const marked = new Map(spec.alerts.map((a) => [a.iteration, a.label]));
  if (spec.alerts.length > 0) {
    series.push({
      label: `monitor alerts (${spec.alerts.map((a) => `iteration ${a.iteration}: ${a.label}`).join('; ')})`,
      scale: 'alert',
      stroke: alertColour,
      fill: alertColour,
      paths: () => null,
      points: { show: true, size: 9, stroke: alertColour, fill: alertColour },
      value: (u, raw, seriesIndex, index) => (index === null || index === undefined ? '' : (marked.get(spec.x[index]) ?? '')),
    });
    data.push(spec.x.map((iteration) => (marked.has(iteration) ? 1 : null)));
  }
  const drawAlerts = (u) => {
    const { ctx, bbox } = u;
    ctx.save();
    ctx.strokeStyle = alertColour;
    ctx.lineWidth = 2 * devicePixelRatio;
    ctx.setLineDash([6 * devicePixelRatio, 4 * devicePixelRatio]);
    for (const alert of spec.alerts) {
      const x = Math.round(u.valToPos(alert.iteration, 'x', true));
      ctx.beginPath();
      ctx.moveTo(x, bbox.top);
      ctx.lineTo(x, bbox.top + bbox.height);
      ctx.stroke();
    }
    ctx.restore();
  };
  const options = {
    title: spec.title,
    width: 420,
    height: 240,
    scales: { x: { time: false }, alert: { range: [0, 1.08] } },
    series,
    bands: edges.low && edges.high ? [{ series: [edges.high, edges.low], fill: bandFill }] : [],
    // Whole iterations only along x.
    axes: [{ label: 'iteration', incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000] }, {}],
    hooks: { draw: [drawAlerts] },
  };
  const chart = new uPlot(options, data, element);
  charts.push({ id: spec.id, chart });
  element.dataset.drawn = String(spec.series.length);
}
