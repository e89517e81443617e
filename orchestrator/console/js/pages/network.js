// The network at a glance: workers by region and GPU class (who is up, GPUs leased), prices per
// class against the reference price and the circuit breaker's band, emission released against
// its schedule, fees and slashes, and every worker with its live load; and the command that
// rents GPUs. Live over the feed: connections at once, the rest read again after each lease or
// settlement event (and every 10 s for what only the chain sees, like stake).

import { get, Feed } from '../api.js';
import { h, fill, tile, section, table, chip, frameThrottle, throttle } from '../dom.js';
import { tokens, perHour, count, bps, duration, when, short, num, tokenNumber } from '../format.js';
import { Chart } from '../chart.js';
import { sampleOf } from '../telemetry.js';
import { gpumesh, commandForm } from '../commands.js';

const PAGE_SIZE = 25;
const REFRESH_MS = 10_000;

function cmpBig(a, b) {
  const x = BigInt(a || 0);
  const y = BigInt(b || 0);
  return x < y ? -1 : x > y ? 1 : 0;
}

export function mount(root, route, ctx) {
  ctx.title('Network');
  const dec = ctx.info.decimals;
  const state = {
    overview: null,
    workers: [],
    connected: new Set(),
    telemetry: new Map(),
    filter: { text: '', region: '', cls: '', status: '' },
    sort: { key: 'worker', dir: 1 },
    page: 0,
    visible: new Set(),
  };

  const tilesEl = h('div', { class: 'tiles', id: 'network-tiles' });
  const gridEl = h('div', { id: 'network-grid' });
  const pricesEl = h('div', { id: 'network-prices' });
  const emissionFacts = h('div');
  const feesEl = h('div', { id: 'network-fees' });
  const workersEl = h('div', { id: 'network-workers' });
  const pagerEl = h('div', { class: 'pager' });
  const rentEl = h('div');
  const emissionChart = new Chart({
    title: 'Emission released (tokens)', series: [{ name: 'schedule' }], xDomain: [0, 1],
    xFormat: (x) => when(x / 1000).slice(0, 10), digits: 0,
  });
  const feesChart = new Chart({
    title: 'Treasury and burned (tokens)', series: [{ name: 'treasury' }, { name: 'burned' }],
    digits: 2, windowMs: 3_600_000,
  });

  const filters = filterBar(state, () => { state.page = 0; renderWorkers(); }, ctx.info.regions);
  fill(root,
    h('div', { class: 'page-head' },
      h('h1', { tabindex: -1 }, 'Network'),
      h('span', { class: 'sub' }, `market ${short(ctx.info.market)} · ${ctx.info.cluster.name}`)),
    tilesEl,
    h('div', { class: 'grid two' },
      section('Workers by region and class', gridEl),
      section('Prices per GPU-hour', pricesEl),
      section('Emission', emissionChart.el, emissionFacts),
      section('Fees and slashes', feesEl, feesChart.el),
      h('div', { class: 'span-all' }, section('Workers', filters, workersEl, pagerEl)),
      h('div', { class: 'span-all' }, section('Rent GPUs', rentEl))));

  function renderTiles() {
    const o = state.overview;
    const up = state.workers.filter((w) => state.connected.has(w.worker)).length;
    fill(tilesEl,
      tile('Workers up / on chain', `${count(up)} / ${count(o.workers_on_chain)}`, { field: 'workers', raw: `${up}/${o.workers_on_chain}` }),
      tile('GPUs leased / all', `${count(o.gpus_leased)} / ${count(o.gpus)}`, { field: 'gpus', raw: `${o.gpus_leased}/${o.gpus}`, hint: `utilisation ${bps(o.utilisation_bps)}` }),
      tile('Open orders', count(o.open_orders), { field: 'open-orders', raw: o.open_orders }),
      tile('Active leases', count(o.active_leases), { field: 'active-leases', raw: o.active_leases }),
      tile('Stake bonded', tokens(o.stake, dec), { field: 'stake', raw: o.stake }),
      tile('Escrow held', tokens(o.escrow, dec), { field: 'escrow', raw: o.escrow }),
      tile('Treasury', tokens(o.fees.treasury, dec), { field: 'treasury', raw: o.fees.treasury }),
      tile('GPU time served', duration(o.gpu_seconds_served), { field: 'gpu-seconds', raw: o.gpu_seconds_served, hint: `${count(o.gpu_seconds_served)} GPU-seconds` }));
  }

  function renderGrid() {
    const cells = new Map();
    const classes = new Set();
    const regions = new Map();
    for (const w of state.workers) {
      const key = `${w.region}/${w.class}`;
      classes.add(w.class);
      regions.set(w.region, ctx.info.regions[w.region] || `region-${w.region}`);
      const c = cells.get(key) || { workers: 0, up: 0, jailed: 0, gpus: 0, leased: 0 };
      c.workers += 1;
      c.up += state.connected.has(w.worker) ? 1 : 0;
      c.jailed += w.jailed ? 1 : 0;
      c.gpus += w.gpus;
      c.leased += w.gpus_leased;
      cells.set(key, c);
    }
    if (!cells.size) {
      fill(gridEl, h('p', { class: 'muted' }, 'No worker is registered in this market yet.'));
      return;
    }
    const cols = [...classes].sort();
    const rows = [...regions.entries()].sort((a, b) => a[0] - b[0]);
    fill(gridEl, h('div', { class: 'scroll', tabindex: 0, role: 'region', 'aria-label': 'Workers by region and class' },
      h('table', { class: 'heat' },
        h('caption', { class: 'visually-hidden' }, 'Workers up of registered, and GPUs leased of all, by region (rows) and GPU class (columns)'),
        h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Region'), cols.map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', {}, rows.map(([code, name]) => h('tr', {},
          h('th', { scope: 'row' }, name),
          cols.map((cls) => {
            const c = cells.get(`${code}/${cls}`);
            if (!c) return h('td', { class: 'cell' }, h('span', { class: 'muted' }, '·'));
            const heat = c.gpus ? Math.min(3, Math.ceil((c.leased / c.gpus) * 3)) : 0;
            return h('td', { class: 'cell', dataset: { region: name, cls, up: c.up, workers: c.workers, leased: c.leased, gpus: c.gpus } },
              h('div', { class: `cell-box h${heat}` },
                h('div', { class: 'cell-main' }, `${c.up}/${c.workers} up`),
                h('div', { class: 'cell-sub' }, `${c.leased}/${c.gpus} GPUs leased`),
                c.jailed ? h('div', { class: 'cell-sub' }, chip(`${c.jailed} jailed`, 'bad')) : null));
          })))))));
  }

  function renderPrices() {
    const o = state.overview;
    const band = `breaker band ${bps(o.breaker_band_bps)} above the reference`;
    if (!o.classes.length) {
      fill(pricesEl, h('p', { class: 'muted' }, 'No prices yet.'));
      return;
    }
    const bar = (c) => {
      const top = [c.breaker_cap, c.ask_max, c.reference_price].filter(Boolean).map((v) => Number(BigInt(v))).reduce((a, b) => Math.max(a, b), 0) * 1.1 || 1;
      const pct = (v) => `${Math.min(100, (Number(BigInt(v)) / top) * 100).toFixed(2)}%`;
      return h('div', { class: 'band', role: 'img', 'aria-label': `${c.class}: asks ${perHour(c.ask_min, dec)} to ${perHour(c.ask_max, dec)}, reference ${perHour(c.reference_price, dec)}, breaker cap ${perHour(c.breaker_cap, dec)}` },
        c.ask_min ? h('div', { class: 'range', style: null, dataset: { left: pct(c.ask_min), right: pct(c.ask_max) } }) : null,
        c.reference_price ? h('div', { class: 'mark', dataset: { at: pct(c.reference_price) }, title: 'reference' }) : null,
        c.breaker_cap ? h('div', { class: 'mark cap', dataset: { at: pct(c.breaker_cap) }, title: 'breaker cap' }) : null);
    };
    fill(pricesEl,
      h('p', { class: 'muted small' }, `Asks of the workers (bar: lowest to highest), the reference price (black mark) and the circuit breaker's cap (red mark): no lease is struck above the cap; ${band}.`),
      table([
        { label: 'Class', cell: (c) => c.class },
        { label: 'GPUs leased', num: true, cell: (c) => `${c.gpus_leased}/${c.gpus}` },
        { label: 'Asks (low · median · high)', cell: (c) => c.ask_min ? `${perHour(c.ask_min, dec)} · ${perHour(c.ask_median, dec)} · ${perHour(c.ask_max, dec)}` : '—' },
        { label: 'Reference', num: true, cell: (c) => h('span', { dataset: { field: `reference-${c.class}`, raw: c.reference_price ?? '' } }, perHour(c.reference_price, dec)) },
        { label: 'Breaker cap', num: true, cell: (c) => h('span', { dataset: { field: `cap-${c.class}`, raw: c.breaker_cap ?? '' } }, perHour(c.breaker_cap, dec)) },
        { label: 'Above cap', num: true, cell: (c) => (c.asking_above_cap ? chip(`${c.asking_above_cap} workers`, 'warn') : '0') },
        { label: 'Band', cell: bar },
      ], o.classes, { caption: 'Prices per GPU class' }));
    // Positions go through the CSSOM (the policy allows no inline style attributes).
    for (const el of pricesEl.querySelectorAll('.band .range')) {
      el.style.left = el.dataset.left;
      el.style.width = `calc(${el.dataset.right} - ${el.dataset.left} + 3px)`;
    }
    for (const el of pricesEl.querySelectorAll('.band .mark')) el.style.left = el.dataset.at;
  }

  function renderEmission() {
    const e = state.overview.emission;
    const start = e.start_ts * 1000;
    const end = (e.start_ts + e.duration_s) * 1000;
    const total = tokenNumber(e.total, dec);
    if (e.duration_s > 0) {
      emissionChart.xDomain = [start, end];
      emissionChart.set(0, [[start, 0], [end, total]]);
      emissionChart.setMarkers([
        { x: e.as_of_ts * 1000, y: tokenNumber(e.unlocked, dec), label: 'released now' },
      ]);
    }
    const share = BigInt(e.total) > 0n ? Number((BigInt(e.unlocked) * 1_000_000n) / BigInt(e.total)) / 10_000 : 0;
    fill(emissionFacts, h('dl', { class: 'facts' },
      h('dt', {}, 'Schedule'), h('dd', {}, `${tokens(e.total, dec)} over ${duration(e.duration_s)} from ${when(e.start_ts)}`),
      h('dt', {}, 'Released by now'), h('dd', { dataset: { field: 'emission-unlocked', raw: e.unlocked } }, `${tokens(e.unlocked, dec)} (${share.toLocaleString('en-US', { maximumFractionDigits: 4 })} % of the line)`),
      h('dt', {}, 'Funded'), h('dd', { dataset: { field: 'emission-funded', raw: e.funded } }, tokens(e.funded, dec)),
      h('dt', {}, 'Shared among leased GPUs'), h('dd', { dataset: { field: 'emission-distributed', raw: e.distributed } }, tokens(e.distributed, dec)),
      h('dt', {}, 'Paid to suppliers'), h('dd', { dataset: { field: 'emission-paid', raw: e.paid } }, tokens(e.paid, dec)),
      h('dt', {}, 'Released with no GPU leased'), h('dd', {}, tokens(e.undistributed, dec)),
      h('dt', {}, 'Released unfunded (never paid)'), h('dd', {}, tokens(e.unfunded, dec))));
  }

  function renderFees() {
    const o = state.overview;
    fill(feesEl, h('dl', { class: 'facts' },
      h('dt', {}, 'Protocol fee'), h('dd', {}, `${bps(o.fees.protocol_fee_bps)} of each payment, ${bps(o.fees.fee_burn_bps)} of it burned`),
      h('dt', {}, 'Treasury'), h('dd', { dataset: { field: 'fees-treasury', raw: o.fees.treasury } }, tokens(o.fees.treasury, dec)),
      h('dt', {}, 'Burned'), h('dd', { dataset: { field: 'fees-burned', raw: o.fees.burned } }, tokens(o.fees.burned, dec)),
      h('dt', {}, 'Slashes'), h('dd', { dataset: { field: 'slashes', raw: o.slashes.total } }, `${count(o.slashes.count)} took ${tokens(o.slashes.total, dec)}`),
      h('dt', {}, 'Leases lost offline · frauds'), h('dd', {}, `${count(o.slashes.failures)} · ${count(o.slashes.frauds)}`),
      h('dt', {}, 'Workers in jail'), h('dd', {}, count(o.slashes.jailed_workers))));
    const hist = o.history || [];
    if (hist.length) {
      feesChart.windowMs = Math.max(300_000, Date.now() - hist[0].unix_ms);
      feesChart.set(0, hist.map((s) => [s.unix_ms, tokenNumber(s.treasury, dec)]));
      feesChart.set(1, hist.map((s) => [s.unix_ms, tokenNumber(s.burned, dec)]));
      feesChart.push(Date.now(), [tokenNumber(o.fees.treasury, dec), tokenNumber(o.fees.burned, dec)]);
    }
  }

  function status(w) {
    if (w.jailed) return 'jailed';
    return state.connected.has(w.worker) ? 'up' : 'down';
  }

  function rowsShown() {
    const f = state.filter;
    const text = f.text.toLowerCase();
    let rows = state.workers.filter((w) => (!text || w.worker.toLowerCase().includes(text) || w.owner.toLowerCase().includes(text))
      && (f.region === '' || String(w.region) === f.region)
      && (!f.cls || w.class === f.cls)
      && (!f.status || status(w) === f.status));
    const { key, dir } = state.sort;
    const by = {
      worker: (a, b) => a.worker.localeCompare(b.worker),
      class: (a, b) => a.class.localeCompare(b.class),
      region: (a, b) => a.region - b.region,
      gpus: (a, b) => a.gpus - b.gpus || a.gpus_leased - b.gpus_leased,
      price: (a, b) => cmpBig(a.price_per_gpu_second, b.price_per_gpu_second),
      stake: (a, b) => cmpBig(a.stake, b.stake),
      status: (a, b) => status(a).localeCompare(status(b)),
      served: (a, b) => a.served_gpu_seconds - b.served_gpu_seconds,
    }[key];
    rows = rows.slice().sort((a, b) => dir * by(a, b) || a.worker.localeCompare(b.worker));
    return rows;
  }

  function sortHeader(label, key) {
    const active = state.sort.key === key;
    return h('button', {
      type: 'button', class: 'sort',
      'aria-label': `Sort by ${label}${active ? (state.sort.dir > 0 ? ', ascending now' : ', descending now') : ''}`,
      onclick: () => {
        state.sort = { key, dir: active ? -state.sort.dir : 1 };
        renderWorkers();
      },
    }, `${label}${active ? (state.sort.dir > 0 ? ' ▲' : ' ▼') : ''}`);
  }

  function renderWorkers() {
    const rows = rowsShown();
    const pages = Math.max(1, Math.ceil(rows.length / PAGE_SIZE));
    state.page = Math.min(state.page, pages - 1);
    const shown = rows.slice(state.page * PAGE_SIZE, (state.page + 1) * PAGE_SIZE);
    state.visible = new Set(shown.map((w) => w.worker));
    const live = (w) => state.telemetry.get(w.worker);
    fill(workersEl, table([
      { label: sortHeader('Worker', 'worker'), cell: (w) => h('a', { href: ctx.link.worker(w.worker), title: w.worker }, short(w.worker)) },
      { label: sortHeader('Class', 'class'), cell: (w) => w.class },
      { label: sortHeader('Region', 'region'), cell: (w) => ctx.info.regions[w.region] || `region-${w.region}` },
      { label: sortHeader('GPUs leased', 'gpus'), num: true, cell: (w) => `${w.gpus_leased}/${w.gpus}` },
      { label: sortHeader('Ask', 'price'), num: true, cell: (w) => perHour(w.price_per_gpu_second, dec) },
      { label: sortHeader('Stake', 'stake'), num: true, cell: (w) => tokens(w.stake, dec) },
      { label: sortHeader('Status', 'status'), cell: (w) => ({ up: chip('up', 'ok'), down: chip('down', 'bad'), jailed: chip('jailed', 'warn') })[status(w)] },
      { label: 'Load', num: true, cell: (w) => (live(w) ? num(live(w).utilization_pct, '%', 0) : '—') },
      { label: 'Heat', num: true, cell: (w) => (live(w) && live(w).temperature_c !== null ? num(live(w).temperature_c, '°C', 0) : '—') },
      { label: sortHeader('Served', 'served'), num: true, cell: (w) => duration(w.served_gpu_seconds) },
    ], shown, {
      caption: 'Workers',
      empty: state.workers.length ? 'No worker matches the filters.' : 'No worker is registered yet.',
      rowAttrs: (w) => ({ class: status(w) === 'down' ? 'down' : null, dataset: { worker: w.worker, status: status(w) } }),
    }));
    fill(pagerEl,
      h('button', { type: 'button', disabled: state.page === 0 || null, onclick: () => { state.page -= 1; renderWorkers(); } }, 'Previous'),
      h('span', { 'aria-live': 'polite' }, `${rows.length ? state.page * PAGE_SIZE + 1 : 0}–${state.page * PAGE_SIZE + shown.length} of ${count(rows.length)} workers (page ${state.page + 1} of ${pages})`),
      h('button', { type: 'button', disabled: state.page >= pages - 1 || null, onclick: () => { state.page += 1; renderWorkers(); } }, 'Next'));
  }

  function renderRent() {
    const o = state.overview;
    const classes = o.classes.filter((c) => c.workers > 0);
    if (!classes.length) {
      fill(rentEl, h('p', { class: 'muted' }, 'Nothing to rent yet: no worker is registered.'));
      return;
    }
    const first = classes[0];
    const regionNames = [...new Set(state.workers.filter((w) => w.class === first.class).map((w) => ctx.info.regions[w.region]).filter(Boolean))];
    const perH = (v) => tokens((BigInt(v || 0) * 3600n).toString(), dec);
    fill(rentEl,
      h('p', {}, 'Buyers put escrow down with their own wallet: fill in the order and run the command; then upload the job spec so the orchestrator can start it.'),
      commandForm('Create the order', [
        { name: 'class', label: 'GPU class', value: first.class, options: classes.map((c) => [c.class, c.class]) },
        { name: 'gpus', label: 'GPUs', value: '1', type: 'number', inputmode: 'numeric' },
        { name: 'regions', label: 'Regions', value: regionNames.join(','), options: ctx.info.regions.map((r) => [r, r]), multiple: true },
        { name: 'price', label: 'Max price (tokens per GPU-hour)', value: perH(first.ask_median) },
        { name: 'duration', label: 'Duration', value: '1h' },
        { name: 'deposit', label: 'Deposit (tokens)', value: perH(first.ask_median) },
        { name: 'spec', label: 'Job spec file', value: 'job.toml' },
      ], (v) => gpumesh(ctx, ['order', 'create', '--class', v.class, '--gpus', v.gpus || '1', '--regions', v.regions || '?',
        '--max-price', `${v.price}/h`, '--duration', v.duration, '--deposit', v.deposit, '--spec', v.spec]),
      'Signed by the buyer\'s wallet (--keypair FILE, default ~/.config/solana/id.json). It prints the order\'s id.'),
      h('p', { class: 'small' }, 'Then: ', h('code', { class: 'mono' }, `gpumesh order upload-spec ID job.toml --orchestrator ${location.origin}`)));
  }

  function renderAll() {
    renderTiles();
    renderGrid();
    renderPrices();
    renderEmission();
    renderFees();
    renderWorkers();
    if (!rentEl.firstChild) renderRent();
    filters.update(state);
  }

  let closed = false;
  async function refresh() {
    try {
      const [o, w] = await Promise.all([get('/v1/market/overview'), get('/v1/market/workers')]);
      if (closed) return;
      state.overview = o;
      state.workers = w.workers;
      state.connected = new Set(w.workers.filter((x) => x.connected).map((x) => x.worker));
      renderAll();
      ctx.rendered('network');
    } catch (e) {
      if (!closed && !state.overview) fill(tilesEl, h('p', { class: 'error' }, `Cannot read the market: ${e.message}`));
    }
  }
  const refreshSoon = throttle(refresh, 1000);
  const statusChanged = frameThrottle(() => {
    if (!state.overview) return;
    renderTiles();
    renderGrid();
    renderWorkers();
  });
  let lastTable = 0;
  const liveLoad = frameThrottle(() => {
    if (!state.overview || performance.now() - lastTable < 1000) return;
    lastTable = performance.now();
    renderWorkers();
  });

  const feed = new Feed('', {
    onOpen: refresh,
    onEvent: (e) => {
      switch (e.type) {
        case 'telemetry':
          state.telemetry.set(e.worker, sampleOf(e.telemetry, e.rtt_us, Date.now()));
          if (state.visible.has(e.worker)) liveLoad();
          break;
        case 'worker_connected':
          state.connected.add(e.worker);
          if (!state.workers.some((w) => w.worker === e.worker)) refreshSoon();
          statusChanged();
          break;
        case 'worker_disconnected':
          state.connected.delete(e.worker);
          statusChanged();
          break;
        case 'worker_down':
        case 'lease_started':
        case 'lease_ended':
        case 'settled':
        case 'order_completed':
        case 'challenge':
          refreshSoon();
          break;
        default:
      }
    },
  });
  const timer = setInterval(refresh, REFRESH_MS);
  return {
    unmount() {
      closed = true;
      feed.close();
      clearInterval(timer);
      emissionChart.destroy();
      feesChart.destroy();
    },
  };
}

