// The operator's view of this orchestrator: RPC health, whether it follows the chain, worker
// connections, the settlement backlog, failovers, failed transactions, orders waiting and why,
// and the newest notable events, live (the service's counters every second, events as they
// happen). The same counters are at /metrics for Prometheus.

import { get, Feed } from '../api.js';
import { h, fill, tile, section, table, chip } from '../dom.js';
import { count, num, when, short, duration } from '../format.js';
import { Chart } from '../chart.js';

const POLL_MS = 1000;
const EVENTS_KEPT = 100;

function describe(e, link) {
  const w = (a) => h('a', { href: link.worker(a), title: a }, short(a));
  const o = (a) => h('a', { href: link.order(a), title: a }, short(a));
  switch (e.type) {
    case 'worker_connected': return ['Worker ', w(e.worker), ` connected (${e.gpus} GPUs, ${e.backend})`];
    case 'worker_disconnected': return ['Worker ', w(e.worker), ' disconnected'];
    case 'worker_down': return ['Worker ', w(e.worker), ` declared down after ${num(e.silent_ms / 1000, 's', 1)} silent; order `, o(e.order), ' moves'];
    case 'lease_started': return ['Lease of order ', o(e.order), ' started on ', w(e.worker), ` (${e.gpus} GPUs)`];
    case 'lease_ended': return ['Lease of order ', o(e.order), ' on ', w(e.worker), ` ended: ${e.reason.replaceAll('_', ' ')}`];
    case 'settled': return ['Settled order ', o(e.order), ` up to ${e.served_seconds} s on `, w(e.worker), ' in ', h('code', { class: 'mono', title: e.signature }, short(e.signature))];
    case 'order_completed': return ['Order ', o(e.order), ' completed'];
    case 'challenge': return ['Worker ', w(e.worker), e.passed ? ' passed' : ' failed', ` a compute challenge (n = ${e.n})${e.reason ? `: ${e.reason}` : ''}`];
    default: return [e.type];
  }
}

