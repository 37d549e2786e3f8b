// Jobs: upload data, start a fine-tuning job, and follow it (status, loss curve, events) — the same
// OpenAI-shaped /v1/files and /v1/fine_tuning/jobs routes the SDK uses.

import {$, ago, api, badge, bytes, count, errorBox, html, isLive, progress, uploadForm} from './lib.js';
import {lineChart, metricsFollower} from './charts.js';

function filesTable(files) {
  if (!files.length) return html`<p class="muted">No files uploaded yet.</p>`;
  return html`<div class="table-wrap"><table><thead><tr><th>file</th><th>kind</th><th>examples</th><th>size</th><th>uploaded</th><th></th></tr></thead><tbody>
    ${files.map((f) => html`<tr data-file="${f.id}"><td>${f.filename}<br><small class="muted">${f.id}</small></td><td>${f.buxiban.kind}</td>
      <td class="num">${count(f.buxiban.examples)}</td><td class="num">${bytes(f.bytes)}</td><td>${ago(f.created_at)}</td>
      <td class="actions"><a href="#/data?source=${f.id}">check</a> <button class="link delete" data-id="${f.id}">delete</button></td></tr>`)}
  </tbody></table></div>`;
}

function jobsTable(jobs, names, followed) {
  if (!jobs.length) return html`<p class="muted">No jobs yet.</p>`;
  return html`<div class="table-wrap"><table class="jobs"><thead><tr><th>job</th><th>status</th><th>progress</th><th>training file</th>
    <th>created</th><th>finishes</th><th></th></tr></thead><tbody>
    ${jobs.map((j) => html`<tr data-job="${j.id}" class="${j.id === followed ? 'followed' : ''}">
      <td><a href="#/run/${encodeURIComponent(j.id)}">${j.fine_tuned_model || j.id}</a><br><small class="muted">${j.fine_tuned_model ? j.id : `from ${j.model}`}</small></td>
      <td>${badge(j.status)}</td><td>${progress(j.buxiban.step, j.buxiban.total_steps)}</td>
      <td>${names[j.training_file] || j.training_file}</td><td>${ago(j.created_at)}</td>
      <td>${j.estimated_finish ? ago(j.estimated_finish) : ''}</td>
      <td class="actions"><button class="link follow" data-id="${j.id}">follow</button>
        ${isLive(j.status) ? html`<button class="link cancel" data-id="${j.id}">cancel</button>` : ''}</td></tr>`)}
  </tbody></table></div>`;
}

function fileOptions(files, kind, empty) {
  const fitting = files.filter((f) => f.buxiban.kind === kind);
  return html`${empty ? html`<option value="">${empty}</option>` : ''}${fitting.map((f) => html`<option value="${f.id}">${f.filename} (${f.buxiban.examples} examples)</option>`)}`;
}

