// Compare: evaluated runs side by side (and, within each, base / few-shot / fine-tuned), every score
// with its interval; each later run against the first: the examples it fixed and broke.

import {$, $$, api, errorBox, html, interval, num, raw} from './lib.js';
import {intervalChart} from './charts.js';
import {SYSTEM_CLASS} from './evalview.js';

function rowsOf(result, showBaselines) {
  const rows = [], seen = new Set();
  const several = result.runs.length > 1;
  for (const run of result.runs) {
    const baselineKey = `${run.base_model} ${run.test_sha256}`;
    for (const system of run.systems.map((s) => s.name)) {
      const baseline = system !== 'fine-tuned';
      // the base answers the same whichever run it came with: list it once per test file
      if (baseline && (!showBaselines || (several && seen.has(`${baselineKey} ${system}`)))) continue;
      seen.add(`${baselineKey} ${system}`);
      const label = several ? (baseline ? `${system} (${run.base_model})` : run.name) : system;
      rows.push({label, run, system, cls: SYSTEM_CLASS[system] || ''});
    }
  }
  return rows;
}

function pairView(pair) {
  if (pair.error) return html`<div class="pair"><h3>${pair.b} against ${pair.a}</h3><div class="error-box">${pair.error}</div></div>`;
  const list = (items, title) => html`<details ${items.length && items.length <= 10 ? 'open' : ''}><summary>${title}: ${items.length}</summary>
    <ul class="lines">${items.map((i) => html`<li>${i.question}<br><small class="muted">reference</small> ${i.reference}
      <br><small class="muted">${pair.a}</small> ${i.answer_a}<br><small class="muted">${pair.b}</small> ${i.answer_b}</li>`)}</ul></details>`;
  return html`<div class="pair"><h3>${pair.b} against ${pair.a}</h3>
    <p>${pair.shared} shared test examples: exact match <b>${num(pair.exact_match_a)}</b> → <b>${num(pair.exact_match_b)}</b>;
      ${pair.fixed.length} fixed, ${pair.broken.length} broken (exact McNemar p = ${pair.p_value}${pair.p_value < 0.05 ? ', a real difference at the 5 % level' : ', could be chance'}).</p>
    ${list(pair.fixed, 'fixed (wrong before, exact now)')}${list(pair.broken, 'broken (exact before, wrong now)')}</div>`;
}

function results(result, metric, showBaselines) {
  const rows = rowsOf(result, showBaselines);
  const columns = [...new Map(result.runs.flatMap((r) => r.columns).map((c) => [c.key, c])).values()];
  const points = rows.filter((r) => r.run.intervals[r.system]?.[metric])
    .map((r) => ({label: r.label, cls: r.cls, ...r.run.intervals[r.system][metric]}));
  const tests = [...new Set(result.runs.map((r) => r.test_file))];
  return html`<p>Test file${tests.length > 1 ? 's' : ''}: <b>${tests.join(', ')}</b>.</p>
    <div class="chart-box">${raw(intervalChart(points, {xLabel: columns.find((c) => c.key === metric)?.title || metric}))}</div>
    <div class="table-wrap"><table class="scores"><thead><tr><th>system</th>${columns.map((c) => html`<th>${c.title}</th>`)}<th>examples</th></tr></thead>
    <tbody>${rows.map((r) => html`<tr><th>${r.label}</th>${columns.map((c) => html`<td class="num">${interval(r.run.intervals[r.system]?.[c.key])}</td>`)}
      <td class="num">${r.run.summary[r.system]?.n}</td></tr>`)}</tbody></table></div>
    ${result.pairs.map(pairView)}`;
}

export async function comparePage(main, ctx) {
  // each id is URI-encoded on its own, so a ',' inside one (a folder name) stays inside it
  const query = (location.hash.split('?')[1] || '').split('&').find((p) => p.startsWith('ids=')) || 'ids=';
  const chosen = query.slice(4).split(',').filter(Boolean).map(decodeURIComponent);
  const {runs} = await api('/api/runs');
  const evaluated = runs.filter((r) => r.eval);
  main.innerHTML = html`<section class="card"><h1>Compare</h1>
    <p class="muted">Pick evaluated runs; the first one picked is the one the others are compared against.
      One run alone shows its base, few-shot and fine-tuned systems side by side.</p>
    ${evaluated.length ? '' : html`<p>No run has been evaluated yet: open a finished run and press <b>Evaluate fine-tuned vs base</b>.</p>`}
    <div class="picks">${evaluated.map((r) => html`<label class="pick-run"><input type="checkbox" value="${r.id}" ${chosen.includes(r.id) ? 'checked' : ''}>
      ${r.name} <small class="muted">${r.eval.test_file}</small></label>`)}</div>
    <div class="row"><label>metric <select id="metric"></select></label>
      <label><input type="checkbox" id="baselines" checked> show base and few-shot</label></div>
  </section><section class="card" id="result" hidden></section>`;
  let result = null;
  const order = chosen.filter((id) => evaluated.some((r) => r.id === id));

  async function load() {
    const box = $('#result');
    history.replaceState(null, '', `#/compare?ids=${order.map(encodeURIComponent).join(',')}`);
    if (!order.length) { box.hidden = true; return; }
    box.hidden = false;
    try {
      result = await api(`/api/compare?${order.map((id) => `id=${encodeURIComponent(id)}`).join('&')}`);
    } catch (error) { box.innerHTML = errorBox(error); return; }
    const metric = $('#metric');
    const keep = metric.value || 'exact_match';
    const columns = [...new Map(result.runs.flatMap((r) => r.columns).map((c) => [c.key, c])).values()];
    metric.innerHTML = html`${columns.map((c) => html`<option value="${c.key}" ${c.key === keep ? 'selected' : ''}>${c.title}</option>`)}`;
    draw();
  }
  function draw() { if (result) $('#result').innerHTML = results(result, $('#metric').value, $('#baselines').checked); }

  $$('.pick-run input').forEach((box) => box.addEventListener('change', () => {
    const at = order.indexOf(box.value);
    if (box.checked && at < 0) order.push(box.value);
    if (!box.checked && at >= 0) order.splice(at, 1);
    load();
  }));
  $('#metric').onchange = draw;
  $('#baselines').onchange = draw;
  await load();
}