export function mount(root, route, ctx) {
  ctx.title('Operator');
  const tilesEl = h('div', { class: 'tiles', id: 'operator-tiles' });
  const waitingEl = h('div', { id: 'operator-waiting' });
  const eventsEl = h('ul', { class: 'events', id: 'operator-events', 'aria-live': 'off' });
  const charts = {
    backlog: new Chart({ title: 'Settlement backlog (leases)', series: [{ name: 'backlog' }], digits: 0 }),
    connections: new Chart({ title: 'Workers connected', series: [{ name: 'connected' }], digits: 0 }),
    heartbeats: new Chart({ title: 'Heartbeats per second', series: [{ name: 'heartbeats' }], digits: 1 }),
    rpc: new Chart({ title: 'RPC latency', series: [{ name: 'latency' }], unit: 'ms', digits: 1 }),
  };
  for (const [k, c] of Object.entries(charts)) c.el.dataset.chart = k;
  fill(root,
    h('div', { class: 'page-head' }, h('h1', { tabindex: -1 }, 'Operator'),
      h('span', { class: 'sub' }, `orchestrator ${short(ctx.info.orchestrator)} · market ${short(ctx.info.market)}`)),
    tilesEl,
    section('Over time', h('div', { class: 'charts' }, Object.values(charts).map((c) => c.el))),
    h('div', { class: 'grid two' },
      section('Orders waiting', waitingEl),
      section('Recent events', eventsEl)),
    h('p', { class: 'small' }, 'Prometheus: ', h('a', { href: '/metrics' }, '/metrics'), ' · API: ', h('a', { href: '/v1/openapi.json' }, '/v1/openapi.json')));

  let last = null;
  let closed = false;
  let seeded = false;

  function event(unixMs, e) {
    eventsEl.prepend(h('li', { dataset: { type: e.type } }, h('span', { class: 'muted small' }, `${when(unixMs, { ms: true })} `), describe(e, ctx.link)));
    while (eventsEl.childNodes.length > EVENTS_KEPT) eventsEl.lastChild.remove();
  }

  function render(o) {
    const c = o.counters;
    const rate = last ? ((c.heartbeats - last.counters.heartbeats) * 1000) / Math.max(1, o.now_ms - last.now_ms) : null;
    const rpc = o.rpc;
    fill(tilesEl,
      tile('RPC', rpc.ok ? `ok · ${num(rpc.latency_ms, 'ms', 1)}` : 'failing', { field: 'rpc', raw: rpc.ok ? 'ok' : 'failing', tone: rpc.ok ? 'ok' : 'bad', hint: rpc.ok ? `clock skew ${rpc.clock_skew_s} s` : rpc.error }),
      tile('Chain', o.following_chain ? 'following' : 'listing (websocket down)', { field: 'following', raw: o.following_chain, tone: o.following_chain ? 'ok' : 'bad', hint: `${count(c.chain_updates)} updates · ${count(c.chain_reconnects)} reconnects` }),
      tile('Workers connected', count(o.connected_workers), { field: 'connected', raw: o.connected_workers }),
      tile('Leases operated', count(o.leases_operated), { field: 'leases', raw: o.leases_operated }),
      tile('Settlement backlog', count(o.settlement_backlog), { field: 'backlog', raw: o.settlement_backlog, hint: 'leases with receipts not yet settled' }),
      tile('Settlements', count(c.settlements), { field: 'settlements', raw: c.settlements, hint: `${count(c.receipts)} receipts stored` }),
      tile('Failovers', count(c.failovers), { field: 'failovers', raw: c.failovers, hint: c.failover_count ? `mean ${num((c.failover_seconds_sum / c.failover_count), 's', 2)} to the new lease` : null }),
      tile('Failed transactions', count(c.failed_transactions), { field: 'failed-transactions', raw: c.failed_transactions, tone: c.failed_transactions ? 'bad' : null }),
      tile('RPC errors', count(c.rpc_errors), { field: 'rpc-errors', raw: c.rpc_errors, tone: c.rpc_errors ? 'bad' : null }),
      tile('Protocol errors', count(c.protocol_errors), { field: 'protocol-errors', raw: c.protocol_errors }),
      tile('Challenges', `${count(c.challenges_passed)} passed · ${count(c.challenges_failed)} failed`, { field: 'challenges', raw: `${c.challenges_passed}/${c.challenges_failed}` }),
      tile('Placement rounds', count(c.placement_rounds), { field: 'placement', raw: c.placement_rounds, hint: c.placement_rounds ? `mean ${num((c.placement_seconds_sum / c.placement_rounds) * 1000, 'ms', 2)}` : null }),
      tile('Heartbeats', rate === null ? count(c.heartbeats) : `${num(rate, '/s', 1)}`, { field: 'heartbeats', raw: c.heartbeats, hint: `${count(c.heartbeats)} in all` }));
    fill(waitingEl, table([
      { label: 'Order', cell: (w) => h('a', { href: ctx.link.order(w.order), title: w.order }, short(w.order)) },
      { label: 'Why it waits', cell: (w) => w.reason },
    ], o.waiting, { caption: 'Orders waiting', empty: 'No order is waiting.' }));
    charts.backlog.push(o.now_ms, [o.settlement_backlog]);
    charts.connections.push(o.now_ms, [o.connected_workers]);
    if (rate !== null) charts.heartbeats.push(o.now_ms, [rate]);
    if (rpc.latency_ms !== null) charts.rpc.push(o.now_ms, [rpc.latency_ms]);
    if (!seeded) {
      seeded = true;
      for (const n of o.recent.slice().reverse()) event(n.unix_ms, n.event);
    }
    last = o;
  }

  async function poll() {
    try {
      const o = await get('/v1/operator');
      if (closed) return;
      render(o);
      ctx.rendered('operator');
    } catch (e) {
      if (!last) fill(tilesEl, h('p', { class: 'error' }, `Cannot read the service: ${e.message}`));
    }
  }
  const feed = new Feed('', {
    onOpen: poll,
    onEvent: (e) => {
      if (!seeded) return;
      if (['worker_connected', 'worker_disconnected', 'worker_down', 'lease_started', 'lease_ended', 'settled', 'order_completed', 'challenge'].includes(e.type)) {
        event(Date.now(), e);
      }
    },
  });
  const timer = setInterval(poll, POLL_MS);
  return {
    unmount() {
      closed = true;
      feed.close();
      clearInterval(timer);
      for (const c of Object.values(charts)) c.destroy();
    },
  };
}
