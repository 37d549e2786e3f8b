// What every page shares: calling the server (with the API key when it has one), building HTML
// safely, and formatting numbers and times.

const KEY = 'buxiban.apiKey';

export class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

// --- HTML: every interpolated value is escaped unless it is already markup (raw / html``) ---------

class Markup { constructor(text) { this.text = text; } toString() { return this.text; } }
export const raw = (text) => new Markup(String(text));

export function esc(value) {
  return String(value).replace(/[&<>"']/g, (c) => ({'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;'}[c]));
}

function render(value) {
  if (value === null || value === undefined || value === false) return '';
  if (value instanceof Markup) return value.text;
  if (Array.isArray(value)) return value.map(render).join('');
  return esc(value);
}

export function html(strings, ...values) {
  let out = strings[0];
  values.forEach((value, i) => { out += render(value) + strings[i + 1]; });
  return new Markup(out);
}

export const $ = (selector, root = document) => root.querySelector(selector);
export const $$ = (selector, root = document) => [...root.querySelectorAll(selector)];

// --- the server -----------------------------------------------------------------------------------

let asking = null;  // one key prompt at a time, however many calls got a 401

function askKey(message) {
  if (!asking) {
    asking = new Promise((resolve) => {
      const dialog = $('#key-dialog');
      $('#key-error').textContent = message || '';
      $('#key-form').onsubmit = () => {
        localStorage.setItem(KEY, $('#key-input').value.trim());
        asking = null;
        resolve();
      };
      dialog.showModal();
    });
  }
  return asking;
}

function headers(extra = {}) {
  const key = localStorage.getItem(KEY);
  return key ? {...extra, Authorization: `Bearer ${key}`} : extra;
}

async function send(path, options) {
  for (;;) {
    const response = await fetch(path, {...options, headers: headers(options.headers)});
    if (response.status !== 401) return response;
    await askKey(localStorage.getItem(KEY) ? 'That key was refused; try again.' : '');
  }
}

// JSON in, JSON out; a refusal becomes an ApiError carrying the server's own message.
export async function api(path, {method = 'GET', body, form} = {}) {
  const options = {method};
  if (form) options.body = form;
  else if (body !== undefined) { options.body = JSON.stringify(body); options.headers = {'Content-Type': 'application/json'}; }
  const response = await send(path, options);
  const text = await response.text();
  let data = text;
  try { data = JSON.parse(text); } catch { /* not JSON: keep the text */ }
  if (!response.ok) throw new ApiError(response.status, data?.error?.message || text || response.statusText);
  return data;
}

// A streamed chat completion (OpenAI's SSE); onText gets the answer so far as each piece arrives.
// Resolves to {text, rag}: rag is the server's retrieval record (sources) when the request asked for it.
export async function streamChat(body, onText) {
  const response = await send('/v1/chat/completions', {
    method: 'POST', headers: {'Content-Type': 'application/json'}, body: JSON.stringify({...body, stream: true})});
  if (!response.ok) {
    const data = await response.json().catch(() => ({}));
    throw new ApiError(response.status, data?.error?.message || response.statusText);
  }
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '', text = '', rag = null;
  for (;;) {
    const {value, done} = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, {stream: true});
    const events = buffer.split('\n\n');
    buffer = events.pop();
    for (const event of events) {
      const data = event.replace(/^data: /, '').trim();
      if (!data || data === '[DONE]') continue;
      const chunk = JSON.parse(data);
      if (chunk.error) throw new ApiError(500, chunk.error.message);
      if (chunk.rag) rag = chunk.rag;
      const piece = chunk.choices?.[0]?.delta?.content;
      if (piece) { text += piece; onText(text); }
    }
  }
  return {text, rag};
}

export function uploadForm(file, extra = {}) {
  const form = new FormData();
  form.append('file', file);
  for (const [key, value] of Object.entries(extra)) form.append(key, value);
  return form;
}

// --- formatting ------------------------------------------------------------------------------------

export function num(value, digits = 3) {
  if (value === null || value === undefined || Number.isNaN(value)) return '–';
  return Number(value).toFixed(digits);
}

export function count(value) {
  return value === null || value === undefined ? '–' : Number(value).toLocaleString('en');
}

export function ago(unix) {
  if (!unix) return '–';
  const seconds = Math.round(Date.now() / 1000 - unix);
  if (seconds < 0) return `in ${duration(-seconds)}`;
  if (seconds < 5) return 'just now';
  return `${duration(seconds)} ago`;
}

export function duration(seconds) {
  if (seconds < 60) return `${Math.round(seconds)} s`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min`;
  if (seconds < 86400) return `${(seconds / 3600).toFixed(1)} h`;
  return `${Math.round(seconds / 86400)} d`;
}

export function bytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1 << 20) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / (1 << 20)).toFixed(1)} MB`;
}

const LIVE = new Set(['validating_files', 'queued', 'running']);
export const isLive = (status) => LIVE.has(status);

export function badge(status) {
  const shown = {validating_files: 'validating', complete: 'complete', succeeded: 'succeeded'}[status] || status;
  return html`<span class="badge s-${status}">${isLive(status) ? raw('<i class="pulse"></i>') : ''}${shown}</span>`;
}

export function progress(step, total) {
  if (!total) return '';
  const share = Math.min(1, (step || 0) / total);
  return html`<div class="progress" title="step ${step || 0} of ${total}"><div style="width:${(share * 100).toFixed(1)}%"></div></div>
    <small class="muted">${step || 0} / ${total}</small>`;
}

export function interval(stats) {
  if (!stats) return '–';
  return html`${num(stats.mean)} <small class="muted">[${num(stats.low, 2)}, ${num(stats.high, 2)}]</small>`;
}

export function errorBox(error) {
  return html`<div class="error-box">${error.message || String(error)}</div>`;
}

// Words of a diff: [op, reference words, answer words] -> missed words struck, said words marked.
export function diff(ops) {
  return ops.map(([op, wanted, said]) => {
    if (op === 'equal') return html`${wanted} `;
    return html`${op !== 'insert' ? html`<del>${wanted}</del> ` : ''}${op !== 'delete' ? html`<ins>${said}</ins> ` : ''}`;
  });
}

export function params() {
  const query = location.hash.split('?')[1] || '';
  return new URLSearchParams(query);
}
