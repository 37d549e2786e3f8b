// Data: `buxiban data check` in the browser: problems with their lines, warnings, token statistics,
// a histogram of tokens per example, and the first examples with the trained tokens highlighted.

import {$, api, count, errorBox, html, params, raw, uploadForm} from './lib.js';
import {histogram} from './charts.js';

function tiles(stats) {
  const t = stats.tokens_per_example;
  const items = [['examples', count(stats.examples)]];
  if (t) {
    items.push(['tokens per example', html`${t.p50} <small class="muted">median · p95 ${t.p95} · max ${t.max}</small>`],
      ['total tokens', html`${count(stats.total_tokens)} <small class="muted">${count(stats.total_trained_tokens)} trained (${Math.round(100 * stats.trained_share)} %)</small>`]);
  }
  if ('over_max_length' in stats) items.push([`over ${stats.max_length} tokens`, count(stats.over_max_length)]);
  if (stats.duplicates) items.push(['duplicates', `${stats.duplicates.exact} exact, ${stats.duplicates.near} near`]);
  if (stats.personal_data) {
    const found = Object.entries(stats.personal_data).map(([k, n]) => `${n} ${k}`).join(', ');
    items.push(['personal data', found || 'none found']);
  }
  return html`<div class="tiles">${items.map(([k, v]) => html`<div class="tile"><span>${k}</span><b>${v}</b></div>`)}</div>`;
}

function problems(report) {
  if (!report.problems.length) return '';
  return html`<h3>Problems</h3><div class="table-wrap"><table><thead><tr><th>where</th><th>field</th><th>problem</th><th>fix</th></tr></thead>
    <tbody>${report.problems.map((p) => html`<tr><td><code>${p.where}</code></td><td>${p.field}</td><td>${p.message}</td><td>${p.fix}</td></tr>`)}</tbody></table></div>`;
}

function preview(examples) {
  if (!examples.length) return '';
  return html`<h3>What training sees</h3>
    <p class="muted small">Each example as the chat template renders it; <mark>highlighted</mark> tokens are the ones the loss is computed on.</p>
    ${examples.map((e) => html`<div class="example"><small class="muted">${e.where}</small>
      <pre class="rendered">${e.segments.map((s) => s.trained ? html`<mark>${s.text}</mark>` : s.text)}</pre></div>`)}`;
}

export function reportView(report) {
  const ok = report.ok;
  return html`<div class="banner ${ok ? 'good' : 'bad'}" id="verdict">${ok
      ? `${report.path}: OK, no format problems${report.findings.length ? `, ${report.findings.length} warning(s)` : ''}`
      : `${report.path}: ${report.problems.length} problem(s); ${report.stats.examples || 0} valid example(s)`}</div>
    ${report.stats.examples ? tiles(report.stats) : ''}
    ${report.findings.length ? html`<h3>Warnings</h3><ul class="lines">${report.findings.map((f) => html`<li><b>${f.kind}</b>: ${f.message}
      ${f.where.length ? html`<br><small class="muted">${f.where.slice(0, 8).join(', ')}${f.where.length > 8 ? ', …' : ''}</small>` : ''}</li>`)}</ul>` : ''}
    ${problems(report)}
    ${report.histogram ? html`<h3>Tokens per example</h3><div class="chart-box" id="histogram">${raw(histogram(report.histogram, {marker: report.stats.max_length}))}</div>` : ''}
    ${preview(report.examples)}`;
}

export async function dataPage(main) {
  const {sources} = await api('/api/data/sources');
  const wanted = params().get('source') || sources[0]?.id || '';
  const group = (origin, title) => {
    const items = sources.filter((s) => s.origin === origin);
    return items.length ? html`<optgroup label="${title}">${items.map((s) => html`<option value="${s.id}" ${s.id === wanted ? 'selected' : ''}>${s.label}${s.examples ? ` (${s.examples} examples)` : ''}</option>`)}</optgroup>` : '';
  };
  main.innerHTML = html`<section class="card"><h1>Data</h1>
    <p class="muted">The data check, with the served model's tokenizer and chat template. Uploads are checked here without being stored.</p>
    <form id="data-form" class="inline-form">
      <label>file <select id="source">${group('uploaded', 'uploaded files')}${group('run', 'runs')}</select></label>
      <label class="file">or check one from this computer <input type="file" id="local" accept=".jsonl,.json"></label>
      <label>max length <input type="number" id="max-length" value="${params().get('max_length') || 512}" min="16" step="1"></label>
    </form>${sources.length ? '' : html`<p>No data yet: upload a file on the <a href="#/jobs">Jobs</a> page, or check one from this computer.</p>`}
  </section><section class="card" id="report"><p class="muted">${sources.length ? 'Checking…' : ''}</p></section>`;

  async function show(load) {
    const box = $('#report');
    box.innerHTML = html`<p class="muted">Checking…</p>`;
    try { box.innerHTML = reportView(await load()); } catch (error) { box.innerHTML = errorBox(error); }
  }
  const maxLength = () => Number($('#max-length').value) || 512;
  const fromServer = () => show(() => api(`/api/data?source=${encodeURIComponent($('#source').value)}&max_length=${maxLength()}`));
  $('#source').onchange = () => { history.replaceState(null, '', `#/data?source=${encodeURIComponent($('#source').value)}`); fromServer(); };
  $('#max-length').onchange = () => ($('#local').files.length ? fromLocal() : fromServer());
  const fromLocal = () => show(() => api(`/api/data/check?max_length=${maxLength()}`, {method: 'POST', form: uploadForm($('#local').files[0])}));
  $('#local').onchange = fromLocal;
  $('#data-form').onsubmit = (event) => event.preventDefault();
  if (wanted) await fromServer();
}
