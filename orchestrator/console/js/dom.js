// Building the page: elements from data, never from HTML strings (an address or a log line is
// always text), and the small widgets every page shares.

/** An element: h('a', { href, class: 'x', onclick }, 'text', child, [more children]). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replaces an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A figure with a label: the value's text, its exact base units in data-raw when given. */
export function tile(label, value, { raw, field, hint, tone } = {}) {
  return h('div', { class: `tile${tone ? ` tone-${tone}` : ''}` },
    h('div', { class: 'tile-label' }, label),
    h('div', { class: 'tile-value', dataset: clean({ field, raw }) }, value),
    hint ? h('div', { class: 'tile-hint' }, hint) : null);
}

/** Drops undefined entries (dataset would write the string "undefined"). */
export function clean(o) {
  const out = {};
  for (const [k, v] of Object.entries(o)) if (v !== undefined && v !== null) out[k] = String(v);
  return out;
}

/** A status chip: its words carry the meaning; the colour only repeats it. */
export function chip(text, tone) {
  return h('span', { class: `chip chip-${tone}` }, text);
}

/** A section with a heading. */
export function section(title, ...children) {
  const id = `s-${title.toLowerCase().replace(/[^a-z0-9]+/g, '-')}`;
  return h('section', { class: 'card', 'aria-labelledby': id },
    h('h2', { id }, title), ...children);
}

/**
 * A table: columns [{ label, cell(row) -> node|string, num?: bool }], rows. Wide tables scroll
 * inside their box at phone width instead of widening the page.
 */
export function table(columns, rows, { caption, empty = 'None yet.', rowAttrs } = {}) {
  if (!rows.length) return h('p', { class: 'muted' }, empty);
  return h('div', { class: 'scroll', tabindex: 0, role: 'region', 'aria-label': caption || 'table' },
    h('table', {},
      caption ? h('caption', { class: 'visually-hidden' }, caption) : null,
      h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col', class: c.num ? 'num' : null }, c.label)))),
      h('tbody', {}, rows.map((r) => h('tr', rowAttrs ? rowAttrs(r) : {},
        columns.map((c) => h('td', { class: c.num ? 'num' : null }, c.cell(r))))))));
}

/** Text a person may want to copy (an address, a signature, a command), with a copy button. */
export function copyable(text, { label = 'Copy', mono = true, field } = {}) {
  const value = h('code', { class: mono ? 'mono' : null, dataset: clean({ field }) }, text);
  const button = h('button', { type: 'button', class: 'copy', 'aria-label': `${label}: ${text}` }, 'Copy');
  button.addEventListener('click', () => {
    const done = () => { button.textContent = 'Copied'; setTimeout(() => { button.textContent = 'Copy'; }, 1500); };
    const select = () => {
      const range = document.createRange();
      range.selectNodeContents(value);
      const sel = window.getSelection();
      sel.removeAllRanges();
      sel.addRange(range);
      button.textContent = 'Selected: press Ctrl+C';
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, select);
    } else {
      select();
    }
  });
  return h('span', { class: 'copyable' }, value, button);
}

/** Calls `fn` at most once per animation frame, however often it is asked. */
export function frameThrottle(fn) {
  let queued = false;
  return () => {
    if (queued) return;
    queued = true;
    requestAnimationFrame(() => { queued = false; fn(); });
  };
}

/** Calls `fn` soon after it is asked, at most once every `ms`: a burst of asks is one call. */
export function throttle(fn, ms) {
  let timer = null;
  let last = 0;
  return () => {
    if (timer) return;
    const wait = Math.max(0, last + ms - performance.now());
    timer = setTimeout(() => { timer = null; last = performance.now(); fn(); }, wait);
  };
}
