// The run page's plots: one uPlot chart per metric, iterations along x, from each .plot element's
// data-points attribute ([[iteration, value], ...]).
/* global uPlot */
for (const element of document.querySelectorAll('.plot')) {
  const points = JSON.parse(element.dataset.points);
  const name = element.dataset.name;
  const options = {
    title: name,
    width: 420,
    height: 220,
    scales: { x: { time: false } },
    series: [{ label: 'iteration' }, { label: name, stroke: '#1f6feb', width: 2, points: { show: true, size: 6 } }],
    axes: [{ label: 'iteration' }, {}],
  };
  new uPlot(options, [points.map((p) => p[0]), points.map((p) => p[1])], element);
}
