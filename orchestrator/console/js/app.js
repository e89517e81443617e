// The console's shell: reads what every page needs (/v1/console), routes by the URL's hash
// (#/network, #/worker/ADDRESS, #/order/ADDRESS, #/supplier/OWNER, #/operator), keeps the
// header's feed indicator and the address lookup, and mounts one page at a time.

import { get, feedState } from './api.js';
import { h, fill } from './dom.js';
import * as network from './pages/network.js';
import * as worker from './pages/worker.js';
import * as order from './pages/order.js';
import * as supplier from './pages/supplier.js';
import * as operator from './pages/operator.js';

const pages = { network, worker, order, supplier, operator };
const main = document.getElementById('main');
const ctx = { info: null };
let current = null;
let firstRoute = true;

/** '#/worker/ADDR?x=1' → { page: 'worker', arg: 'ADDR', params }; null for other hashes. */
export function parse(hash) {
  if (!hash || hash === '#' || hash === '#/') return { page: 'network', arg: null, params: new URLSearchParams() };
  if (!hash.startsWith('#/')) return null;
  const [path, query] = hash.slice(2).split('?');
  const [page, arg] = path.split('/');
  return { page, arg: arg ? decodeURIComponent(arg) : null, params: new URLSearchParams(query || '') };
}

/** Links inside the console. */
export const link = {
  worker: (a) => `#/worker/${a}`,
  order: (a) => `#/order/${a}`,
  supplier: (a) => `#/supplier/${a}`,
};

ctx.title = (text) => { document.title = `${text} · gpumesh console`; };
ctx.rendered = (page) => {
  if (document.documentElement.dataset.ready !== page) {
    document.documentElement.dataset.ready = page;
    if (!performance.getEntriesByName(`gpumesh:data:${page}`).length) performance.mark(`gpumesh:data:${page}`);
  }
};
ctx.link = link;

function route() {
  const r = parse(location.hash);
  if (!r) return;
  if (current && current.unmount) current.unmount();
  current = null;
  delete document.documentElement.dataset.ready;
  fill(main);
  for (const a of document.querySelectorAll('nav a')) {
    if (a.getAttribute('href') === `#/${r.page}`) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  const page = pages[r.page];
  if (!page || (r.page !== 'network' && r.page !== 'operator' && !r.arg)) {
    ctx.title('Not found');
    fill(main, h('h1', { tabindex: -1 }, 'No such page'),
      h('p', {}, 'Open the ', h('a', { href: '#/network' }, 'network'), ' or look up an address above.'));
    return;
  }
  current = page.mount(main, r, ctx);
  if (!firstRoute) {
    const heading = main.querySelector('h1');
    if (heading) heading.focus({ preventScroll: false });
  }
  firstRoute = false;
}

function header() {
  const live = document.getElementById('live');
  feedState.addEventListener('change', (e) => {
    const text = { live: 'Live', connecting: 'Connecting…', reconnecting: 'Reconnecting…' }[e.detail] || e.detail;
    live.textContent = text;
    live.className = `live live-${e.detail}`;
  });
  document.querySelector('.skip').addEventListener('click', (e) => {
    e.preventDefault();
    const heading = main.querySelector('h1') || main;
    heading.focus();
  });
  const form = document.getElementById('lookup');
  const input = document.getElementById('lookup-input');
  const message = document.getElementById('lookup-message');
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const address = input.value.trim();
    if (!address) return;
    message.textContent = 'Looking up…';
    try {
      const found = await get(`/v1/lookup/${encodeURIComponent(address)}`);
      if (found.kind === 'unknown') {
        message.textContent = `${address} is not a worker, order, lease or supplier of this market.`;
        return;
      }
      message.textContent = '';
      location.hash = `#/${found.page}/${found.target}`;
    } catch (err) {
      message.textContent = err.message;
    }
  });
}

async function boot() {
  header();
  for (;;) {
    try {
      ctx.info = await get('/v1/console');
      break;
    } catch (e) {
      fill(main, h('h1', { tabindex: -1 }, 'The orchestrator does not answer'), h('p', { class: 'error' }, e.message), h('p', {}, 'Trying again…'));
      await new Promise((r) => setTimeout(r, 2000));
    }
  }
  const c = ctx.info.cluster;
  fill(document.getElementById('footer-market'),
    `Market ${ctx.info.market} · ${c.name}${c.explorer_address ? '' : ' (no public explorer)'}`);
  window.addEventListener('hashchange', route);
  route();
}

boot();
