// One worker: live telemetry charts (temperature, utilisation, memory, power, latency) from the
// feed, its GPUs now, stake, earnings, rewards, slashes and jail from the chain, its leases now
// and before, its compute-challenge results, and the owner's commands.

import { get, Feed } from '../api.js';
import { h, fill, tile, section, table, chip, copyable, frameThrottle, throttle } from '../dom.js';
import { tokens, perHour, count, bps, duration, when, short, num, gib } from '../format.js';
import { Chart } from '../chart.js';
import { sampleOf } from '../telemetry.js';
import { gpumesh, commandBlock, commandForm } from '../commands.js';

export function mount(root, route, ctx) {
  const address = route.arg;
  const dec = ctx.info.decimals;
  ctx.title(`Worker ${short(address)}`);
  const charts = {
    temperature: new Chart({ title: 'Temperature (hottest GPU)', series: [{ name: 'temperature' }], unit: '°C', digits: 1, yMin: 0 }),
    utilization: new Chart({ title: 'Utilisation (mean of GPUs)', series: [{ name: 'utilisation' }], unit: '%', digits: 1, yMin: 0, yMax: 100 }),
    memory: new Chart({ title: 'Memory in use', series: [{ name: 'used' }, { name: 'total' }], unit: 'GiB', digits: 1, yMin: 0 }),
    power: new Chart({ title: 'Power (all GPUs)', series: [{ name: 'power' }], unit: 'W', digits: 0, yMin: 0 }),
    latency: new Chart({ title: 'Latency (round trip to the orchestrator)', series: [{ name: 'round trip' }], unit: 'ms', digits: 2, yMin: 0 }),
  };
  for (const [k, c] of Object.entries(charts)) c.el.dataset.chart = k;

  const statusEl = h('span');
  const subEl = h('span', { class: 'sub' });
  const tilesEl = h('div', { class: 'tiles', id: 'worker-tiles' });
  const gpusEl = h('div', { id: 'worker-gpus' });
  const leasesEl = h('div', { id: 'worker-leases' });
  const challengesEl = h('div', { id: 'worker-challenges' });
  const commandsEl = h('div');
  fill(root,
    h('div', { class: 'page-head' },
      h('h1', { tabindex: -1 }, 'Worker'), statusEl, subEl),
    h('p', {}, copyable(address, { label: 'Copy the worker address', field: 'address' })),
    tilesEl,
    section('Live telemetry', h('div', { class: 'charts' }, Object.values(charts).map((c) => c.el))),
    h('div', { class: 'grid two' },
      section('GPUs now', gpusEl),
      section('Compute challenges', challengesEl),
      h('div', { class: 'span-all' }, section('Leases', leasesEl)),
      h('div', { class: 'span-all' }, section('Owner\'s commands', commandsEl))));

  let detail = null;
  let telemetry = null;
  let backfilled = false;
  let closed = false;

  function push(s) {
    charts.temperature.push(s.unix_ms, [s.temperature_c]);
    charts.utilization.push(s.unix_ms, [s.utilization_pct]);
    charts.memory.push(s.unix_ms, [s.memory_used_mib / 1024, s.memory_total_mib / 1024]);
    charts.power.push(s.unix_ms, [s.power_w]);
    charts.latency.push(s.unix_ms, [s.rtt_ms]);
  }

  function renderHead() {
    const a = detail.account;
    const up = !!detail.connection;
    fill(statusEl, a.jailed ? chip('jailed', 'warn') : up ? chip('up', 'ok') : chip('down', 'bad'));
    statusEl.dataset.status = a.jailed ? 'jailed' : up ? 'up' : 'down';
    fill(subEl, `${a.gpus} × ${a.class} · ${a.region_name} · ${gib(a.vram_mib)} each · asks ${perHour(a.price_per_gpu_second, dec)} · owner `,
      h('a', { href: ctx.link.supplier(a.owner), title: a.owner }, short(a.owner)));
  }

  function renderTiles() {
    const a = detail.account;
    fill(tilesEl,
      tile('Stake bonded', tokens(a.stake, dec), { field: 'stake', raw: a.stake }),
      tile('Unbonding', tokens(a.unbonding, dec), { field: 'unbonding', raw: a.unbonding, hint: BigInt(a.unbonding) > 0n ? `unlocks ${when(a.unlock_ts)}` : null }),
      tile('Earnings to claim', tokens(a.earnings_claimable, dec), { field: 'earnings-claimable', raw: a.earnings_claimable, hint: `${tokens(a.earnings_total, dec)} earned in all` }),
      tile('Earned in all', tokens(a.earnings_total, dec), { field: 'earnings-total', raw: a.earnings_total }),
      tile('Rewards to claim', tokens(a.rewards_claimable, dec), { field: 'rewards-claimable', raw: a.rewards_claimable, hint: `${tokens(a.rewards_total, dec)} in all` }),
      tile('Slashed', tokens(a.slashed_total, dec), { field: 'slashed', raw: a.slashed_total, hint: `${count(a.slashes)} slashes`, tone: a.slashes ? 'bad' : null }),
      tile('Jail', a.jailed ? `until ${when(a.jailed_until)}` : 'not jailed', { field: 'jail', raw: a.jailed ? a.jailed_until : 0, tone: a.jailed ? 'bad' : null }),
      tile('GPU time served', duration(a.served_gpu_seconds), { field: 'served', raw: a.served_gpu_seconds, hint: `${count(a.served_gpu_seconds)} GPU-seconds` }),
      tile('Leases', `${count(a.leases)}`, { field: 'leases', raw: a.leases, hint: `${a.leases_completed} completed · ${a.failures} lost offline · ${a.frauds} frauds` }),
      tile('GPUs leased', `${a.gpus_leased} / ${a.gpus}`, { field: 'gpus-leased', raw: a.gpus_leased }),
      tile('Reliability', bps(a.reliability_bps), { field: 'reliability', raw: a.reliability_bps }),
      tile('Connection', detail.connection ? `${duration(detail.connection.connected_s)}` : 'not connected',
        { field: 'connection', hint: detail.connection ? `${detail.connection.hardware.backend} · ${detail.connection.verified ? 'class proven' : 'not proven yet'}` : null }));
  }

  function renderGpus() {
    const t = telemetry || (detail && detail.connection && detail.connection.telemetry);
    if (!t) {
      fill(gpusEl, h('p', { class: 'muted' }, 'Not connected: no telemetry.'));
      return;
    }
    if (!t.gpus.length) {
      fill(gpusEl, h('p', {}, `No GPU reported: the host's CPU at ${num(t.cpu_pct, '%', 0)}, memory ${gib(t.memory_used_mib)} of ${gib(t.memory_total_mib)}.`));
      return;
    }
    fill(gpusEl, table([
      { label: 'GPU', cell: (g) => `#${g.index}` },
      { label: 'Temp', num: true, cell: (g) => num(g.temperature_c, '°C', 0) },
      { label: 'Load', num: true, cell: (g) => num(g.utilization_pct, '%', 0) },
      { label: 'Memory', num: true, cell: (g) => `${gib(g.memory_used_mib)} / ${gib(g.memory_total_mib)}` },
      { label: 'Power', num: true, cell: (g) => num(g.power_w, 'W', 0) },
      { label: 'Clocks', num: true, cell: (g) => `${g.sm_clock_mhz} / ${g.memory_clock_mhz} MHz` },
    ], t.gpus, { caption: 'GPUs now' }));
  }

  function renderLeases() {
    fill(leasesEl, table([
      { label: 'Lease', cell: (l) => h('span', { title: `${l.lease} #${l.nonce}` }, `${short(l.lease)} #${l.nonce}`) },
      { label: 'Order', cell: (l) => h('a', { href: ctx.link.order(l.order), title: l.order }, short(l.order)) },
      { label: 'State', cell: (l) => (l.open ? chip('open', 'ok') : chip('ended', 'idle')) },
      { label: 'Job', cell: (l) => l.job || '—' },
      { label: 'GPUs', num: true, cell: (l) => l.gpus ?? '—' },
      { label: 'Price', num: true, cell: (l) => perHour(l.price_per_gpu_second, dec) },
      { label: 'Started', cell: (l) => when(l.start_ts) },
      { label: 'Served', num: true, cell: (l) => (l.served_seconds !== null ? duration(l.served_seconds) : '—') },
      { label: 'Settled', num: true, cell: (l) => (l.seconds_settled !== null ? duration(l.seconds_settled) : '—') },
      { label: 'Paid', num: true, cell: (l) => (l.amount_paid !== null ? tokens(l.amount_paid, dec) : '—') },
    ], detail.leases, { caption: 'Leases', empty: 'No lease yet.', rowAttrs: (l) => ({ dataset: { lease: l.lease, nonce: l.nonce, open: l.open } }) }));
  }

  async function renderChallenges() {
    try {
      const c = await get(`/v1/workers/${address}/challenges`);
      if (closed) return;
      fill(challengesEl, table([
        { label: 'Round', cell: (r) => `#${r.id}` },
        { label: 'When', cell: (r) => when(r.unix_ms, { ms: true }) },
        { label: 'Verdict', cell: (r) => (r.outcome === 'passed' ? chip('passed', 'ok') : chip('failed', 'bad')) },
        { label: 'Why', cell: (r) => r.reason || '—' },
        { label: 'Evidence', cell: (r) => h('code', { class: 'mono', title: r.evidence }, short(r.evidence)) },
      ], c.challenges, { caption: 'Compute challenges', empty: 'No challenge yet: one comes when the worker connects idle.', rowAttrs: (r) => ({ dataset: { outcome: r.outcome } }) }));
    } catch (e) {
      fill(challengesEl, h('p', { class: 'error' }, e.message));
    }
  }

  function renderCommands() {
    const a = detail.account;
    const owner = 'Signed by the owner\'s wallet (--keypair FILE unless it is your default).';
    fill(commandsEl,
      h('p', {}, 'Keys never go to the orchestrator: the owner runs these where its wallet is. See the ',
        h('a', { href: ctx.link.supplier(a.owner) }, 'supplier page'), ' for earnings over time.'),
      h('div', { class: 'grid two' },
        commandBlock('Claim earnings', gpumesh(ctx, ['worker', 'claim']), `${tokens(a.earnings_claimable, dec)} to claim now. ${owner}`),
        commandBlock('Claim emission rewards', gpumesh(ctx, ['worker', 'claim-rewards']), `${tokens(a.rewards_claimable, dec)} to claim now. ${owner}`),
        commandForm('Stake more', [{ name: 'amount', label: 'Tokens', value: '100' }],
          (v) => gpumesh(ctx, ['worker', 'stake', v.amount || '0']), owner),
        commandForm('Start unbonding', [{ name: 'amount', label: 'Tokens', value: tokens(a.stake, dec).replaceAll(',', '') }],
          (v) => gpumesh(ctx, ['worker', 'unstake', v.amount || '0']), 'Stake backing leased GPUs stays bonded; unbonding stake unlocks after the market\'s unbonding period.'),
        commandBlock('Withdraw unbonded stake', gpumesh(ctx, ['worker', 'withdraw']), BigInt(a.unbonding) > 0n ? `${tokens(a.unbonding, dec)} unlocks ${when(a.unlock_ts)}.` : 'Nothing is unbonding.'),
        commandForm('Change the asking price', [{ name: 'price', label: 'Tokens per GPU-hour', value: tokens((BigInt(a.price_per_gpu_second) * 3600n).toString(), dec).replaceAll(',', '') }],
          (v) => gpumesh(ctx, ['worker', 'update', '--price', `${v.price}/h`]), 'Running leases keep their price.'),
        a.jailed ? commandBlock('Leave jail', gpumesh(ctx, ['worker', 'unjail']), `After ${when(a.jailed_until)}, with stake back at the minimum for every GPU.`) : null));
  }

  async function refresh() {
    try {
      const d = await get(`/v1/workers/${address}`);
      if (closed) return;
      const first = !detail;
      detail = d;
      if (!backfilled) {
        backfilled = true;
        for (const s of d.telemetry) push(s);
      }
      renderHead();
      renderTiles();
      renderGpus();
      renderLeases();
      if (first) renderCommands();
      ctx.rendered('worker');
    } catch (e) {
      if (!detail) fill(tilesEl, h('p', { class: 'error' }, `Cannot read worker ${address}: ${e.message}`));
    }
  }
  const refreshSoon = throttle(refresh, 300);
  const challengesSoon = throttle(renderChallenges, 500);
  const gpusNow = frameThrottle(renderGpus);

  const feed = new Feed(`worker=${encodeURIComponent(address)}`, {
    onOpen: () => { refresh(); renderChallenges(); },
    onEvent: (e) => {
      switch (e.type) {
        case 'telemetry': {
          const s = sampleOf(e.telemetry, e.rtt_us, Date.now());
          telemetry = e.telemetry;
          push(s);
          gpusNow();
          break;
        }
        case 'challenge':
          challengesSoon();
          refreshSoon();
          break;
        case 'lagged':
          refreshSoon();
          break;
        default:
          refreshSoon();
      }
    },
  });
  const timer = setInterval(refresh, 10_000);
  return {
    unmount() {
      closed = true;
      feed.close();
      clearInterval(timer);
      for (const c of Object.values(charts)) c.destroy();
    },
  };
}
