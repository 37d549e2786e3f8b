// Run: loss curves (live while training), hyperparameters, checkpoints, the job's events, and the
// evaluation against the base model, which can be started from here.

import {$, ago, api, badge, count, duration, errorBox, html, isLive, num, uploadForm} from './lib.js';
import {lineChart, metricsFollower} from './charts.js';
import {evalResults} from './evalview.js';

function head(run) {
  const chat = run.adapter ? html`<a class="button" href="#/playground?model=${encodeURIComponent(run.adapter)}">Chat with it</a>` : '';
  const cancel = run.job && isLive(run.status) ? html`<button id="cancel" class="secondary">Cancel job</button>` : '';
  return html`<div class="row"><h1 id="run-title">${run.name}</h1>${badge(run.status)}<span class="grow"></span>${cancel}${chat}</div>
    <dl class="facts">
      <div><dt>method</dt><dd>${run.method}</dd></div>
      <div><dt>base model</dt><dd>${run.base_model || '–'}</dd></div>
      <div><dt>training data</dt><dd>${run.data ? html`${run.data.name} (${count(run.data.examples)} examples)` : '–'}</dd></div>
      <div><dt>created</dt><dd>${ago(run.created)}</dd></div>
      <div><dt>finished</dt><dd>${ago(run.finished)}</dd></div>
      ${run.adapter ? html`<div><dt>served as</dt><dd><code>${run.adapter}</code></dd></div>` : ''}
      <div><dt>run directory</dt><dd><code>${run.run_dir}</code></dd></div>
    </dl>
    ${run.error ? html`<div class="error-box">${run.error.message || run.error}</div>` : ''}`;
}

function curveNote(run) {
  const parts = [];
  if (run.step) parts.push(html`step <b>${run.step}</b>${run.total_steps ? ` of ${run.total_steps}` : ''}`);
  if (run.train_loss !== null && run.train_loss !== undefined) parts.push(html`training loss <b>${num(run.train_loss, 4)}</b>`);
  if (run.best_val_loss !== null && run.best_val_loss !== undefined) parts.push(html`best validation loss <b>${num(run.best_val_loss, 4)}</b> at step ${run.best_step}`);
  const eta = run.job?.estimated_finish;
  if (eta && isLive(run.status)) parts.push(html`finishes in about ${duration(Math.max(0, eta - Date.now() / 1000))}`);
  return html`${parts.map((p, i) => html`${i ? ' · ' : ''}${p}`)}`;
}

function hyperparameters(run) {
  const rows = Object.entries(run.config || {}).map(([k, v]) => html`<tr><th>${k}</th><td>${Array.isArray(v) ? v.join(', ') : String(v)}</td></tr>`);
  const p = run.parameters || {}, t = run.timings || {};
  if (p.trainable) rows.push(html`<tr><th>trained parameters</th><td>${count(p.trainable)} of ${count(p.total)} (${num(100 * p.trainable / p.total, 2)} %)</td></tr>`);
  if (t.train_seconds) rows.push(html`<tr><th>training time</th><td>${duration(t.train_seconds)} (${count(t.tokens_per_second)} tokens/s)</td></tr>`);
  return html`<table class="kv">${rows}</table>
    ${run.config_yaml ? html`<details><summary>the whole config.yaml</summary><pre>${run.config_yaml}</pre></details>` : ''}`;
}

function checkpoints(run) {
  if (!run.checkpoints.length) return html`<p class="muted">No checkpoints kept${isLive(run.status) ? ' yet' : ''}.</p>`;
  return html`<table><thead><tr><th>step</th><th>training loss</th><th>saved</th></tr></thead><tbody>
    ${run.checkpoints.map((c) => html`<tr><td class="num">${c.step}</td><td class="num">${num(c.train_loss, 4)}</td><td>${ago(c.saved)}</td></tr>`)}
  </tbody></table>`;
}

function evalForm(run) {
  const ready = run.status === 'complete' || run.status === 'succeeded';
  return html`<form id="eval-form" class="inline-form">
    <label>held-out file <select name="test">${run.test_choices.map((c) => html`<option value="${c.value}">${c.label}</option>`)}</select></label>
    <label class="file">or upload one <input type="file" name="upload" accept=".jsonl,.json"></label>
    <label><input type="checkbox" name="fewshot" checked> few-shot baseline</label>
    <label><input type="checkbox" name="forgetting"> forgetting check</label>
    <label>first <input type="number" name="limit" min="1" placeholder="all"> examples</label>
    <button type="submit" ${ready ? '' : 'disabled'}>Evaluate fine-tuned vs base</button>
    ${ready ? '' : html`<small class="muted">available once training has finished</small>`}
  </form>`;
}

