// Three small SVG charts, drawn as markup: loss curves, a histogram, and scores with intervals.
// They scale with their container (viewBox) and carry data-* counts the browser tests read.

import {api, esc, num} from './lib.js';

const PAD = {left: 52, right: 16, top: 14, bottom: 34};

// Round tick values (1, 2, 5 × 10^k) covering [low, high].
export function ticks(low, high, wanted = 5) {
  if (high <= low) high = low + 1;
  const rough = (high - low) / wanted;
  const power = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= rough);
  const out = [];
  // from the last tick at or below `low` to the first at or above `high`, so nothing is drawn off the axes
  for (let v = Math.floor(low / step + 1e-9) * step; ; v += step) {
    out.push(Number(v.toPrecision(12)));
    if (v >= high - step * 1e-9) break;
  }
  return out;
}

function frame(width, height, body, label) {
  return `<svg class="chart" viewBox="0 0 ${width} ${height}" role="img" aria-label="${esc(label)}"
    preserveAspectRatio="xMidYMid meet">${body}</svg>`;
}

function axes(x, y, xTicks, yTicks, width, height, xLabel, yLabel, yDigits) {
  const parts = [];
  for (const t of yTicks) {
    parts.push(`<line class="grid" x1="${PAD.left}" x2="${width - PAD.right}" y1="${y(t)}" y2="${y(t)}"/>`,
      `<text class="tick" x="${PAD.left - 6}" y="${y(t) + 4}" text-anchor="end">${num(t, yDigits)}</text>`);
  }
  for (const t of xTicks) {
    parts.push(`<text class="tick" x="${x(t)}" y="${height - PAD.bottom + 16}" text-anchor="middle">${esc(t)}</text>`);
  }
  parts.push(`<line class="axis" x1="${PAD.left}" x2="${width - PAD.right}" y1="${height - PAD.bottom}" y2="${height - PAD.bottom}"/>`,
    `<text class="label" x="${(PAD.left + width - PAD.right) / 2}" y="${height - 4}" text-anchor="middle">${esc(xLabel)}</text>`,
    `<text class="label" transform="translate(12 ${(PAD.top + height - PAD.bottom) / 2}) rotate(-90)" text-anchor="middle">${esc(yLabel)}</text>`);
  return parts.join('');
}

// series: [{name, cls, points: [[x, y], ...], dots}] -> loss curves; an empty chart says so.
export function lineChart(series, {width = 960, height = 300, xLabel = 'step', yLabel = 'loss'} = {}) {
  const all = series.flatMap((s) => s.points);
  if (!all.length) return frame(width, height, `<text class="empty" x="${width / 2}" y="${height / 2}" text-anchor="middle">no steps logged yet</text>`, 'empty chart');
  const xs = all.map((p) => p[0]), ys = all.map((p) => p[1]);
  const xMin = 0, xMax = Math.max(...xs, 1);  // steps count from 1: the axis starts where training did
  const yTicks = ticks(Math.min(0, Math.min(...ys)), Math.max(...ys));
  const yMax = yTicks[yTicks.length - 1], yMin = yTicks[0];
  const x = (v) => (PAD.left + (v - xMin) / Math.max(1e-9, xMax - xMin) * (width - PAD.left - PAD.right)).toFixed(1);
  const y = (v) => (height - PAD.bottom - (v - yMin) / Math.max(1e-9, yMax - yMin) * (height - PAD.top - PAD.bottom)).toFixed(1);
  const xTicks = ticks(xMin, xMax, 6).filter((t) => Number.isInteger(t) && t <= xMax);
  let body = axes(x, y, xTicks, yTicks, width, height, xLabel, yLabel, yMax < 1 ? 2 : 1);
  series.forEach((s, index) => {
    if (!s.points.length) return;
    const d = s.points.map((p, i) => `${i ? 'L' : 'M'}${x(p[0])},${y(p[1])}`).join(' ');
    body += `<path class="line ${s.cls}" d="${d}" data-series="${esc(s.name)}" data-points="${s.points.length}"/>`;
    if (s.dots || s.points.length === 1) {
      body += s.points.map((p) => `<circle class="dot ${s.cls}" cx="${x(p[0])}" cy="${y(p[1])}" r="3.5"><title>${esc(s.name)} at step ${p[0]}: ${num(p[1], 4)}</title></circle>`).join('');
    }
    body += `<g class="legend" transform="translate(${width - PAD.right - 150} ${PAD.top + 6 + index * 18})">
      <line class="line ${s.cls}" x1="0" x2="18" y1="0" y2="0"/><text x="24" y="4">${esc(s.name)}</text></g>`;
  });
  return frame(width, height, body, series.map((s) => s.name).join(' and '));
}

