// A supplier (an owner wallet): its worker in this market, what it earned from service and from
// emission over time, what is left to claim, and the yield its stake earned, with the commands
// that move the money (signed by the owner's wallet, never here).

import { get, Feed } from '../api.js';
import { h, fill, tile, section, copyable, throttle } from '../dom.js';
import { tokens, duration, when, short, tokenNumber } from '../format.js';
import { Chart } from '../chart.js';
import { gpumesh, commandBlock, commandForm } from '../commands.js';

export function mount(root, route, ctx) {
  const owner = route.arg;
  const dec = ctx.info.decimals;
  ctx.title(`Supplier ${short(owner)}`);
  const chart = new Chart({
    title: 'Earned over time (tokens)', series: [{ name: 'earnings' }, { name: 'emission rewards' }, { name: 'slashed' }],
    digits: 4, windowMs: 3_600_000,
  });
  chart.el.dataset.chart = 'earnings';
  const subEl = h('span', { class: 'sub' });
  const tilesEl = h('div', { class: 'tiles', id: 'supplier-tiles' });
  const yieldEl = h('div', { id: 'supplier-yield' });
  const commandsEl = h('div');
  fill(root,
    h('div', { class: 'page-head' }, h('h1', { tabindex: -1 }, 'Supplier'), subEl),
    h('p', {}, copyable(owner, { label: 'Copy the owner address', field: 'address' })),
    tilesEl,
    h('div', { class: 'grid two' },
      section('Earnings and rewards', chart.el),
      section('Yield of the stake', yieldEl),
      h('div', { class: 'span-all' }, section('Owner\'s commands', commandsEl))));

  let supplier = null;
  let closed = false;
  let feed = null;

  function render() {
    const d = supplier.detail;
    if (!d) {
      fill(subEl, 'no worker in this market');
      fill(tilesEl, h('p', {}, `${owner} has no worker registered in this market. Register one with `,
        h('code', { class: 'mono' }, gpumesh(ctx, ['worker', 'register', '--class', 'CLASS', '--region', 'REGION', '--price', 'PRICE/h', '--node-key', 'NODE_KEY'])), '.'));
      return;
    }
    const a = d.account;
    fill(subEl, 'worker ', h('a', { href: ctx.link.worker(supplier.worker), title: supplier.worker }, short(supplier.worker)),
      ` · ${a.gpus} × ${a.class} in ${a.region_name} · registered ${when(a.registered_ts)}`);
    fill(tilesEl,
      tile('Earnings to claim', tokens(a.earnings_claimable, dec), { field: 'earnings-claimable', raw: a.earnings_claimable }),
      tile('Earned from service', tokens(a.earnings_total, dec), { field: 'earnings-total', raw: a.earnings_total, hint: 'after the protocol fee' }),
      tile('Rewards to claim', tokens(a.rewards_claimable, dec), { field: 'rewards-claimable', raw: a.rewards_claimable }),
      tile('Emission rewards', tokens(a.rewards_total, dec), { field: 'rewards-total', raw: a.rewards_total }),
      tile('Stake bonded', tokens(a.stake, dec), { field: 'stake', raw: a.stake }),
      tile('Slashed', tokens(a.slashed_total, dec), { field: 'slashed', raw: a.slashed_total, tone: a.slashes ? 'bad' : null }));
    const y = d.stake_yield;
    fill(yieldEl, y ? [
      h('dl', { class: 'facts' },
        h('dt', {}, 'From fees'), h('dd', { dataset: { field: 'yield-fees', raw: y.fees_percent_per_year } }, `${y.fees_percent_per_year} % a year`),
        h('dt', {}, 'From emission'), h('dd', { dataset: { field: 'yield-emission', raw: y.emission_percent_per_year } }, `${y.emission_percent_per_year} % a year`),
        h('dt', {}, 'Together'), h('dd', { dataset: { field: 'yield-total', raw: y.total_percent_per_year } }, h('strong', {}, `${y.total_percent_per_year} % a year`)),
        h('dt', {}, 'Net of slashes'), h('dd', { dataset: { field: 'yield-net', raw: y.net_percent_per_year } }, `${y.net_percent_per_year} % a year`)),
      h('p', { class: 'muted small' }, `Over the worker's life (${duration(y.seconds)} since registration), on the ${tokens(a.stake, dec)} bonded now: a past figure, not a forecast. The same rule as \`gpumesh worker status\`.`),
    ] : h('p', { class: 'muted' }, 'No yield to show: nothing bonded.'));
    const hist = d.history;
    if (hist.length) {
      chart.windowMs = Math.max(300_000, Date.now() - hist[0].unix_ms);
      chart.set(0, hist.map((s) => [s.unix_ms, tokenNumber(s.earnings_total, dec)]));
      chart.set(1, hist.map((s) => [s.unix_ms, tokenNumber(s.rewards_total, dec)]));
      chart.set(2, hist.map((s) => [s.unix_ms, tokenNumber(s.slashed_total, dec)]));
      chart.push(Date.now(), [tokenNumber(a.earnings_total, dec), tokenNumber(a.rewards_total, dec), tokenNumber(a.slashed_total, dec)]);
    }
    if (!commandsEl.firstChild) {
      const sign = 'Signed by the owner\'s wallet (--keypair FILE unless it is your default).';
      fill(commandsEl, h('div', { class: 'grid two' },
        commandBlock('Claim earnings', gpumesh(ctx, ['worker', 'claim']), sign),
        commandBlock('Claim emission rewards', gpumesh(ctx, ['worker', 'claim-rewards']), sign),
        commandForm('Stake more', [{ name: 'amount', label: 'Tokens', value: '100' }], (v) => gpumesh(ctx, ['worker', 'stake', v.amount || '0']), sign),
        commandForm('Start unbonding', [{ name: 'amount', label: 'Tokens', value: '100' }], (v) => gpumesh(ctx, ['worker', 'unstake', v.amount || '0']), sign),
        commandBlock('Withdraw unbonded stake', gpumesh(ctx, ['worker', 'withdraw']), sign),
        commandBlock('The same figures in the terminal', gpumesh(ctx, ['worker', 'status', '--owner', owner]), 'Reads only: no signature.')));
    }
  }

  async function refresh() {
    try {
      const s = await get(`/v1/suppliers/${owner}`);
      if (closed) return;
      supplier = s;
      render();
      ctx.rendered('supplier');
      if (!feed && s.detail) {
        feed = new Feed(`worker=${encodeURIComponent(s.worker)}`, {
          onOpen: refresh,
          onEvent: (e) => { if (e.type !== 'telemetry') refreshSoon(); },
        });
      }
    } catch (e) {
      if (!supplier) fill(tilesEl, h('p', { class: 'error' }, `Cannot read supplier ${owner}: ${e.message}`));
    }
  }
  const refreshSoon = throttle(refresh, 500);
  refresh();
  const timer = setInterval(refresh, 10_000);
  return {
    unmount() {
      closed = true;
      if (feed) feed.close();
      clearInterval(timer);
      chart.destroy();
    },
  };
}