function taskLine(task) {
  if (!task) return '';
  return html`<div class="task">${badge(task.status)} evaluation on ${task.test_file}
    ${task.error ? html`<div class="error-box">${task.error}</div>` : ''}
    ${task.log.length ? html`<pre class="log">${task.log.join('\n')}</pre>` : ''}</div>`;
}

export async function runPage(main, ctx, runId) {
  const id = encodeURIComponent(runId);
  main.innerHTML = html`<section class="card" id="head"></section>
    <section class="card"><h2>Loss</h2><div id="curve" class="chart-box"></div><p id="curve-note" class="muted"></p></section>
    <div class="grid">
      <section class="card"><h2>Hyperparameters</h2><div id="hyper"></div></section>
      <section class="card"><h2>Checkpoints</h2><div id="checkpoints"></div></section>
    </div>
    <section class="card"><div class="row"><h2>Evaluation</h2><span class="grow"></span>
      <a class="button secondary" href="#/compare?ids=${id}">Open in compare</a></div>
      <p class="muted">Base model and fine-tuned model answer the same held-out conversations; scores carry 95 % bootstrap intervals.</p>
      <div id="eval-form-box"></div><div id="eval-task"></div><div id="eval"></div></section>
    <section class="card" id="events-card" hidden><h2>Job events</h2><ul id="events" class="events"></ul></section>`;
  let run = await api(`/api/run?id=${id}`);
  let shownEval = null, shownChoices = null, shownConfig = null, tick = 0;

  function update() {
    $('#head').innerHTML = head(run);
    $('#curve-note').innerHTML = curveNote(run);
    if (run.config_yaml !== shownConfig || shownConfig === null) { $('#hyper').innerHTML = hyperparameters(run); shownConfig = run.config_yaml || ''; }
    $('#checkpoints').innerHTML = checkpoints(run);
    const choices = JSON.stringify([run.test_choices, run.status]);
    if (choices !== shownChoices) { $('#eval-form-box').innerHTML = evalForm(run); shownChoices = choices; bindForm(); }
    $('#eval-task').innerHTML = taskLine(run.eval_task);
    const evalKey = run.eval ? JSON.stringify([run.eval.test_sha256, run.eval.summary]) : '';
    if (evalKey !== shownEval) { $('#eval').innerHTML = run.eval ? evalResults(run.eval) : html`<p class="muted">Not evaluated yet.</p>`; shownEval = evalKey; }
    $('#events-card').hidden = !run.events.length;
    $('#events').innerHTML = html`${run.events.map((e) => html`<li class="${e.level}"><time>${ago(e.created_at)}</time> ${e.message}</li>`)}`;
    const cancel = $('#cancel');
    if (cancel) cancel.onclick = async () => { await api(`/v1/fine_tuning/jobs/${run.job.id}/cancel`, {method: 'POST'}); };
  }

  function bindForm() {
    const form = $('#eval-form');
    form.onsubmit = async (event) => {
      event.preventDefault();
      const data = new FormData(form);
      const button = form.querySelector('button');
      button.disabled = true;
      try {
        let test = data.get('test');
        const file = data.get('upload');
        if (file && file.size) test = (await api('/v1/files', {method: 'POST', form: uploadForm(file, {purpose: 'fine-tune'})})).id;
        if (!test) throw new Error('pick a held-out file or upload one');
        run.eval_task = await api('/api/run/eval', {method: 'POST', body: {
          id: runId, test, shots: data.get('fewshot') ? 3 : 0, forgetting: Boolean(data.get('forgetting')),
          limit: data.get('limit') ? Number(data.get('limit')) : null}});
        $('#eval-task').innerHTML = taskLine(run.eval_task);
        tick = 0;
      } catch (error) {
        $('#eval-task').innerHTML = errorBox(error);
      } finally {
        button.disabled = false;
      }
    };
  }

  update();
  const follow = metricsFollower(runId, (series) => { $('#curve').innerHTML = lineChart(series); });
  await follow();
  let settled = false;  // one more read of the metrics after the run stops, then the curve is final
  ctx.every(1500, async () => {
    // a finished run with no evaluation under way changes rarely: look every 6 s instead
    const busy = isLive(run.status) || ['queued', 'running'].includes(run.eval_task?.status) || !settled;
    if (!busy && tick++ % 4) return;
    run = await api(`/api/run?id=${id}`);
    update();
    if (isLive(run.status) || !settled) { await follow(); settled = !isLive(run.status); }
  });
}
