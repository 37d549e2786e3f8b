// The router: #/page/argument?query picks a page; leaving a page stops everything it was polling.

import {api, $, $$, errorBox, html} from './lib.js';
import {runsPage} from './runs.js';
import {runPage} from './run.js';
import {comparePage} from './compare.js';
import {dataPage} from './data.js';
import {playgroundPage} from './playground.js';
import {jobsPage} from './jobs.js';

const PAGES = {runs: runsPage, run: runPage, compare: comparePage, data: dataPage, playground: playgroundPage, jobs: jobsPage};
let current = null;

// What a page gets: `every` polls while the page is shown (a failed poll is retried, not fatal).
class PageContext {
  constructor() { this.timers = []; this.alive = true; }
  every(ms, fn) {
    const tick = async () => {
      if (!this.alive) return;
      try { await fn(); } catch (error) { console.warn('poll failed', error); }
      if (this.alive) this.timers.push(setTimeout(tick, ms));
    };
    this.timers.push(setTimeout(tick, ms));
  }
  stop() { this.alive = false; this.timers.forEach(clearTimeout); }
}

async function route() {
  const [path] = location.hash.replace(/^#\/?/, '').split('?');
  const [name, ...rest] = path.split('/');
  const page = PAGES[name] ? name : 'runs';
  current?.stop();
  current = new PageContext();
  $$('#nav a').forEach((a) => a.classList.toggle('active', a.dataset.page.split(' ').includes(page)));
  const main = $('#main');
  main.dataset.page = page;
  main.innerHTML = '';
  try {
    await PAGES[page](main, current, decodeURIComponent(rest.join('/')));
  } catch (error) {
    main.innerHTML = html`<section class="card">${errorBox(error)}</section>`;
  }
}

async function showServer() {
  try {
    const info = await api('/api/info');
    $('#server').textContent = `base model ${info.model}`;
  } catch { /* the pages say what went wrong */ }
}

window.addEventListener('hashchange', route);
route().then(showServer);
