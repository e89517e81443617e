// One order, for its buyer: placement or why it waits, its leases and GPUs, escrow and how long
// it lasts, spend per second, every receipt and settlement with its transaction (linked to the
// cluster's explorer where it has one), the result hash, its checkpoints (the latest one's age,
// what is kept and its bytes, any skipped on restore and why), and the job's live output, which only
// the buyer's signature opens: the page shows the `gpumesh` command that signs the request (the
// key stays with the buyer) or takes a pasted signature.

import { get, Feed } from '../api.js';
import { h, fill, tile, section, table, chip, copyable, throttle } from '../dom.js';
import { tokens, perHour, ratePerHour, count, duration, when, short, tokenNumber } from '../format.js';
import { Chart } from '../chart.js';
import { gpumesh, commandBlock, commandForm } from '../commands.js';

const LOG_CHUNKS_KEPT = 2000;

export function mount(root, route, ctx) {
  const address = route.arg;
  const dec = ctx.info.decimals;
  ctx.title(`Order ${short(address)}`);
  const signed = route.params.get('signature') && route.params.get('unix_ms')
    ? { unixMs: route.params.get('unix_ms'), signature: route.params.get('signature') } : null;

  const spend = new Chart({
    title: 'Spend per hour (tokens)', series: [{ name: 'open leases' }, { name: 'settled' }],
    digits: 4, windowMs: 600_000,
  });
  spend.el.dataset.chart = 'spend';
  const chipEl = h('span');
  const subEl = h('span', { class: 'sub' });
  const bannerEl = h('div', { id: 'order-banner', role: 'status' });
  const tilesEl = h('div', { class: 'tiles', id: 'order-tiles' });
  const leasesEl = h('div', { id: 'order-leases' });
  const settlementsEl = h('div', { id: 'order-settlements' });
  const receiptsEl = h('div', { id: 'order-receipts' });
  const checkpointsEl = h('div', { id: 'order-checkpoints' });
  const logsBox = h('div', { class: 'logs', id: 'order-logs', role: 'log', 'aria-label': 'Job output', tabindex: 0 });
  const logsHead = h('div');
  const commandsEl = h('div');
  fill(root,
    h('div', { class: 'page-head' }, h('h1', { tabindex: -1 }, 'Order'), chipEl, subEl),
    h('p', {}, copyable(address, { label: 'Copy the order address', field: 'address' })),
    bannerEl,
    tilesEl,
    h('div', { class: 'grid two' },
      section('Spend', spend.el),
      section('Leases', leasesEl),
      h('div', { class: 'span-all' }, section('Settlements', settlementsEl)),
      h('div', { class: 'span-all' }, section('Receipts', receiptsEl)),
      h('div', { class: 'span-all' }, section('Checkpoints', checkpointsEl)),
      h('div', { class: 'span-all' }, section('Live output', logsHead, logsBox)),
      h('div', { class: 'span-all' }, section('Buyer\'s commands', commandsEl))));

  let activity = null;
  let closed = false;
  let logChunks = 0;

  function explorerTx(signature) {
    const t = ctx.info.cluster.explorer_tx;
    if (!t) return copyable(signature, { label: 'Copy the transaction signature' });
    return h('a', { href: t.replace('{signature}', signature), rel: 'noopener noreferrer', target: '_blank', class: 'mono' }, short(signature));
  }

  function renderHead() {
    const a = activity.account;
    const tone = { placed: 'ok', 'partly placed': 'warn', waiting: 'warn', closing: 'idle', closed: 'idle' }[activity.placement] || 'idle';
    fill(chipEl, chip(activity.placement, tone));
    chipEl.dataset.placement = activity.placement;
    fill(subEl, a
      ? `#${a.order_id} · ${a.gpus} × ${a.class} in ${a.regions.join(', ')} · ${a.mode} · at most ${perHour(a.max_price_per_gpu_second, dec)} for ${duration(a.duration_s)}`
      : 'closed on chain; its history is kept by the orchestrator');
    const banner = (tone2, ...text) => fill(bannerEl, h('div', { class: `banner banner-${tone2}` }, ...text));
    bannerEl.dataset.placement = activity.placement;
    const open = activity.leases.filter((l) => l.open);
    const workers = new Set(open.map((l) => l.worker)).size;
    const moved = activity.failed_over ? ' A worker went down and the order was placed again.' : '';
    switch (activity.placement) {
      case 'placed':
        banner('ok', `Placed: ${a.gpus_assigned} GPU${a.gpus_assigned === 1 ? '' : 's'} on ${workers} worker${workers === 1 ? '' : 's'}.${moved}`);
        break;
      case 'partly placed':
        banner('warn', `Placed ${a.gpus_assigned} of ${a.gpus} GPUs. Waiting for the rest: ${activity.waiting || 'the next placement round'}.${moved}`);
        break;
      case 'waiting':
        banner('warn', `Waiting: ${activity.waiting || (activity.job_spec_uploaded ? 'the next placement round' : 'its job spec (upload it with the command below)')}.${moved}`);
        break;
      case 'closing':
        banner('idle', `Closing: no new lease; escrow back by ${when(a.buyer_exit_ts)} at the latest.`);
        break;
      default:
        banner('idle', 'Closed: the order account is gone (completed or cancelled).',
          activity.result_hash ? h('span', {}, ' Result hash: ', copyable(activity.result_hash, { label: 'Copy the result hash', field: 'result-hash' })) : null);
    }
  }

  function renderTiles() {
    const a = activity.account;
    const paid = a ? a.total_paid : activity.leases.reduce((s, l) => s + BigInt(l.amount_paid || 0), 0n).toString();
    fill(tilesEl,
      tile('Escrow left', a ? tokens(a.escrow_remaining, dec) : '—', { field: 'escrow', raw: a ? a.escrow_remaining : null, hint: a ? `of ${tokens(a.escrow_deposited, dec)} deposited` : null }),
      tile('Paid', tokens(paid, dec), { field: 'paid', raw: paid }),
      tile('Spend now', ratePerHour(activity.spend_per_second, dec), { field: 'spend', raw: activity.spend_per_second, hint: `${tokens(activity.spend_per_second, dec)} per second` }),
      tile('Escrow runway', activity.escrow_runway_s !== null ? duration(activity.escrow_runway_s) : '—', { field: 'runway', raw: activity.escrow_runway_s ?? '', hint: 'at the spend now' }),
      tile('GPUs', a ? `${a.gpus_assigned} / ${a.gpus}` : '—', { field: 'gpus', raw: a ? a.gpus_assigned : null }),
      tile('Leases', count(activity.leases.length), { field: 'leases', raw: activity.leases.length, hint: `${activity.leases.filter((l) => l.open).length} open` }),
      tile('Buyer', activity.buyer ? short(activity.buyer) : '—', { field: 'buyer', raw: activity.buyer }));
  }

  function renderSpend(live) {
    const hist = activity.history || [];
    const settled = [];
    for (let i = 1; i < hist.length; i += 1) {
      const dt = (hist[i].unix_ms - hist[i - 1].unix_ms) / 1000;
      const dp = BigInt(hist[i].total_paid) - BigInt(hist[i - 1].total_paid);
      if (dt > 0) settled.push([hist[i].unix_ms, (tokenNumber(dp.toString(), dec) / dt) * 3600]);
    }
    spend.set(1, settled);
    if (live) spend.push(Date.now(), [tokenNumber(activity.spend_per_second, dec) * 3600]);
  }

  function renderLeases() {
    fill(leasesEl, table([
      { label: 'Lease', cell: (l) => h('span', { title: `${l.lease} #${l.nonce}` }, `${short(l.lease)} #${l.nonce}`) },
      { label: 'Worker', cell: (l) => h('a', { href: ctx.link.worker(l.worker), title: l.worker }, short(l.worker)) },
      { label: 'State', cell: (l) => (l.open ? chip('open', 'ok') : chip('ended', 'idle')) },
      { label: 'Job', cell: (l) => l.job || '—' },
      { label: 'GPUs', num: true, cell: (l) => l.gpus ?? '—' },
      { label: 'Price', num: true, cell: (l) => perHour(l.price_per_gpu_second, dec) },
      { label: 'Served', num: true, cell: (l) => (l.served_seconds !== null ? duration(l.served_seconds) : '—') },
      { label: 'Settled', num: true, cell: (l) => {
        const s = l.seconds_settled ?? (l.settlements.length ? l.settlements[l.settlements.length - 1].served_seconds : null);
        return s !== null ? duration(s) : '—';
      } },
    ], activity.leases, {
      caption: 'Leases of this order',
      empty: 'No lease yet.',
      rowAttrs: (l) => ({ dataset: { lease: l.lease, nonce: l.nonce, worker: l.worker, open: l.open, job: l.job || '' } }),
    }));
  }

  function renderSettlements() {
    const rows = activity.leases.flatMap((l) => l.settlements.map((s) => ({ ...s, lease: l.lease, nonce: l.nonce, worker: l.worker })))
      .sort((a, b) => b.unix_ms - a.unix_ms);
    fill(settlementsEl,
      h('p', { class: 'muted small' }, 'Each settlement pays a lease up to the seconds its worker\'s signed receipt proves.',
        ctx.info.cluster.explorer_tx ? '' : ' This cluster has no public explorer: look a signature up with `gpumesh confirm SIGNATURE`.'),
      table([
        { label: 'When', cell: (s) => when(s.unix_ms, { ms: true }) },
        { label: 'Lease', cell: (s) => `${short(s.lease)} #${s.nonce}` },
        { label: 'Worker', cell: (s) => h('a', { href: ctx.link.worker(s.worker), title: s.worker }, short(s.worker)) },
        { label: 'Paid up to', num: true, cell: (s) => `${count(s.served_seconds)} s` },
        { label: 'Transaction', cell: (s) => explorerTx(s.signature) },
      ], rows, { caption: 'Settlements', empty: 'Nothing settled yet.', rowAttrs: (s) => ({ dataset: { signature: s.signature, served: s.served_seconds } }) }));
  }

  function renderReceipts() {
    fill(receiptsEl, activity.leases.length ? activity.leases.map((l) => h('details', { open: l.open || null },
      h('summary', {}, `Lease ${short(l.lease)} #${l.nonce} on ${short(l.worker)}: ${l.receipts.length} receipt${l.receipts.length === 1 ? '' : 's'} (newest ${l.receipt_seconds ?? (l.receipts.length ? l.receipts[l.receipts.length - 1].served_seconds : 0)} s)`),
      table([
        { label: 'Seconds', num: true, cell: (r) => count(r.served_seconds) },
        { label: 'Heartbeat chain head', cell: (r) => h('code', { class: 'mono', title: r.chain_head }, short(r.chain_head)) },
        { label: 'Worker\'s signature', cell: (r) => h('code', { class: 'mono', title: r.signature }, short(r.signature)) },
        { label: 'Settled', cell: (r) => (r.settled ? chip('settled', 'ok') : chip('stored', 'idle')) },
      ], l.receipts.slice().reverse(), { caption: `Receipts of lease ${l.lease}`, empty: 'No receipt yet.' }))) : h('p', { class: 'muted' }, 'No receipt yet.'));
  }

  function renderCommands() {
    const a = activity.account;
    const logs = gpumesh(ctx, ['order', 'logs', address, '--orchestrator', location.origin, '--console'], { market: false, cluster: false });
    const buyer = 'Signed by the buyer\'s wallet (--keypair FILE unless it is your default).';
    fill(commandsEl,
      a ? h('div', { class: 'grid two' },
        commandForm('Add escrow', [{ name: 'amount', label: 'Tokens', value: '10' }],
          (v) => gpumesh(ctx, ['order', 'top-up', String(a.order_id), v.amount || '0']), buyer),
        commandBlock('Cancel the order', gpumesh(ctx, ['order', 'cancel', String(a.order_id)]),
          `Unspent escrow comes back. With leases open, the first run asks to close (no pay for later seconds); run it again after the exit window. ${buyer}`),
        activity.job_spec_uploaded ? null : commandBlock('Upload the job spec', gpumesh(ctx, ['order', 'upload-spec', String(a.order_id), 'job.toml', '--orchestrator', location.origin]),
          'The file the order was created with (its hash is on chain). The job starts once it is placed.'))
        : h('p', { class: 'muted' }, 'The order is closed: nothing left to pay or cancel.'),
      signed ? null : commandBlock('Read the job\'s output here', logs,
        'Signs a request for this order\'s output with the buyer\'s wallet and prints this page\'s address with the signature: open it within 5 minutes.'));
  }

  function addLog(chunk) {
    logChunks += 1;
    logsBox.append(h('span', { class: chunk.stream === 'stderr' ? 'stderr' : null }, chunk.data));
    while (logsBox.childNodes.length > LOG_CHUNKS_KEPT) logsBox.firstChild.remove();
    logsBox.dataset.chunks = String(logChunks);
    logsBox.scrollTop = logsBox.scrollHeight;
  }

  function pasteForm(message) {
    const sigId = 'logs-signature';
    const msId = 'logs-unix-ms';
    const sig = h('input', { id: sigId, name: 'signature', spellcheck: 'false', autocomplete: 'off', placeholder: 'base58 signature, or the whole address the command printed' });
    const ms = h('input', { id: msId, name: 'unix_ms', inputmode: 'numeric', autocomplete: 'off', placeholder: 'Unix ms' });
    const form = h('form', { class: 'command-form' },
      h('div', { class: 'fields' },
        h('div', { class: 'field' }, h('label', { for: sigId }, 'Buyer\'s signature'), sig),
        h('div', { class: 'field' }, h('label', { for: msId }, 'Signed at (Unix ms)'), ms)),
      h('p', {}, h('button', { type: 'submit' }, 'Show the output')));
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      let s = sig.value.trim();
      let t = ms.value.trim();
      const q = s.includes('signature=') ? new URLSearchParams(s.slice(s.indexOf('?') + 1)) : null;
      if (q) {
        s = q.get('signature') || '';
        t = q.get('unix_ms') || t;
      }
      location.hash = `#/order/${address}?unix_ms=${encodeURIComponent(t)}&signature=${encodeURIComponent(s)}`;
    });
    return h('div', {},
      message ? h('p', { class: 'error' }, message) : null,
      h('p', {}, 'The output is the buyer\'s only: it needs the buyer\'s signature over this order and the time. Run the command in "Buyer\'s commands" below, or paste what it prints:'),
      form);
  }

  function renderCheckpoints(c) {
    if (!c || !c.enabled) {
      const why = c && c.turned_off ? 'the buyer turned them off' : 'the job spec has no [checkpoint] section';
      fill(checkpointsEl, h('p', { class: 'sub', dataset: { field: 'checkpoints-off' } }, `Off: ${why}, so a job moved to another worker starts over.`));
      return;
    }
    const mib = (b) => `${(b / 1048576).toFixed(2)} MiB`;
    const latest = c.latest
      ? h('p', { dataset: { field: 'checkpoint-latest', hash: c.latest.hash } }, 'Latest: ', copyable(c.latest.hash, { label: 'Copy the checkpoint hash' }),
        ` taken ${duration(c.latest.age_s)} ago (${mib(c.latest.size)}, ${c.latest.files} files); a new worker resumes from it.`)
      : h('p', {}, 'No checkpoint yet: a job moved now starts over.');
    fill(checkpointsEl,
      h('p', { dataset: { field: 'checkpoint-storage', raw: c.stored_bytes } }, `Every ${duration(c.interval_s)} and when the job asks. Kept: ${c.stored} checkpoint${c.stored === 1 ? '' : 's'}, ${mib(c.stored_bytes)} of storage, ${tokens(c.storage_cost_per_hour, dec)} per hour at the store's price.`),
      latest,
      table([
        { label: 'Hash', cell: (k) => h('span', { class: 'mono', title: k.hash }, short(k.hash)) },
        { label: 'Taken', cell: (k) => `${duration(k.age_s)} ago` },
        { label: 'Size', num: true, cell: (k) => mib(k.size) },
        { label: 'Lease', cell: (k) => h('span', { title: `${k.lease} #${k.nonce}` }, `${short(k.lease)} #${k.nonce}`) },
        { label: 'State', cell: (k) => (k.status === 'stored' ? chip('stored', 'ok') : h('span', {}, chip('skipped', 'warn'), ` ${k.reason || ''}`)) },
      ], c.all.slice(0, 20), { caption: 'Checkpoints of this order, newest first', empty: 'None yet.', rowAttrs: (k) => ({ dataset: { hash: k.hash, status: k.status } }) }));
  }

  async function refresh(live = true) {
    try {
      get(`/v1/orders/${address}`).then((o) => renderCheckpoints(o.checkpoints)).catch(() => {});
      const a = await get(`/v1/orders/${address}/activity`);
      if (closed) return;
      const first = !activity;
      activity = a;
      renderHead();
      renderTiles();
      renderSpend(live);
      renderLeases();
      renderSettlements();
      renderReceipts();
      if (first) renderCommands();
      ctx.rendered('order');
    } catch (e) {
      if (!activity) fill(bannerEl, h('p', { class: 'error' }, `Cannot read order ${address}: ${e.message}`));
    }
  }
  const refreshSoon = throttle(refresh, 150);

  let feed = null;
  const handlers = {
    onOpen: () => refresh(),
    onEvent: (e) => {
      if (e.type === 'job_log') addLog(e);
      else if (e.type !== 'telemetry') refreshSoon();
    },
  };
  async function start() {
    if (!signed) {
      fill(logsHead, pasteForm());
      feed = new Feed(`order=${encodeURIComponent(address)}`, handlers);
      return;
    }
    fill(logsHead, h('p', { class: 'muted' }, `Signed by the buyer at ${when(signed.unixMs, { ms: true })}.`));
    try {
      const stored = await get(`/v1/orders/${address}/logs`, { headers: { 'x-gpumesh-signature': signed.signature, 'x-gpumesh-unix-ms': signed.unixMs } });
      if (closed) return;
      for (const job of stored.jobs.slice().reverse()) for (const c of job.chunks) addLog(c);
      const q = `order=${encodeURIComponent(address)}&logs=${encodeURIComponent(address)}&unix_ms=${encodeURIComponent(signed.unixMs)}&signature=${encodeURIComponent(signed.signature)}`;
      feed = new Feed(q, {
        ...handlers,
        onRefused: () => {
          fill(logsHead, pasteForm('The signature is no longer accepted (it is older than 5 minutes): sign again.'));
          feed = new Feed(`order=${encodeURIComponent(address)}`, handlers);
        },
      });
    } catch (e) {
      if (closed) return;
      fill(logsHead, pasteForm(`The output was refused: ${e.message}`));
      feed = new Feed(`order=${encodeURIComponent(address)}`, handlers);
    }
  }
  start();
  const timer = setInterval(() => { if (activity) refresh(true); }, 5000);
  const tick = setInterval(() => {
    if (activity) spend.push(Date.now(), [tokenNumber(activity.spend_per_second, dec) * 3600]);
  }, 1000);
  return {
    unmount() {
      closed = true;
      if (feed) feed.close();
      clearInterval(timer);
      clearInterval(tick);
      spend.destroy();
    },
  };
}
