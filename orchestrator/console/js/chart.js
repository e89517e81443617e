// A small line chart on a canvas, for live series (a sliding time window) and for a fixed range
// (the emission schedule). It draws at most once per animation frame however many points
// arrive. Its caption shows every series' newest value as text, so the chart can be read
// without seeing it; the figure's data-points, data-last and data-updated-ms say what it holds.

import { h } from './dom.js';

const PAD = { left: 56, right: 10, top: 8, bottom: 20 };
const KEEP = 2000;

function css(name, fallback) {
  const v = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  return v || fallback;
}

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

export class Chart {
  /**
   * series: [{ name }]; unit and digits format the values; windowMs: the time window (time
   * charts); or xDomain [x0, x1] with xFormat(x) for a fixed range.
   */
  constructor({ title, series, unit = '', digits = 1, windowMs = 300_000, xDomain = null,
    xFormat = null, yMin = 0, yMax = null, height = 150, format = null }) {
    this.title = title;
    this.series = series.map((s, i) => ({ ...s, xs: [], ys: [], color: `--c${i + 1}` }));
    this.unit = unit;
    this.digits = digits;
    this.windowMs = windowMs;
    this.xDomain = xDomain;
    this.xFormat = xFormat;
    this.yMin = yMin;
    this.yMax = yMax;
    this.height = height;
    this.format = format || ((v) => `${v.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits })}${unit ? ` ${unit}` : ''}`);
    this.markers = [];
    this.queued = false;
    this.canvas = h('canvas', { role: 'img', height, 'aria-label': `${title}: no data yet` });
    this.legend = h('figcaption', { class: 'chart-legend' });
    this.el = h('figure', { class: 'chart', dataset: { points: '0' } },
      h('div', { class: 'chart-title' }, title), this.canvas, this.legend);
    this.onResize = () => this.schedule();
    window.addEventListener('resize', this.onResize);
    this.renderLegend();
    this.schedule();
  }

  /** Adds a point at `x` (Unix ms for time charts) with one value per series (null: none). */
  push(x, values) {
    values.forEach((v, i) => {
      const s = this.series[i];
      if (!s || v === null || v === undefined || Number.isNaN(v)) return;
      s.xs.push(x);
      s.ys.push(v);
      if (s.xs.length > KEEP) {
        s.xs.splice(0, s.xs.length - KEEP);
        s.ys.splice(0, s.ys.length - KEEP);
      }
    });
    this.touched();
  }

  /** Replaces a series' points ([[x, y], …], ascending x). */
  set(i, points) {
    const s = this.series[i];
    s.xs = points.map((p) => p[0]);
    s.ys = points.map((p) => p[1]);
    this.touched();
  }

  /** Points drawn as labelled dots: [{ x, y, label }]. */
  setMarkers(markers) {
    this.markers = markers;
    this.schedule();
  }

  touched() {
    const first = this.series[0];
    this.el.dataset.points = String(first.xs.length);
    if (first.ys.length) this.el.dataset.last = String(first.ys[first.ys.length - 1]);
    this.el.dataset.updatedMs = String(Date.now());
    this.renderLegend();
    this.schedule();
  }

  renderLegend() {
    const parts = this.series.map((s) => {
      const last = s.ys.length ? this.format(s.ys[s.ys.length - 1]) : '—';
      return h('span', { class: 'legend-item' },
        h('span', { class: `swatch swatch-${s.color.slice(2)}`, 'aria-hidden': 'true' }),
        `${s.name}: `, h('strong', {}, last));
    });
    this.legend.replaceChildren(...parts);
    this.canvas.setAttribute('aria-label', `${this.title}: ${this.series.map((s) => `${s.name} ${s.ys.length ? this.format(s.ys[s.ys.length - 1]) : 'no data'}`).join(', ')}`);
  }

  schedule() {
    if (this.queued) return;
    this.queued = true;
    requestAnimationFrame(() => { this.queued = false; this.draw(); });
  }

  destroy() {
    window.removeEventListener('resize', this.onResize);
  }