// {edges, counts} -> bars; `marker` draws a dashed line at a value (the max length).
export function histogram({edges, counts}, {width = 960, height = 260, xLabel = 'tokens per example', marker = null} = {}) {
  const top = ticks(0, Math.max(...counts, 1), 4);
  const yMax = top[top.length - 1];
  const low = edges[0], high = Math.max(edges[edges.length - 1], marker && marker < edges[edges.length - 1] * 1.5 ? marker + 1 : 0);
  const x = (v) => PAD.left + (v - low) / Math.max(1, high - low) * (width - PAD.left - PAD.right);
  const y = (v) => height - PAD.bottom - v / yMax * (height - PAD.top - PAD.bottom);
  const xTicks = ticks(low, high, 6).filter((t) => t >= low && t <= high);
  let body = axes((v) => x(v).toFixed(1), (v) => y(v).toFixed(1), xTicks, top, width, height, xLabel, 'examples', 0);
  counts.forEach((n, i) => {
    const left = x(edges[i]) + 1, right = x(edges[i + 1]) - 1;
    body += `<rect class="bar" x="${left.toFixed(1)}" y="${y(n).toFixed(1)}" width="${Math.max(1, right - left).toFixed(1)}"
      height="${(height - PAD.bottom - y(n)).toFixed(1)}"><title>${edges[i]}–${edges[i + 1] - 1} tokens: ${n} example${n === 1 ? '' : 's'}</title></rect>`;
  });
  if (marker && marker <= high) {
    body += `<line class="marker" x1="${x(marker)}" x2="${x(marker)}" y1="${PAD.top}" y2="${height - PAD.bottom}"/>
      <text class="tick" x="${x(marker) - 4}" y="${PAD.top + 10}" text-anchor="end">max length ${marker}</text>`;
  }
  return frame(width, height, body, 'token length histogram').replace('<svg', `<svg data-bars="${counts.filter((n) => n > 0).length}"`);
}

// rows: [{label, mean, low, high, cls}] -> one dot-and-whisker per row on a 0..1 axis.
export function intervalChart(rows, {width = 960, xLabel = 'score'} = {}) {
  const left = 200, right = 70, row = 26;
  const height = PAD.top + rows.length * row + PAD.bottom;
  const x = (v) => (left + v * (width - left - right)).toFixed(1);
  let body = '';
  for (const t of [0, 0.25, 0.5, 0.75, 1]) {
    body += `<line class="grid" x1="${x(t)}" x2="${x(t)}" y1="${PAD.top}" y2="${height - PAD.bottom}"/>
      <text class="tick" x="${x(t)}" y="${height - PAD.bottom + 16}" text-anchor="middle">${t}</text>`;
  }
  rows.forEach((r, i) => {
    const cy = PAD.top + i * row + row / 2;
    body += `<g class="ci ${r.cls || ''}" data-label="${esc(r.label)}">
      <text class="row-label" x="${left - 10}" y="${cy + 4}" text-anchor="end">${esc(r.label)}</text>
      <line class="whisker" x1="${x(r.low)}" x2="${x(r.high)}" y1="${cy}" y2="${cy}"/>
      <line class="whisker" x1="${x(r.low)}" x2="${x(r.low)}" y1="${cy - 5}" y2="${cy + 5}"/>
      <line class="whisker" x1="${x(r.high)}" x2="${x(r.high)}" y1="${cy - 5}" y2="${cy + 5}"/>
      <circle class="dot" cx="${x(r.mean)}" cy="${cy}" r="5"><title>${esc(r.label)}: ${num(r.mean)} [${num(r.low, 2)}, ${num(r.high, 2)}]</title></circle>
      <text class="tick" x="${width - right + 8}" y="${cy + 4}">${num(r.mean)}</text></g>`;
  });
  body += `<text class="label" x="${(left + width - right) / 2}" y="${height - 4}" text-anchor="middle">${esc(xLabel)} (95 % bootstrap interval)</text>`;
  return frame(width, height, body, 'scores with confidence intervals');
}

// Metric entries of a metrics.jsonl -> the two loss series the run and jobs pages draw.
export function lossSeries(entries) {
  const train = new Map(), val = new Map();
  for (const e of entries) {
    if ('loss' in e) train.set(e.step, e.loss);
    if ('val_loss' in e) val.set(e.step, e.val_loss);
  }
  const sorted = (m) => [...m.entries()].sort((a, b) => a[0] - b[0]);
  return [{name: 'training loss', cls: 'train', points: sorted(train)},
          {name: 'validation loss', cls: 'val', points: sorted(val), dots: true}];
}

// Polls /api/run/metrics from the line it has, and hands the whole series to draw().
export function metricsFollower(runId, draw) {
  let next = 0, entries = [];
  return async () => {
    const got = await api(`/api/run/metrics?id=${encodeURIComponent(runId)}&since=${next}`);
    if (got.reset) entries = [];
    if (got.entries.length || got.reset || next === 0) {
      entries = entries.concat(got.entries);
      draw(lossSeries(entries), entries);
    }
    next = got.next;
  };
}
