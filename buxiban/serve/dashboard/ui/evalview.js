// An evaluation as the run page shows it: every system's scores with intervals, what the report
// concludes, and every test example with a word diff of each answer that missed the reference.

import {diff, html, interval, num, raw} from './lib.js';
import {intervalChart} from './charts.js';

export const SYSTEM_CLASS = {base: 'base', 'few-shot': 'fewshot', 'fine-tuned': 'tuned'};

export function scoreTable(ev, label = (system) => system) {
  const names = ev.systems.map((s) => s.name);
  return html`<div class="table-wrap"><table class="scores"><thead><tr><th>system</th>
      ${ev.columns.map((c) => html`<th>${c.title}</th>`)}<th>examples</th><th>time</th></tr></thead><tbody>
    ${names.map((name) => html`<tr data-system="${name}"><th>${label(name)}</th>
      ${ev.columns.map((c) => html`<td class="num">${interval(ev.intervals[name]?.[c.key])}</td>`)}
      <td class="num">${ev.summary[name]?.n}</td><td class="num">${num(ev.seconds[name], 1)} s</td></tr>`)}
  </tbody></table></div>`;
}

function answerCell(said) {
  const mark = said.exact_match ? html`<span class="ok">✓</span>` : html`<span class="bad">✗</span>`;
  const body = said.exact_match ? said.answer : diff(said.diff || []);
  return html`<td class="${said.exact_match ? '' : 'fail'}">${mark} ${body}${said.error_kind ? html` <small class="muted">(${said.error_kind})</small>` : ''}</td>`;
}

function examples(ev) {
  const names = ev.systems.map((s) => s.name);
  const tuned = names.includes('fine-tuned') ? 'fine-tuned' : names[names.length - 1];
  const rows = ev.examples.map((e) => {
    const wrong = !e.answers[tuned].exact_match;
    const changed = names.some((n) => n !== tuned && e.answers[n].exact_match !== e.answers[tuned].exact_match);
    return html`<tr class="${wrong ? 'is-wrong' : ''} ${changed ? 'is-changed' : ''}">
      <td class="num">${e.index}</td><td>${e.question}${e.category ? html`<br><small class="muted">${e.category}</small>` : ''}</td>
      <td>${e.reference}</td>${names.map((n) => answerCell(e.answers[n]))}</tr>`;
  });
  return html`<div class="row"><h3>Every example</h3><span class="grow"></span>
      <label>show <select class="example-filter">
        <option value="all">all ${ev.examples.length}</option><option value="wrong">those ${tuned} got wrong</option>
        <option value="changed">those where systems disagree</option></select></label></div>
    <p class="muted small">In a wrong answer, <del>struck</del> words are in the reference but missing, <ins>marked</ins> words were said instead.</p>
    <div class="table-wrap examples" data-filter="all"><table><thead><tr><th>#</th><th>question</th><th>reference</th>
      ${names.map((n) => html`<th>${n}</th>`)}</tr></thead><tbody>${rows}</tbody></table></div>`;
}

export function evalResults(ev) {
  const exact = ev.systems.filter((s) => ev.intervals[s.name]?.exact_match).map((s) => ({
    label: s.name, cls: SYSTEM_CLASS[s.name] || '', ...ev.intervals[s.name].exact_match}));
  return html`<p>On <b>${ev.test_file}</b> (${ev.examples.length} conversations never trained on), base model ${ev.base_model}, greedy decoding.</p>
    ${scoreTable(ev)}
    ${exact.length ? html`<div class="chart-box">${raw(intervalChart(exact, {xLabel: 'exact match'}))}</div>` : ''}
    <ul class="lines">${ev.lines.map((line) => html`<li>${line}</li>`)}</ul>
    ${ev.advice.length ? html`<h3>What to fix next</h3><ul class="lines">${ev.advice.map((a) => html`<li>${a}</li>`)}</ul>` : ''}
    ${examples(ev)}`;
}

document.addEventListener('change', (event) => {
  if (!event.target.matches('.example-filter')) return;
  const box = event.target.closest('section, .card, main').querySelector('.examples');
  if (box) box.dataset.filter = event.target.value;
});