export async function jobsPage(main, ctx) {
  main.innerHTML = html`<div class="grid">
    <section class="card"><h2>1. Upload training data</h2>
      <p class="muted">OpenAI chat JSONL (<code>{"messages": [...]}</code> per line), or preference pairs for DPO. Every line is checked first; a file with problems is refused with each one located.</p>
      <form id="upload" class="inline-form"><input type="file" id="upload-file" accept=".jsonl,.json" required><button type="submit">Upload</button></form>
      <div id="upload-result"></div></section>
    <section class="card"><h2>2. Start a fine-tuning job</h2>
      <form id="create" class="stack">
        <label>method <select name="method"><option value="supervised">supervised (SFT)</option><option value="dpo">preference (DPO)</option></select></label>
        <label>model <select name="model"></select></label>
        <label>training file <select name="training_file" required></select></label>
        <label>validation file <select name="validation_file"></select></label>
        <label>name suffix <input name="suffix" placeholder="e.g. support-v1" pattern="[A-Za-z0-9_-]{1,64}"></label>
        <div class="row"><label>epochs <input name="n_epochs" type="number" min="1" max="50" placeholder="auto"></label>
          <label>batch size <input name="batch_size" type="number" min="1" placeholder="auto"></label>
          <label>learning rate × <input name="learning_rate_multiplier" type="number" min="0.01" step="0.01" placeholder="auto"></label>
          <label class="dpo-only">beta <input name="beta" type="number" min="0.01" step="0.01" placeholder="auto"></label></div>
        <button type="submit" id="start">Start fine-tuning</button></form>
      <div id="create-result"></div></section>
  </div>
  <section class="card"><h2>Jobs</h2><div id="jobs"></div></section>
  <section class="card" id="follow" hidden><div class="row"><h2 id="follow-title"></h2><span class="grow"></span><a class="button secondary" id="follow-run">Open run page</a></div>
    <div id="follow-curve" class="chart-box"></div><p id="follow-note" class="muted"></p><ul id="follow-events" class="events"></ul></section>
  <section class="card"><h2>Files</h2><div id="files"></div></section>`;

  let files = [], filesKey = null, models = [], followed = null, follower = null;
  const form = $('#create');

  function fillForm() {
    const kind = form.method.value === 'dpo' ? 'preference' : 'chat';
    const keep = (select) => select.value;
    const [training, validation, model] = [keep(form.training_file), keep(form.validation_file), keep(form.model)];
    form.training_file.innerHTML = fileOptions(files, kind, files.some((f) => f.buxiban.kind === kind) ? '' : `upload a ${kind} file first`);
    form.validation_file.innerHTML = fileOptions(files, kind, 'none (every example trains)');
    const choices = models.filter((m) => m.buxiban.kind === 'base' || (form.method.value === 'dpo' && m.buxiban.servable !== false));
    form.model.innerHTML = html`${choices.map((m) => html`<option value="${m.id}">${m.id}${m.buxiban.kind === 'base' ? ' (base model)' : ''}</option>`)}`;
    for (const [select, value] of [[form.training_file, training], [form.validation_file, validation], [form.model, model]]) {
      if ([...select.options].some((o) => o.value === value)) select.value = value;
    }
    form.classList.toggle('dpo', form.method.value === 'dpo');
  }

  function follow(jobId) {
    if (followed === jobId) return;
    followed = jobId;
    $('#follow').hidden = false;
    $('#follow-run').href = `#/run/${encodeURIComponent(jobId)}`;
    follower = metricsFollower(jobId, (series) => { $('#follow-curve').innerHTML = lineChart(series, {height: 240}); });
  }

  async function refresh() {
    const [fileList, jobList] = await Promise.all([api('/v1/files'), api('/v1/fine_tuning/jobs?limit=100')]);
    files = fileList.data;
    const key = files.map((f) => f.id).join(' ');
    if (key !== filesKey) { filesKey = key; $('#files').innerHTML = filesTable(files); fillForm(); }
    const names = Object.fromEntries(files.map((f) => [f.id, f.filename]));
    $('#jobs').innerHTML = jobsTable(jobList.data, names, followed);
    if (!followed && jobList.data.length) follow(jobList.data[0].id);
    const job = jobList.data.find((j) => j.id === followed);
    if (job) {
      $('#follow-title').innerHTML = html`Following ${job.fine_tuned_model || job.id} ${badge(job.status)}`;
      const events = await api(`/v1/fine_tuning/jobs/${job.id}/events?limit=8`);
      $('#follow-events').innerHTML = html`${events.data.map((e) => html`<li class="${e.level}"><time>${ago(e.created_at)}</time> ${e.message}</li>`)}`;
      $('#follow-note').innerHTML = job.error ? errorBox(job.error) : html`step ${job.buxiban.step || 0} of ${job.buxiban.total_steps || '?'}
        ${job.trained_tokens ? html` · ${count(job.trained_tokens)} tokens trained` : ''}`;
      await follower();
    }
  }

  models = (await api('/api/models')).models;
  form.method.onchange = fillForm;
  $('#upload').onsubmit = async (event) => {
    event.preventDefault();
    const file = $('#upload-file').files[0];
    const box = $('#upload-result');
    box.innerHTML = html`<p class="muted">Uploading and checking ${file.name}…</p>`;
    try {
      const stored = await api('/v1/files', {method: 'POST', form: uploadForm(file, {purpose: 'fine-tune'})});
      box.innerHTML = html`<p class="good">Stored ${stored.filename}: ${stored.buxiban.examples} ${stored.buxiban.kind} examples (<a href="#/data?source=${stored.id}">see the data check</a>).</p>`;
      $('#upload').reset();
      await refresh();
      if (stored.buxiban.kind === 'preference') form.method.value = 'dpo';
      fillForm();
      form.training_file.value = stored.id;
    } catch (error) { box.innerHTML = errorBox(error); }
  };
  form.onsubmit = async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const type = data.get('method');
    const hyper = {};
    for (const key of ['n_epochs', 'batch_size', 'learning_rate_multiplier', ...(type === 'dpo' ? ['beta'] : [])]) {
      if (data.get(key)) hyper[key] = Number(data.get(key));
    }
    const body = {model: data.get('model'), training_file: data.get('training_file'), method: {type, [type]: {hyperparameters: hyper}}};
    if (data.get('validation_file')) body.validation_file = data.get('validation_file');
    if (data.get('suffix')) body.suffix = data.get('suffix');
    const box = $('#create-result');
    try {
      const job = await api('/v1/fine_tuning/jobs', {method: 'POST', body});
      box.innerHTML = html`<p class="good">Started ${job.id}; following it below.</p>`;
      followed = null;
      follow(job.id);
      await refresh();
    } catch (error) { box.innerHTML = errorBox(error); }
  };
  $('#jobs').addEventListener('click', async (event) => {
    const id = event.target.dataset.id;
    if (event.target.matches('.follow')) { follow(id); await refresh(); }
    if (event.target.matches('.cancel')) { await api(`/v1/fine_tuning/jobs/${id}/cancel`, {method: 'POST'}); await refresh(); }
  });
  $('#files').addEventListener('click', async (event) => {
    if (!event.target.matches('.delete') || !confirm('Delete this file? Jobs keep their own copy.')) return;
    await api(`/v1/files/${event.target.dataset.id}`, {method: 'DELETE'});
    await refresh();
  });
  fillForm();
  await refresh();
  ctx.every(1500, refresh);
}