/** Search, region, class and status filters over the workers' table. */
function filterBar(state, changed, regionNames) {
  const id = (n) => `wf-${n}`;
  const text = h('input', { id: id('text'), type: 'search', placeholder: 'address', spellcheck: 'false' });
  const region = h('select', { id: id('region') });
  const cls = h('select', { id: id('class') });
  const status = h('select', { id: id('status') },
    [['', 'any'], ['up', 'up'], ['down', 'down'], ['jailed', 'jailed']].map(([v, t]) => h('option', { value: v }, t)));
  text.addEventListener('input', () => { state.filter.text = text.value.trim(); changed(); });
  region.addEventListener('change', () => { state.filter.region = region.value; changed(); });
  cls.addEventListener('change', () => { state.filter.cls = cls.value; changed(); });
  status.addEventListener('change', () => { state.filter.status = status.value; changed(); });
  const el = h('div', { class: 'filters' },
    h('div', { class: 'field' }, h('label', { for: id('text') }, 'Worker or owner'), text),
    h('div', { class: 'field' }, h('label', { for: id('region') }, 'Region'), region),
    h('div', { class: 'field' }, h('label', { for: id('class') }, 'Class'), cls),
    h('div', { class: 'field' }, h('label', { for: id('status') }, 'Status'), status));
  let known = '';
  el.update = (s) => {
    const regions = [...new Set(s.workers.map((w) => w.region))].sort((a, b) => a - b);
    const classes = [...new Set(s.workers.map((w) => w.class))].sort();
    const key = `${regions.join(',')}|${classes.join(',')}`;
    if (key === known) return;
    known = key;
    fill(region, h('option', { value: '' }, 'any'), regions.map((r) => h('option', { value: String(r) }, regionNames[r] || `region-${r}`)));
    fill(cls, h('option', { value: '' }, 'any'), classes.map((c) => h('option', { value: c }, c)));
    region.value = s.filter.region;
    cls.value = s.filter.cls;
  };
  return el;
}
