// The runs page's live cells: every 2 s, each run's status, stage progress and why it waits, from
// /runs/live.json. Text only (textContent), so nothing from the server is read as markup.
const rows = new Map([...document.querySelectorAll('table.runs tr[data-run]')].map((row) => [row.dataset.run, row]));

function fill(cell, lines, className) {
  cell.replaceChildren(
    ...lines.map((line) => {
      const element = document.createElement(className === 'stage' ? 'span' : 'div');
      element.className = className;
      element.textContent = line;
      return element;
    }),
  );
}

async function refresh() {
  const response = await fetch('/runs/live.json', { headers: { accept: 'application/json' }, credentials: 'same-origin' });
  if (!response.ok) return;
  const { runs } = await response.json();
  for (const run of runs) {
    const row = rows.get(String(run.id));
    if (!row) continue;
    const status = row.querySelector('.status');
    if (status.textContent !== run.status) {
      // Which buttons fit depends on the status (pause or resume; none once finished): the server draws them again.
      window.location.reload();
      return;
    }
    fill(row.querySelector('.progress'), run.stages.map((s) => `${s.stage} ${s.done}/${s.total}${s.failed ? ` (${s.failed} failed)` : ''}`), 'stage');
    fill(row.querySelector('.pending'), [...run.pending, ...(run.note ? [run.note] : [])], 'waiting');
  }
  document.body.dataset.refreshed = String(Number(document.body.dataset.refreshed ?? 0) + 1);
}

if (rows.size > 0) {
  setInterval(() => refresh().catch(() => undefined), 2000);
}
