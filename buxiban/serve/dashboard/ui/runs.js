// Runs: every run the server knows (jobs, registered adapters, --runs folders), live while training.

import {$, ago, api, badge, count, html, isLive, num, progress} from './lib.js';

const SOURCE = {job: 'fine-tuning job', adapter: 'registered adapter', folder: 'runs folder'};

function scores(run) {
  const ev = run.eval;
  if (!ev) return html`<span class="muted">not evaluated</span>`;
  const tuned = ev.scores['fine-tuned'], base = ev.scores.base;
  return html`<b>${num(tuned)}</b>${base !== undefined ? html` <span class="muted">vs base ${num(base)}</span>` : ''}
    <br><small class="muted">exact match, ${ev.n} examples of ${ev.test_file}</small>`;
}

function row(run, selected) {
  const link = `#/run/${encodeURIComponent(run.id)}`;
  const data = run.data ? html`${run.data.name}${run.data.examples ? html`<br><small class="muted">${count(run.data.examples)} examples</small>` : ''}` : '–';
  return html`<tr data-id="${run.id}">
    <td><input type="checkbox" class="pick" value="${run.id}" ${selected.has(run.id) ? 'checked' : ''} ${run.eval ? '' : 'disabled'}
      title="${run.eval ? 'select to compare' : 'evaluate it on its run page to compare it'}"></td>
    <td><a class="run-name" href="${link}">${run.name}</a><br><small class="muted">${SOURCE[run.source]}${run.adapter && run.adapter !== run.name ? ` · ${run.adapter}` : ''}</small></td>
    <td>${badge(run.status)}${isLive(run.status) ? progress(run.step, run.total_steps) : ''}</td>
    <td>${run.method}</td>
    <td>${run.base_model || '–'}</td>
    <td>${data}</td>
    <td class="num">${num(run.train_loss, 4)}</td>
    <td class="num">${num(run.best_val_loss, 4)}${run.best_step ? html`<br><small class="muted">step ${run.best_step}</small>` : ''}</td>
    <td>${scores(run)}</td>
    <td>${ago(run.created)}</td>
  </tr>`;
}

export async function runsPage(main, ctx) {
  main.innerHTML = html`<section class="card">
    <div class="row"><h1>Runs</h1><span class="grow"></span>
      <a class="button" href="#/jobs">New fine-tuning job</a>
      <button id="compare" disabled>Compare selected</button></div>
    <div class="table-wrap"><table class="runs"><thead><tr><th></th><th>run</th><th>status</th><th>method</th>
      <th>base model</th><th>data</th><th>training loss</th><th>best validation loss</th><th>fine-tuned score</th><th>created</th>
    </tr></thead><tbody id="rows"></tbody></table></div>
    <p id="empty" class="muted" hidden>No runs yet. Start one on the <a href="#/jobs">Jobs</a> page; runs trained with
      <code>buxiban train</code> appear when registered (<code>buxiban serve --adapter NAME=RUN_DIR</code>) or when their
      folder is given with <code>buxiban serve --runs DIR</code>.</p>
  </section>`;
  const selected = new Set();
  const button = $('#compare');
  button.onclick = () => { location.hash = `#/compare?ids=${[...selected].map(encodeURIComponent).join(',')}`; };
  $('#rows').addEventListener('change', (event) => {
    if (!event.target.matches('.pick')) return;
    event.target.checked ? selected.add(event.target.value) : selected.delete(event.target.value);
    button.disabled = selected.size < 1;
    button.textContent = selected.size === 1 ? 'Compare systems of selected' : 'Compare selected';
  });
  async function refresh() {
    const {runs} = await api('/api/runs');
    $('#rows').innerHTML = html`${runs.map((run) => row(run, selected))}`;
    $('#empty').hidden = runs.length > 0;
  }
  await refresh();
  ctx.every(2000, refresh);
}
