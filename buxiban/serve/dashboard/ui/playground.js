// Playground: chat with the base model or any adapter, optionally with retrieved documents (RAG),
// or with two models side by side on the same prompt. Answers stream in as they are generated.

import {$, api, html, params, streamChat} from './lib.js';

function option(model, chosen) {
  const b = model.buxiban;
  const label = b.kind === 'base' ? `${model.id} (base model)` : model.id;
  return html`<option value="${model.id}" ${model.id === chosen ? 'selected' : ''} ${b.servable === false ? 'disabled' : ''}
    title="${b.reason || ''}">${label}${b.servable === false ? ' — cannot be served here' : ''}</option>`;
}

class Pane {
  constructor(box) { this.box = box; this.history = []; }
  get model() { return $('select', this.box).value; }
  clear() { this.history = []; $('.messages', this.box).innerHTML = ''; }
  bubble(role, text) {
    const div = document.createElement('div');
    div.className = `bubble ${role}`;
    div.textContent = text;
    $('.messages', this.box).append(div);
    div.scrollIntoView({block: 'nearest'});
    return div;
  }

  async ask(question, settings) {
    this.history.push({role: 'user', content: question});
    this.bubble('user', question);
    const answer = this.bubble('assistant pending', '…');
    const messages = [...(settings.system ? [{role: 'system', content: settings.system}] : []), ...this.history];
    try {
      // with an index, the server puts the retrieved chunks into this question's turn and names them back
      const {text, rag} = await streamChat({model: this.model, messages, temperature: settings.temperature,
        max_tokens: settings.maxTokens, ...(settings.rag ? {rag: {index: settings.rag, k: settings.k}} : {})},
        (partial) => { answer.textContent = partial; });
      const sources = rag?.sources || [];
      answer.classList.remove('pending');
      answer.textContent = text || '(empty answer)';
      this.history.push({role: 'assistant', content: text});
      if (sources.length) {
        const list = document.createElement('ol');
        list.className = 'sources';
        list.innerHTML = html`${sources.map((s) => html`<li title="${s.text}">${s.source} <small class="muted">${s.score.toFixed(3)}</small></li>`)}`;
        answer.after(list);
      }
    } catch (error) {
      this.history.pop();
      answer.className = 'bubble error';
      answer.textContent = error.message;
    }
  }
}

export async function playgroundPage(main) {
  const [{models}, {indexes}] = await Promise.all([api('/api/models'), api('/api/rag')]);
  const base = models.find((m) => m.buxiban.kind === 'base');
  const adapters = models.filter((m) => m.buxiban.kind === 'adapter' && m.buxiban.servable !== false);
  const first = params().get('model') || adapters[adapters.length - 1]?.id || base.id;
  const second = params().get('vs') || (first === base.id ? adapters[adapters.length - 1]?.id || base.id : base.id);
  const promptOf = (id) => models.find((m) => m.id === id)?.buxiban.system_prompt || '';
  const pane = (name, chosen) => html`<div class="pane" id="pane-${name}">
    <select aria-label="model ${name}">${models.map((m) => option(m, chosen))}</select><div class="messages"></div></div>`;

  main.innerHTML = html`<section class="card"><div class="row"><h1>Playground</h1><span class="grow"></span>
      <label><input type="checkbox" id="side-by-side" ${params().get('vs') ? 'checked' : ''}> two models side by side</label></div>
    <div class="settings">
      <label class="wide">system prompt <textarea id="system" rows="2" placeholder="none">${promptOf(first)}</textarea></label>
      <label>documents (RAG) <select id="rag"><option value="">none</option>${indexes.map((i) => html`<option value="${i.name}">${i.name}</option>`)}</select></label>
      <label>chunks <input type="number" id="k" value="3" min="1" max="20"></label>
      <label>max tokens <input type="number" id="max-tokens" value="128" min="1" max="2048"></label>
      <label>temperature <input type="number" id="temperature" value="0" min="0" max="2" step="0.1"></label>
    </div>
    <div class="panes">${pane('a', first)}${pane('b', second)}</div>
    <form id="composer" class="composer"><textarea id="prompt" rows="2" placeholder="Ask something… (Enter sends, Shift+Enter for a new line)" required></textarea>
      <div class="buttons"><button type="submit" id="send">Send</button><button type="button" class="secondary" id="clear">Clear</button></div></form>
  </section>`;
  const panes = [new Pane($('#pane-a')), new Pane($('#pane-b'))];
  const sideBySide = $('#side-by-side');
  const layout = () => { $('#pane-b').hidden = !sideBySide.checked; $('.panes').classList.toggle('two', sideBySide.checked); };
  sideBySide.onchange = layout;
  layout();
  let systemEdited = false;
  $('#system').oninput = () => { systemEdited = true; };
  $('select', panes[0].box).onchange = () => { if (!systemEdited) $('#system').value = promptOf(panes[0].model); };

  $('#composer').onsubmit = async (event) => {
    event.preventDefault();
    const question = $('#prompt').value.trim();
    if (!question) return;
    $('#prompt').value = '';
    $('#send').disabled = true;
    const settings = {system: $('#system').value.trim(), rag: $('#rag').value, k: Number($('#k').value) || 3,
      maxTokens: Number($('#max-tokens').value) || 128, temperature: Number($('#temperature').value) || 0};
    const active = sideBySide.checked ? panes : panes.slice(0, 1);
    await Promise.all(active.map((p) => p.ask(question, settings)));  // each pane shows its own error
    $('#send').disabled = false;
    $('#prompt').focus();
  };
  $('#prompt').onkeydown = (event) => {
    if (event.key === 'Enter' && !event.shiftKey) { event.preventDefault(); $('#composer').requestSubmit(); }
  };
  $('#clear').onclick = () => panes.forEach((p) => p.clear());
}