  draw() {
    const c = this.canvas;
    const w = c.clientWidth;
    if (!w) return;
    const dpr = window.devicePixelRatio || 1;
    const hgt = this.height;
    if (c.width !== Math.round(w * dpr) || c.height !== Math.round(hgt * dpr)) {
      c.width = Math.round(w * dpr);
      c.height = Math.round(hgt * dpr);
    }
    const ctx = c.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, hgt);
    const ink = css('--ink', '#1a1d23');
    const muted = css('--muted', '#4a5363');
    const grid = css('--grid', '#d7dce3');
    ctx.font = '11px system-ui, sans-serif';
    const [x0, x1] = this.xDomain || [Date.now() - this.windowMs, Date.now()];
    let lo = this.yMin;
    let hi = this.yMax;
    const visible = (s) => s.xs.map((x, i) => [x, s.ys[i]]).filter(([x]) => x >= x0 - (x1 - x0) * 0.05 && x <= x1);
    const pts = this.series.map(visible);
    const all = pts.flat().map((p) => p[1]).concat(this.markers.map((m) => m.y));
    if (lo === null) lo = all.length ? Math.min(...all) : 0;
    if (hi === null) hi = niceMax(all.length ? Math.max(...all, lo + 1e-9) : 1);
    if (hi <= lo) hi = lo + 1;
    const pw = w - PAD.left - PAD.right;
    const ph = hgt - PAD.top - PAD.bottom;
    const X = (x) => PAD.left + ((x - x0) / (x1 - x0)) * pw;
    const Y = (y) => PAD.top + ph - ((y - lo) / (hi - lo)) * ph;
    ctx.strokeStyle = grid;
    ctx.fillStyle = muted;
    ctx.lineWidth = 1;
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    for (let i = 0; i <= 3; i += 1) {
      const v = lo + ((hi - lo) * i) / 3;
      const y = Math.round(Y(v)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(PAD.left, y);
      ctx.lineTo(w - PAD.right, y);
      ctx.stroke();
      ctx.fillText(this.axis(v), PAD.left - 6, y);
    }
    ctx.textBaseline = 'top';
    const labels = this.xDomain
      ? [[x0, 'left'], [(x0 + x1) / 2, 'center'], [x1, 'right']].map(([x, a]) => [x, a, this.xFormat ? this.xFormat(x) : String(x)])
      : [[x0, 'left', `−${Math.round(this.windowMs / 60000)} min`], [x1, 'right', 'now']];
    for (const [x, align, text] of labels) {
      ctx.textAlign = align;
      ctx.fillText(text, X(x), hgt - PAD.bottom + 4);
    }
    ctx.save();
    ctx.beginPath();
    ctx.rect(PAD.left, PAD.top - 2, pw, ph + 4);
    ctx.clip();
    pts.forEach((p, i) => {
      if (!p.length) return;
      ctx.strokeStyle = css(this.series[i].color, ink);
      ctx.lineWidth = 2;
      ctx.beginPath();
      p.forEach(([x, y], j) => (j ? ctx.lineTo(X(x), Y(y)) : ctx.moveTo(X(x), Y(y))));
      if (p.length === 1) ctx.arc(X(p[0][0]), Y(p[0][1]), 2, 0, 2 * Math.PI);
      ctx.stroke();
    });
    ctx.restore();
    ctx.fillStyle = ink;
    ctx.textAlign = 'left';
    ctx.textBaseline = 'bottom';
    for (const m of this.markers) {
      ctx.beginPath();
      ctx.arc(X(m.x), Y(m.y), 4, 0, 2 * Math.PI);
      ctx.fill();
      if (m.label) ctx.fillText(m.label, Math.min(X(m.x) + 6, w - 80), Y(m.y) - 4);
    }
    if (!all.length) {
      ctx.fillStyle = muted;
      ctx.textAlign = 'center';
      ctx.textBaseline = 'middle';
      ctx.fillText('waiting for data…', PAD.left + pw / 2, PAD.top + ph / 2);
    }
  }

  axis(v) {
    const a = Math.abs(v);
    const text = a >= 1e6 ? `${(v / 1e6).toFixed(1)}M` : a >= 1e4 ? `${(v / 1e3).toFixed(0)}k`
      : v.toLocaleString('en-US', { maximumFractionDigits: a < 10 ? 2 : 0 });
    return text;
  }
}
