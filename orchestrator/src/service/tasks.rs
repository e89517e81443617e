//! The service's loops, each its own task so that none waits behind another: placement (rounds
//! on events and at a bounded rate), settlement (on a cadence and at every lease end), failover
//! (a worker silent past the grace period is down: in one transaction its last receipt settles,
//! its lease closes as offline with the slash paid to the buyer, and a spare chosen from the
//! followed view takes the GPUs; the job restarts as soon as that transaction confirms), and
//! reconciliation with leases ended by others; plus restoring what the chain and the store hold
//! at start.

use super::feed::FeedEvent;
use super::follow::Mirror;
use super::state::{ChainHandle, JobPhase, Shared, Tracked};
use crate::actions::{ActionError, FailedOver, Spare};
use crate::scheduler::{OrderId, RegionSet, Scheduler, SchedulerConfig};
use crate::settlement::{LeaseBacklog, Policy, due};
use crate::sync::MarketView;
use gpumesh_client::ix::LeaseRef;
use gpumesh_client::program::state::{CloseReason, Lease, Order, OrderStatus};
use gpumesh_client::{ChainExt, Pubkey, filters, receipt};
use gpumesh_protocol::heartbeat::HeartbeatChain;
use gpumesh_protocol::wire::{JobSpec, LeaseAssignment, LeaseId, StopReason, ToWorker};
use gpumesh_protocol::{SignedReceipt, SignedWorkerReceipt};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn lease_id(l: &LeaseRef) -> LeaseId {
    LeaseId {
        lease: receipt::key(&l.lease),
        nonce: l.nonce,
    }
}

fn tracked(
    lease: LeaseRef,
    gpus: u16,
    gpu_indices: Vec<u16>,
    settled: u64,
    resumed: bool,
) -> Tracked {
    let id = lease_id(&lease);
    Tracked {
        chain: HeartbeatChain::new(&id.lease.0, id.nonce),
        id,
        worker: lease.worker,
        order: lease.order,
        lease,
        gpus,
        gpu_indices,
        heads: BTreeMap::new(),
        resumed,
        last_beat: Instant::now(),
        latest_receipt: None,
        receipts: BTreeMap::new(),
        settled_seconds: settled,
        settled_at: Instant::now(),
        job: JobPhase::Assigned,
        result_hash: None,
        assigned_at: Instant::now(),
        failover_from: None,
        exited_at: None,
        retry_at: None,
        limit_stop: None,
    }
}

/// Takes over the market's live leases at start: each keeps its worker, who has the grace period
/// to reconnect; stored receipts not yet settled are settled by the next settlement round.
pub async fn restore(shared: &Arc<Shared>) -> Result<usize, String> {
    let market = shared.addrs.market;
    let leases = shared
        .chain
        .call(move |c| c.list_decoded::<Lease>(&filters::in_market(&market)))
        .await
        .map_err(|e| format!("cannot list the market's leases: {e}"))?;
    let mut restored = vec![];
    for (_, lease) in leases {
        let r = LeaseRef::of(&lease);
        let mut t = tracked(
            r,
            lease.gpus,
            (0..lease.gpus).collect(),
            lease.seconds_settled,
            true,
        );
        if let Some(r) = shared.store.latest_receipt(&t.id).await.ok().flatten() {
            t.remember_receipt(r);
        }
        // Its worker has the restart grace to find the service again before it is down.
        t.retry_at = Some(Instant::now() + shared.cfg.restart_grace());
        // Its last settlement as the chain dates it, so that the receipt age keeps counting
        // across the restart.
        let since = (unix_ms() / 1_000).saturating_sub(lease.last_settle_ts.max(0) as u64);
        t.settled_at = Instant::now()
            .checked_sub(Duration::from_secs(since))
            .unwrap_or_else(Instant::now);
        restored.push(t);
    }
    let n = restored.len();
    let mut live = shared.live();
    for t in restored {
        live.leases.insert(t.id, t);
    }
    shared.metrics.leases.set(live.leases.len() as i64);
    Ok(n)
}

/// The market as placement sees it: the follower's copy while the websocket is live (and the
/// chain's clock), else a fresh listing.
async fn view(shared: &Arc<Shared>) -> Result<MarketView, String> {
    view_on(shared, &shared.chain).await
}

/// [`view`], reading the chain through `chain`.
async fn view_on(shared: &Arc<Shared>, chain: &ChainHandle) -> Result<MarketView, String> {
    let now = chain.call(|c| c.unix_time()).await.map_err(|e| {
        shared.metrics.rpc_errors.inc();
        format!("cannot read the chain's clock: {e}")
    })?;
    if let Some(m) = shared.mirror().as_ref().filter(|m| m.live) {
        return Ok(m.view(now));
    }
    let market = shared.addrs.market;
    shared.metrics.chain_loads.inc();
    chain
        .call(move |c| MarketView::load(c, &market))
        .await
        .map_err(|e| {
            shared.metrics.rpc_errors.inc();
            format!("cannot read the market: {e}")
        })
}

/// One placement round over the chain's current state, the connected workers and the orders
/// whose job spec the buyer uploaded.
pub async fn place(shared: &Arc<Shared>) -> Result<usize, String> {
    let started = Instant::now();
    let mut view = view(shared).await?;
    let connected = available_workers(shared, &HashSet::new());
    let mut specs: HashMap<Pubkey, (String, JobSpec)> = HashMap::new();
    let mut waiting = HashMap::new();
    let finished = {
        // Forget finished orders once the followed copy no longer has them (completed). The
        // copy's lock first, then the live state's, as everywhere.
        let mirror = shared.mirror();
        let mut live = shared.live();
        if let Some(m) = mirror.as_ref() {
            live.finished.retain(|o| m.orders.contains_key(o));
        }
        live.finished.clone()
    };
    for (i, (key, _)) in view.orders.iter().enumerate() {
        if view.order(i).is_none() || finished.contains(key) {
            continue;
        }
        match shared.store.spec(&key.to_string()).await {
            Ok(Some(text)) => match JobSpec::from_toml(&text) {
                Ok(spec) => {
                    specs.insert(*key, (text, spec));
                }
                Err(e) => {
                    waiting.insert(*key, format!("its job spec does not parse: {e}"));
                }
            },
            _ => {
                waiting.insert(*key, NO_SPEC.into());
            }
        }
    }
    let mut s = Scheduler::new(SchedulerConfig::default()).map_err(|e| e.to_string())?;
    let workers = (0..view.workers.len())
        .filter_map(|i| {
            let rtt = connected.get(&view.workers[i].0)?;
            view.worker_spec(i, *rtt)
        })
        .collect();
    s.add_workers(workers).map_err(|e| e.to_string())?;
    for i in 0..view.orders.len() {
        if let Some(order) = view.order(i)
            && specs.contains_key(&view.orders[i].0)
        {
            s.submit_order(order).map_err(|e| e.to_string())?;
        }
    }
    let now = u64::try_from(view.now).unwrap_or(0);
    let round = s.match_round(now);
    for u in &round.unplaced {
        if let Some((key, _)) = view.orders.get(u.order.0 as usize) {
            waiting.insert(*key, format!("no worker fits yet: {:?}", u.why));
        }
    }
    let mut assigned = 0;
    for p in &round.placements {
        let proposals = match view.propose(p) {
            Ok(list) => list,
            Err(e) => {
                tracing::warn!(%e, "a placement failed the program's checks; not sent");
                continue;
            }
        };
        for a in proposals {
            let Some((text, spec)) = specs.get(&a.order).cloned() else {
                continue;
            };
            let orchestrator = shared.orchestrator.clone();
            // Counted on the copy before it is sent, so a failover choosing a spare meanwhile
            // does not count these GPUs free.
            if let Some(m) = shared.mirror().as_mut() {
                m.assigned(a.order, a.worker, a.gpus);
            }
            let result = shared
                .chain
                .call(move |c| orchestrator.assign(c, &a.order, &a.worker, a.gpus))
                .await;
            let lease = match result {
                Ok((lease, _)) => lease,
                Err(e) => {
                    if let Some(m) = shared.mirror().as_mut() {
                        m.unassigned(&a.order, &a.worker);
                        if matches!(e, ActionError::Missing { what: "order", .. }) {
                            m.order_gone(&a.order);
                        }
                    }
                    shared.metrics.failed_transactions.inc();
                    tracing::warn!(%e, order = %a.order, worker = %a.worker, "assign failed");
                    continue;
                }
            };
            start_job(shared, &view, lease, a.gpus, &text, spec);
            assigned += 1;
        }
    }
    {
        let mut live = shared.live();
        for (order, reason) in &waiting {
            if live.waiting.get(order) != Some(reason) {
                shared.feed.send(FeedEvent::OrderWaiting {
                    order: order.to_string(),
                    reason: reason.clone(),
                });
            }
        }
        live.waiting = waiting;
        shared.metrics.leases.set(live.leases.len() as i64);
    }
    shared
        .metrics
        .placement_seconds
        .observe(started.elapsed().as_secs_f64());
    Ok(assigned)
}

/// Workers placement may offer work, with their round trip: connected, heard from within the
/// grace period, proven for their class and not proving it right now; none of `except`.
fn available_workers(shared: &Shared, except: &HashSet<Pubkey>) -> HashMap<Pubkey, u32> {
    let grace = shared.cfg.grace();
    shared
        .live()
        .sessions
        .iter()
        .filter(|(k, s)| {
            s.verified && !s.challenging && s.last_seen.elapsed() <= grace && !except.contains(k)
        })
        .map(|(k, s)| (*k, s.rtt_us.unwrap_or(crate::sync::UNMEASURED_LATENCY_US)))
        .collect()
}

/// Records a new lease and tells its worker to start the job on the lowest free GPU indices.
fn start_job(
    shared: &Arc<Shared>,
    view: &MarketView,
    lease: LeaseRef,
    gpus: u16,
    spec_text: &str,
    spec: JobSpec,
) {
    let gpu_count = view
        .workers
        .iter()
        .find(|(k, _)| *k == lease.worker)
        .map(|(_, w)| w.hardware.gpu_count)
        .unwrap_or(gpus);
    let mut live = shared.live();
    let used: HashSet<u16> = live
        .leases
        .values()
        .filter(|t| t.worker == lease.worker)
        .flat_map(|t| t.gpu_indices.iter().copied())
        .collect();
    let indices: Vec<u16> = (0..gpu_count)
        .filter(|i| !used.contains(i))
        .take(usize::from(gpus))
        .collect();
    let mut t = tracked(lease, gpus, indices.clone(), 0, false);
    if let Some(from) = live.failed_over.remove(&lease.order) {
        shared
            .metrics
            .failover_seconds
            .observe(from.elapsed().as_secs_f64());
        t.failover_from = Some(from);
    }
    let assignment = LeaseAssignment {
        lease: t.id,
        order: receipt::key(&lease.order),
        gpus,
        gpu_indices: indices,
        spec,
        spec_hash: gpumesh_protocol::job_spec_hash(spec_text.as_bytes()),
        receipt_every_s: shared.cfg.receipt_every_s,
        spec_file: Some(spec_text.to_string()),
        chain: None,
        restore: live.restore_for(&lease.order),
        checkpoints_off: live.checkpoints_off.contains(&lease.order),
    };
    let worker = lease.worker;
    shared.feed.send(FeedEvent::LeaseStarted {
        order: lease.order.to_string(),
        worker: worker.to_string(),
        lease: lease.lease.to_string(),
        nonce: lease.nonce,
        gpus,
        gpu_indices: assignment.gpu_indices.clone(),
    });
    live.leases.insert(t.id, t);
    if let Some(s) = live.sessions.get(&worker)
        && s.tx.try_send(ToWorker::StartJob(assignment)).is_err()
    {
        tracing::warn!(%worker, "could not queue StartJob: the worker's queue is full");
    }
}

/// Settles every lease's newest receipt that is ahead of what was settled, then ends the leases
/// whose job exited (final receipt settled in the same transaction) and completes orders left
/// with no lease.
/// Stops the jobs of leases whose buyer asked to close the order, and of those whose order can
/// pay for no more than the stop takes (checked with the reconciliation, every two seconds): the lease's
/// term (the order's duration per lease) is served, or the order's escrow, less what its leases
/// are owed, lasts no longer at their spend. The daemon stops the job, signs its last seconds
/// and reports the exit; the lease then closes as completed on that receipt, the order with it
/// once it has no lease left. Stopping early by the stop's own length keeps the last receipt
/// within the term (the program refuses more) and paid in full. Told again every few seconds
/// until the exit comes (a reconnecting daemon resumes its leases).
fn stop_at_limits(shared: &Shared) {
    // The stop's grace, the last receipt's way back, and this check's own period.
    let margin =
        u64::from(shared.cfg.stop_grace_ms).div_ceil(1_000) + 2 + RECONCILE_EVERY.as_secs();
    let mut stops: Vec<(Pubkey, LeaseId, &'static str, u64)> = vec![];
    {
        let mirror = shared.mirror();
        let Some(m) = mirror.as_ref() else { return };
        let mut live = shared.live();
        // What each order's live leases are owed beyond what was settled, and their spend.
        let owed = order_spend(Some(m), live.leases.values());
        for t in live.leases.values_mut() {
            if t.job == JobPhase::Exited
                || t.limit_stop
                    .is_some_and(|(at, _)| at.elapsed() < LIMIT_STOP_AGAIN)
            {
                continue;
            }
            let Some(order) = m.orders.get(&t.order) else {
                continue;
            };
            let shown = t.shown_seconds();
            let why = if order.status == OrderStatus::Closing {
                // Ended now, its last seconds are paid with the close; left to the buyer's
                // exit, whatever was not settled would go unpaid.
                Some("its buyer asked to close the order")
            } else if shown + margin >= order.terms.duration {
                Some("its order's duration is served")
            } else {
                let (owed, spend) = owed.get(&t.order).copied().unwrap_or_default();
                let left = u128::from(order.escrow_remaining).saturating_sub(owed);
                (spend > 0 && left / spend <= u128::from(margin))
                    .then_some("its order's escrow is spent")
            };
            if let Some(why) = why {
                t.limit_stop = Some((Instant::now(), why));
                stops.push((t.worker, t.id, why, shown));
            }
        }
        for (_, id, _, _) in &stops {
            if let Some(order) = live.leases.get(id).map(|t| t.order) {
                live.finished.insert(order);
            }
        }
    }
    for (worker, id, why, shown) in stops {
        tracing::info!(lease = %id.lease, served = shown, reason = why, "stopping a job: its order can pay no more");
        stop_job(shared, &worker, id);
    }
}

/// The most seconds the program pays `t` now: its order's duration per lease, and the seconds
/// up to its buyer's close request or its preemption (none known: no cap).
fn pay_cap(mirror: Option<&Mirror>, t: &Tracked) -> Option<u64> {
    let m = mirror?;
    let order = m.orders.get(&t.order)?;
    let mut cap = order.terms.duration;
    if let Some(l) = m
        .leases
        .get(&t.lease.lease)
        .filter(|l| l.nonce == t.lease.nonce)
    {
        let until = |ts: i64| ts.saturating_sub(l.start_ts).max(0) as u64;
        if order.status == OrderStatus::Closing {
            cap = cap.min(until(order.close_requested_ts));
        }
        if l.preempt_at != 0 {
            cap = cap.min(until(l.preempt_at));
        }
    }
    Some(cap)
}

/// Per order, over `leases`: what they are owed beyond what was settled (as the heartbeats
/// showed it), and what its running ones spend a second, in base units.
fn order_spend<'a>(
    mirror: Option<&Mirror>,
    leases: impl Iterator<Item = &'a Tracked>,
) -> HashMap<Pubkey, (u128, u128)> {
    let mut out: HashMap<Pubkey, (u128, u128)> = HashMap::new();
    for t in leases {
        let Some(l) = mirror
            .and_then(|m| m.leases.get(&t.lease.lease))
            .filter(|l| l.nonce == t.lease.nonce)
        else {
            continue;
        };
        let rate = u128::from(l.price_per_gpu_second) * u128::from(l.gpus);
        let unsettled = t.shown_seconds().saturating_sub(t.settled_seconds);
        let e = out.entry(t.order).or_default();
        e.0 += rate * u128::from(unsettled);
        if t.job != JobPhase::Exited {
            e.1 += rate;
        }
    }
    out
}

/// How long a job told to stop at its order's limit gets before it is told again.
const LIMIT_STOP_AGAIN: Duration = Duration::from_secs(5);

pub async fn settle(shared: &Arc<Shared>) -> usize {
    let (by_worker, mut per_lease) = due_now(shared);
    shared
        .metrics
        .settlement_backlog
        .set((by_worker.len() + per_lease.len()) as i64);
    let mut settled = 0;
    if !by_worker.is_empty() {
        let orchestrator = shared.orchestrator.clone();
        let batch: Vec<(SignedWorkerReceipt, Vec<LeaseRef>)> = by_worker
            .iter()
            .map(|(r, leases, _)| (r.clone(), leases.clone()))
            .collect();
        let result = shared
            .chain
            .call(move |c| orchestrator.settle_worker_receipts(c, &batch))
            .await;
        match result {
            Ok(batches) => {
                shared.metrics.settlements.inc_by(batches.len() as u64);
                for (outcome, range) in batches {
                    for (r, leases, _) in &by_worker[range] {
                        for (e, lease) in r.entries.iter().zip(leases) {
                            if record_settled(shared, lease, e.served_seconds, &outcome.signature)
                                .await
                            {
                                settled += 1;
                            }
                        }
                    }
                }
            }
            Err(e) => {
                // The leases' own receipts instead (one signature each): a lease that ended
                // since the worker signed, a stale claim, an RPC failure.
                tracing::warn!(%e, "settling worker receipts failed; settling their lease receipts");
                shared.metrics.failed_transactions.inc();
                for (_, _, fallback) in by_worker {
                    per_lease.extend(fallback);
                }
            }
        }
    }
    if !per_lease.is_empty() {
        settled += settle_lease_receipts(shared, per_lease).await;
    }
    end_exited(shared).await;
    settled
}

/// A worker's newest worker receipt, the leases its entries name (in order), and the lease
/// receipts to settle instead should it fail.
type WorkerDue = (
    SignedWorkerReceipt,
    Vec<LeaseRef>,
    Vec<(LeaseRef, SignedReceipt)>,
);

/// Who is due now, by the settlement policy ([`crate::settlement`]): per worker, its leases'
/// unsettled seconds, the time since each was settled, its orders' escrow runway and whether a
/// lease is ending. A due worker is settled with its newest worker receipt when that names
/// exactly live leases of it and claims no less than was settled; otherwise (an older daemon,
/// a lease that ended since) with its leases' own receipts. With no fee budget, everything
/// owed is due.
fn due_now(shared: &Shared) -> (Vec<WorkerDue>, Vec<(LeaseRef, SignedReceipt)>) {
    let budget = shared.cfg.fee_budget_lamports_per_gpu_hour;
    // The copy's lock first, then the live state's (the order everywhere).
    let mirror = shared.mirror();
    let live = shared.live();
    let params = mirror.as_ref().map(|m| m.market.params).unwrap_or_default();
    let policy = Policy::for_market(&params, budget.max(1), shared.cfg.runway_floor_s);
    let spend = order_spend(mirror.as_ref(), live.leases.values());
    let mut workers: HashMap<Pubkey, Vec<&Tracked>> = HashMap::new();
    for t in live.leases.values() {
        workers.entry(t.worker).or_default().push(t);
    }
    let mut by_worker = vec![];
    let mut per_lease = vec![];
    for (worker, leases) in workers {
        let signed = live.worker_receipts.get(&worker);
        let claim = |t: &Tracked| -> u64 {
            let own = t.latest_receipt.as_ref().map_or(0, |r| r.served_seconds);
            let in_worker = signed
                .and_then(|r| {
                    r.entries
                        .iter()
                        .find(|e| e.lease == t.id.lease && e.lease_nonce == t.id.nonce)
                })
                .map_or(0, |e| e.served_seconds);
            own.max(in_worker)
        };
        let backlog: Vec<LeaseBacklog> = leases
            .iter()
            // An exited job's lease closes with its final receipt (`end_exited`).
            .filter(|t| t.job != JobPhase::Exited)
            .map(|t| {
                let runway = mirror.as_ref().and_then(|m| {
                    let order = m.orders.get(&t.order)?;
                    let spend = spend.get(&t.order).map(|s| s.1).filter(|s| *s > 0)?;
                    Some(
                        (u128::from(order.escrow_remaining) / spend).min(u128::from(u64::MAX))
                            as u64,
                    )
                });
                LeaseBacklog {
                    gpus: t.gpus,
                    unsettled_seconds: claim(t).saturating_sub(t.settled_seconds),
                    since_settled_s: t.settled_at.elapsed().as_secs(),
                    order_runway_s: runway,
                    ending: t.limit_stop.is_some(),
                }
            })
            .collect();
        let owed = backlog.iter().any(|l| l.unsettled_seconds > 0);
        let is_due = if budget == 0 {
            owed
        } else {
            due(&policy, &backlog).is_some()
        };
        if !is_due {
            continue;
        }
        let own: Vec<(LeaseRef, SignedReceipt)> = leases
            .iter()
            .filter(|t| t.job != JobPhase::Exited)
            .filter_map(|t| Some((t.lease, t.payable(pay_cap(mirror.as_ref(), t))?)))
            .collect();
        let usable = signed.and_then(|r| {
            let mut named = Vec::with_capacity(r.entries.len());
            let mut pays = false;
            for e in &r.entries {
                let t = leases
                    .iter()
                    .find(|t| t.id.lease == e.lease && t.id.nonce == e.lease_nonce)?;
                let cap = pay_cap(mirror.as_ref(), t).unwrap_or(u64::MAX);
                if e.served_seconds < t.settled_seconds || e.served_seconds > cap {
                    return None;
                }
                pays |= e.served_seconds > t.settled_seconds;
                named.push(t.lease);
            }
            pays.then(|| (r.clone(), named))
        });
        match usable {
            Some((r, named)) => by_worker.push((r, named, own)),
            None => per_lease.extend(own),
        }
    }
    (by_worker, per_lease)
}

/// Records that `lease` is settled up to `served` (by the transaction `signature`; empty when
/// only the chain's state shows it): the store, the live lease, the feed. Returns whether it
/// moved the lease forward.
async fn record_settled(shared: &Shared, lease: &LeaseRef, served: u64, signature: &str) -> bool {
    let id = lease_id(lease);
    let ahead = shared
        .live()
        .leases
        .get(&id)
        .is_none_or(|t| served > t.settled_seconds);
    if !ahead {
        return false;
    }
    let stored = if signature.is_empty() {
        shared.store.mark_settled(&id, served).await
    } else {
        shared
            .store
            .record_settlement(&id, served, signature, unix_ms())
            .await
    };
    if let Err(e) = stored {
        tracing::warn!(%e, "cannot record a settlement");
    }
    if let Some(t) = shared.live().leases.get_mut(&id) {
        t.settled_seconds = t.settled_seconds.max(served);
        t.settled_at = Instant::now();
    }
    shared.feed.send(FeedEvent::Settled {
        order: lease.order.to_string(),
        worker: lease.worker.to_string(),
        lease: lease.lease.to_string(),
        nonce: lease.nonce,
        served_seconds: served,
        signature: signature.to_string(),
    });
    true
}

/// Settles lease receipts (one signature each), in batches all in flight together; should a
/// batch fail, one by one, each checked against the chain (a batch may have landed).
async fn settle_lease_receipts(shared: &Arc<Shared>, due: Vec<(LeaseRef, SignedReceipt)>) -> usize {
    let orchestrator = shared.orchestrator.clone();
    let batch = due.clone();
    let result = shared
        .chain
        .call(move |c| orchestrator.settle_batches(c, &batch))
        .await;
    // Each settled receipt with the transaction that settled it ("" when only the chain's
    // state shows it was).
    let done: Vec<(LeaseRef, SignedReceipt, String)> = match result {
        Ok(batches) => {
            shared.metrics.settlements.inc_by(batches.len() as u64);
            batches
                .into_iter()
                .flat_map(|(outcome, range)| {
                    due[range]
                        .iter()
                        .map(move |(l, r)| (*l, r.clone(), outcome.signature.clone()))
                })
                .collect()
        }
        Err(e) => {
            // One bad receipt must not hold the others back: settle them one by one. A batch
            // before the failing one may have landed: the chain says which did, and a
            // cumulative receipt is never sent to be paid twice.
            tracing::warn!(%e, "a settlement batch failed; settling one by one");
            shared.metrics.failed_transactions.inc();
            let mut ok = vec![];
            for item in due {
                let orchestrator = shared.orchestrator.clone();
                let one = item.clone();
                match shared
                    .chain
                    .call(move |c| orchestrator.settle_batches(c, &[one]))
                    .await
                {
                    Ok(batches) => {
                        shared.metrics.settlements.inc();
                        let signature = batches
                            .first()
                            .map(|(o, _)| o.signature.clone())
                            .unwrap_or_default();
                        ok.push((item.0, item.1, signature));
                    }
                    Err(e) => {
                        let (lease, r) = (item.0, item.1.clone());
                        let on_chain = shared
                            .chain
                            .call(move |c| c.fetch_opt::<Lease>(&lease.lease))
                            .await;
                        match on_chain {
                            Ok(Some(l))
                                if l.nonce == r.lease_nonce
                                    && l.seconds_settled >= r.served_seconds =>
                            {
                                ok.push((item.0, item.1, String::new()));
                            }
                            _ => {
                                shared.metrics.failed_transactions.inc();
                                tracing::warn!(%e, lease = %item.0.lease, "receipt not settled");
                            }
                        }
                    }
                }
            }
            ok
        }
    };
    let mut settled = 0;
    for (lease, r, signature) in &done {
        if record_settled(shared, lease, r.served_seconds, signature).await {
            settled += 1;
        }
    }
    settled
}

/// Leases whose job exited: final receipt and close in one transaction, then the order completes
/// once it has no lease left (with the job's result hash).
async fn end_exited(shared: &Arc<Shared>) {
    let grace = shared.cfg.grace();
    let exited: Vec<(LeaseRef, Option<SignedReceipt>, Option<[u8; 32]>)> = {
        // The copy's lock first, then the live state's.
        let mirror = shared.mirror();
        let live = shared.live();
        live.leases
            .values()
            .filter(|t| t.job == JobPhase::Exited)
            // A worker signs a job's last seconds before it reports the exit; should that receipt
            // still be on its way (an older daemon, a reconnect), it gets the grace period
            // before the lease is closed on the receipts at hand.
            .filter(|t| {
                let signed = t.latest_receipt.as_ref().map_or(0, |r| r.served_seconds);
                signed >= t.shown_seconds() || t.exited_at.is_none_or(|at| at.elapsed() >= grace)
            })
            .map(|t| {
                let last = t.payable(pay_cap(mirror.as_ref(), t));
                (t.lease, last, t.result_hash)
            })
            .collect()
    };
    for (lease, last, result_hash) in exited {
        shared.live().finished.insert(lease.order);
        let orchestrator = shared.orchestrator.clone();
        let final_receipt = last.clone();
        let result = shared
            .chain
            .call(move |c| orchestrator.end_lease(c, &lease, final_receipt, CloseReason::Completed))
            .await;
        let outcome = match result {
            Ok(o) => o,
            Err(e) => {
                shared.metrics.failed_transactions.inc();
                tracing::warn!(%e, lease = %lease.lease, "closing a finished lease failed; retrying later");
                continue;
            }
        };
        let id = lease_id(&lease);
        if let Some(r) = &last {
            let _ = shared
                .store
                .record_settlement(&id, r.served_seconds, &outcome.signature, unix_ms())
                .await;
        }
        shared.feed.send(FeedEvent::LeaseEnded {
            order: lease.order.to_string(),
            worker: lease.worker.to_string(),
            lease: lease.lease.to_string(),
            nonce: lease.nonce,
            reason: "completed".into(),
        });
        shared.live().leases.remove(&id);
        if let Some(m) = shared.mirror().as_mut() {
            m.closed(&lease.lease);
        }
        let order = lease.order;
        let orchestrator = shared.orchestrator.clone();
        let hash = result_hash.unwrap_or([0; 32]);
        let completed = shared
            .chain
            .call(move |c| {
                let o: Option<Order> = c.fetch_opt(&order)?;
                match o {
                    Some(o) if o.active_leases == 0 && o.total_paid > 0 => orchestrator
                        .complete_order(c, &order, hash)
                        .map(|_| true)
                        .map_err(|e| match e {
                            ActionError::Chain(c) => c,
                            other => gpumesh_client::ChainError::Rpc(other.to_string()),
                        }),
                    _ => Ok(false),
                }
            })
            .await;
        match completed {
            Ok(true) => {
                if let Some(m) = shared.mirror().as_mut() {
                    m.order_gone(&order);
                }
                shared.feed.send(FeedEvent::OrderCompleted {
                    order: order.to_string(),
                    result_hash: result_hash.map(|h| gpumesh_protocol::hex(&h)),
                });
                tracing::info!(%order, "order completed")
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(%e, %order, "completing the order failed"),
        }
        shared.placement.notify_one();
    }
}

/// A failed failover is tried again after this long (the lease stays down meanwhile).
const FAILOVER_RETRY: Duration = Duration::from_millis(500);

/// Takes out of the live set every lease whose worker is silent past the grace period (the
/// lease and its worker's session both), with its final receipt when that is ahead of what was
/// settled. Also returns the earliest moment another lease could be declared down: a heartbeat
/// only moves its lease's moment later, and a new lease's is a full grace period away, so
/// nothing can be due before it.
fn take_down(shared: &Shared) -> (Vec<(Tracked, Option<SignedReceipt>)>, Option<Instant>) {
    let grace = shared.cfg.grace();
    let now = Instant::now();
    let mut guard = shared.live();
    let live = &mut *guard;
    let mut next: Option<Instant> = None;
    let mut ids = vec![];
    for t in live.leases.values() {
        if t.job == JobPhase::Exited {
            continue;
        }
        let seen = live
            .sessions
            .get(&t.worker)
            .map_or(t.last_beat, |s| s.last_seen.max(t.last_beat));
        let due = (seen + grace).max(t.retry_at.unwrap_or(now));
        if seen + grace < now && due <= now {
            ids.push(t.id);
        } else {
            next = Some(next.map_or(due, |n| n.min(due)));
        }
    }
    let down = ids
        .into_iter()
        .filter_map(|id| live.leases.remove(&id))
        .map(|t| {
            let last = t
                .latest_receipt
                .clone()
                .filter(|r| r.served_seconds > t.settled_seconds);
            (t, last)
        })
        .collect();
    (down, next)
}

/// Declares down every worker silent past the grace period. For each of its leases, one
/// transaction settles the final receipt, closes the lease as offline (the buyer is paid the
/// slash) and assigns the lost GPUs to a spare chosen from the followed view; the job starts on
/// the spare as soon as it confirms. With no spare that fits, the lease closes alone and the
/// order waits with the reason.
///
/// Returns how many leases closed, and the earliest moment to look again.
pub async fn failover(shared: &Arc<Shared>) -> (usize, Option<Instant>) {
    let (down, mut next) = take_down(shared);
    if down.is_empty() {
        return (0, next);
    }
    let tried = down.len();
    let mut moved = 0;
    if shared.cfg.sequential_failover {
        for (t, last) in down {
            let plan = Plan::none("placed again by the next placement round");
            if fail_over_one(shared, t, last, plan, None).await {
                moved += 1;
            }
        }
    } else {
        let dead: HashSet<Pubkey> = down.iter().map(|(t, _)| t.worker).collect();
        let mut view = match view_on(shared, &shared.failover_chain).await {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::warn!(%e, "no view of the market for a replacement; closing only");
                None
            }
        };
        for (t, last) in down {
            let plan = match view.as_mut() {
                Some(v) => replacement(shared, v, &t, &dead).await,
                None => Plan::none("the market could not be read when its worker went down"),
            };
            if fail_over_one(shared, t, last, plan, view.as_ref()).await {
                moved += 1;
            }
        }
    }
    if moved > 0 {
        shared.placement.notify_one();
    }
    if moved < tried {
        // Some will be tried again.
        let retry = Instant::now() + FAILOVER_RETRY;
        next = Some(next.map_or(retry, |n| n.min(retry)));
    }
    (moved, next)
}

/// Where a down lease's GPUs go.
struct Plan {
    spares: Vec<Spare>,
    /// The order's job spec (its text and parsed form), for the spares' StartJob.
    spec: Option<(String, JobSpec)>,
    /// Why there is no spare (the order's waiting reason).
    why_not: String,
}

impl Plan {
    fn none(why: impl Into<String>) -> Self {
        Self {
            spares: vec![],
            spec: None,
            why_not: why.into(),
        }
    }
}

/// Chooses spares for a down lease from `view` (the followed copy): the lease counted as ended,
/// the connected workers that passed their challenge (none of the `dead`), the order's lost GPUs
/// placed by the scheduler ahead of any new order, in the region where the order's other leases
/// run if it has any (a cluster stays in one region), and checked with the program's rules. The
/// spares' GPUs are counted on `view`, so the next down lease does not take them too.
async fn replacement(
    shared: &Arc<Shared>,
    view: &mut MarketView,
    t: &Tracked,
    dead: &HashSet<Pubkey>,
) -> Plan {
    view.assume_released(&t.order, &t.worker, t.gpus);
    let Some(oi) = view.order_index(&t.order) else {
        return Plan::none("the order is not in the market's accounts");
    };
    let Some(mut order) = view.order(oi) else {
        return Plan::none(
            "it takes no new lease: its buyer asked to close it, it is served in full or its escrow is empty",
        );
    };
    let spec = match shared.store.spec(&t.order.to_string()).await {
        Ok(Some(text)) => match JobSpec::from_toml(&text) {
            Ok(spec) => (text, spec),
            Err(e) => return Plan::none(format!("its job spec does not parse: {e}")),
        },
        _ => return Plan::none(NO_SPEC),
    };
    if let Some(region) = view
        .workers_of(&t.order)
        .first()
        .and_then(|k| view.workers.iter().find(|(w, _)| w == k))
        .and_then(|(_, w)| crate::scheduler::Region::from_code(w.hardware.region).ok())
    {
        order.regions = RegionSet::of(&[region]);
    }
    let connected = available_workers(shared, dead);
    let class = view.orders[oi].1.terms.requirements.gpu_class;
    let mut s = match Scheduler::new(SchedulerConfig::default()) {
        Ok(s) => s,
        Err(e) => return Plan::none(e.to_string()),
    };
    let workers = (0..view.workers.len())
        .filter(|&i| view.workers[i].1.hardware.gpu_class == class)
        .filter_map(|i| {
            let rtt = connected.get(&view.workers[i].0)?;
            view.worker_spec(i, *rtt)
        })
        .collect();
    let id = OrderId(oi as u64);
    if let Err(e) = s.add_workers(workers).and_then(|()| s.submit_order(order)) {
        return Plan::none(e.to_string());
    }
    match s.place_order(id) {
        Ok(Some(p)) => match view.propose(&p) {
            Ok(list) => Plan {
                spares: list
                    .into_iter()
                    .map(|a| Spare {
                        worker: a.worker,
                        gpus: a.gpus,
                    })
                    .collect(),
                spec: Some(spec),
                why_not: String::new(),
            },
            Err(e) => Plan::none(format!("the replacement failed the program's checks: {e}")),
        },
        Ok(None) => match s.explain_order(id) {
            Ok(why) => Plan::none(format!("no worker fits yet: {why:?}")),
            Err(e) => Plan::none(e.to_string()),
        },
        Err(e) => Plan::none(e.to_string()),
    }
}

/// The failover moves to try, in order: everything at once; then, if the chain refused it, what
/// the chain still allows (the final receipt dropped when it settled meanwhile, then without the
/// spares, then without the receipt: the lease must close).
fn attempts(
    last: &Option<SignedReceipt>,
    settled_on_chain: u64,
    spares: &[Spare],
) -> Vec<(Option<SignedReceipt>, Vec<Spare>)> {
    let fresh = last.clone().filter(|r| r.served_seconds > settled_on_chain);
    let mut out = vec![];
    if !spares.is_empty() && fresh.is_none() && last.is_some() {
        out.push((None, spares.to_vec()));
    }
    out.push((fresh.clone(), vec![]));
    if fresh.is_some() {
        out.push((None, vec![]));
    }
    out
}

/// Fails one down lease over as `plan` says; on a refusal, falls back to what the chain allows.
/// Returns whether the lease closed.
async fn fail_over_one(
    shared: &Arc<Shared>,
    mut t: Tracked,
    last: Option<SignedReceipt>,
    plan: Plan,
    view: Option<&MarketView>,
) -> bool {
    let lease = t.lease;
    if let Some(m) = shared.mirror().as_mut() {
        for s in &plan.spares {
            m.assigned(lease.order, s.worker, s.gpus);
        }
    }
    let send = |receipt: Option<SignedReceipt>, spares: Vec<Spare>| {
        let orchestrator = shared.orchestrator.clone();
        shared
            .failover_chain
            .call(move |c| orchestrator.fail_over(c, &lease, receipt, &spares))
    };
    let mut result = send(last.clone(), plan.spares.clone()).await;
    if let Err(e) = &result {
        shared.metrics.failed_transactions.inc();
        tracing::warn!(%e, lease = %lease.lease, "failover transaction refused; trying what the chain allows");
        let key = lease.lease;
        let on_chain = shared
            .failover_chain
            .call(move |c| c.fetch_opt::<Lease>(&key))
            .await;
        match on_chain {
            Ok(Some(l)) if l.nonce == lease.nonce => {
                for (receipt, spares) in attempts(&last, l.seconds_settled, &plan.spares) {
                    result = send(receipt, spares).await;
                    if result.is_ok() {
                        break;
                    }
                    shared.metrics.failed_transactions.inc();
                }
            }
            Ok(_) => {
                // Gone: closed by someone else, or by our own transaction whose confirmation
                // did not come back. Spares it assigned are on chain: take them on.
                let taken = adopt_landed(shared, &t, &plan, view).await;
                if let Some(m) = shared.mirror().as_mut() {
                    for s in &plan.spares {
                        if !taken.contains(&s.worker) {
                            m.unassigned(&lease.order, &s.worker);
                        }
                    }
                    m.closed(&lease.lease);
                }
                shared.feed.send(FeedEvent::LeaseEnded {
                    order: t.order.to_string(),
                    worker: t.worker.to_string(),
                    lease: lease.lease.to_string(),
                    nonce: lease.nonce,
                    reason: "ended_on_chain".into(),
                });
                return false;
            }
            Err(_) => {
                shared.metrics.rpc_errors.inc();
            }
        }
    }
    let done: FailedOver = match result {
        Ok(done) => done,
        Err(e) => {
            shared.metrics.failed_transactions.inc();
            tracing::warn!(%e, lease = %lease.lease, "offline close failed; trying again");
            if let Some(m) = shared.mirror().as_mut() {
                for s in &plan.spares {
                    m.unassigned(&lease.order, &s.worker);
                }
            }
            t.retry_at = Some(Instant::now() + FAILOVER_RETRY);
            shared.live().leases.insert(t.id, t);
            return false;
        }
    };
    shared.metrics.failovers.inc();
    if let Some(m) = shared.mirror().as_mut() {
        let assigned: HashSet<Pubkey> = done.leases.iter().map(|l| l.worker).collect();
        for s in &plan.spares {
            if !assigned.contains(&s.worker) {
                m.unassigned(&lease.order, &s.worker);
            }
        }
        m.closed(&lease.lease);
    }
    if let (Some(r), Some(signature)) = (&last, &done.settled_in)
        && let Err(e) = shared
            .store
            .record_settlement(&t.id, r.served_seconds, signature, unix_ms())
            .await
    {
        tracing::warn!(%e, "cannot record a settlement");
    }
    let replacement = done.leases.first().map(|l| l.worker.to_string());
    shared.feed.send(FeedEvent::WorkerDown {
        worker: t.worker.to_string(),
        order: t.order.to_string(),
        lease: lease.lease.to_string(),
        nonce: lease.nonce,
        silent_ms: t.last_beat.elapsed().as_millis() as u64,
        signature: done.outcome.signature.clone(),
        replacement,
    });
    shared.feed.send(FeedEvent::LeaseEnded {
        order: t.order.to_string(),
        worker: t.worker.to_string(),
        lease: lease.lease.to_string(),
        nonce: lease.nonce,
        reason: "worker_offline".into(),
    });
    {
        let mut live = shared.live();
        live.failed_over.insert(t.order, t.last_beat);
        if let Some(s) = live.sessions.get(&t.worker) {
            let _ = s.tx.try_send(ToWorker::StopJob {
                lease: t.id,
                reason: StopReason::DeclaredDown,
                grace_ms: 0,
            });
        }
    }
    tracing::warn!(worker = %t.worker, lease = %lease.lease, replaced_by = done.leases.len(), "worker declared down; lease closed as offline");
    match (&plan.spec, view) {
        (Some((text, spec)), Some(view)) if !done.leases.is_empty() => {
            for new in &done.leases {
                let gpus = plan
                    .spares
                    .iter()
                    .find(|s| s.worker == new.worker)
                    .map_or(t.gpus, |s| s.gpus);
                start_job(shared, view, *new, gpus, text, spec.clone());
            }
        }
        _ => {
            let why = if plan.spares.is_empty() {
                plan.why_not.clone()
            } else {
                "its spare could not be assigned with the close; placement tries again".into()
            };
            let mut live = shared.live();
            if live.waiting.get(&t.order) != Some(&why) {
                shared.feed.send(FeedEvent::OrderWaiting {
                    order: t.order.to_string(),
                    reason: why.clone(),
                });
            }
            live.waiting.insert(t.order, why);
        }
    }
    true
}

/// After a failover whose outcome is unknown and whose lease is gone: the spares it planned
/// whose lease is on chain are tracked and their jobs started. Returns those spares.
async fn adopt_landed(
    shared: &Arc<Shared>,
    t: &Tracked,
    plan: &Plan,
    view: Option<&MarketView>,
) -> HashSet<Pubkey> {
    let mut taken = HashSet::new();
    let (Some((text, spec)), Some(view)) = (&plan.spec, view) else {
        return taken;
    };
    for s in &plan.spares {
        let key = gpumesh_client::pda::lease(&t.order, &s.worker).0;
        let found = shared
            .failover_chain
            .call(move |c| c.fetch_opt::<Lease>(&key))
            .await;
        if let Ok(Some(l)) = found
            && l.order == t.order
            && l.worker == s.worker
        {
            let r = LeaseRef::of(&l);
            let known = shared.live().leases.contains_key(&lease_id(&r));
            if !known {
                shared.live().failed_over.insert(t.order, t.last_beat);
                start_job(shared, view, r, l.gpus, text, spec.clone());
            }
            taken.insert(s.worker);
        }
    }
    taken
}

/// The placement rounds' reason for an order without its spec.
const NO_SPEC: &str =
    "waiting for its job spec: upload it to the orchestrator (PUT /v1/orders/{order}/spec)";

/// Ends a lease's job on its worker (the lease ended on chain for another reason).
pub fn stop_job(shared: &Shared, worker: &Pubkey, lease: LeaseId) {
    shared.send_to(
        worker,
        ToWorker::StopJob {
            lease,
            reason: StopReason::LeaseEnded,
            grace_ms: shared.cfg.stop_grace_ms,
        },
    );
}

/// Forgets leases that are gone from the chain (closed by the buyer's exit, expired, slashed) and
/// stops their jobs.
pub async fn reconcile(shared: &Arc<Shared>) {
    let ids: Vec<(LeaseId, LeaseRef)> = shared
        .live()
        .leases
        .values()
        .map(|t| (t.id, t.lease))
        .collect();
    if ids.is_empty() {
        return;
    }
    // While the follower's copy is live, only leases it no longer holds (and that are old
    // enough for it to have heard of them) are read from the chain.
    let assigned: HashMap<LeaseId, Instant> = shared
        .live()
        .leases
        .values()
        .map(|t| (t.id, t.assigned_at))
        .collect();
    let ids: Vec<(LeaseId, LeaseRef)> = {
        let mirror = shared.mirror();
        match mirror.as_ref().filter(|m| m.live) {
            Some(m) => ids
                .into_iter()
                .filter(|(id, l)| {
                    m.leases.get(&l.lease).map(|x| x.nonce) != Some(id.nonce)
                        && assigned
                            .get(id)
                            .is_none_or(|at| at.elapsed() > Duration::from_secs(5))
                })
                .collect(),
            None => ids,
        }
    };
    if ids.is_empty() {
        return;
    }
    let keys: Vec<Pubkey> = ids.iter().map(|(_, l)| l.lease).collect();
    let present = shared
        .chain
        .call(move |c| {
            keys.iter()
                .map(|k| c.fetch_opt::<Lease>(k).map(|l| l.map(|l| l.nonce)))
                .collect::<Result<Vec<_>, _>>()
        })
        .await;
    let Ok(present) = present else { return };
    for ((id, lease), onchain) in ids.into_iter().zip(present) {
        if onchain != Some(id.nonce) {
            let removed = shared.live().leases.remove(&id);
            if let Some(t) = removed {
                stop_job(shared, &t.worker, id);
                shared.feed.send(FeedEvent::LeaseEnded {
                    order: t.order.to_string(),
                    worker: t.worker.to_string(),
                    lease: lease.lease.to_string(),
                    nonce: id.nonce,
                    reason: "ended_on_chain".into(),
                });
                tracing::info!(lease = %lease.lease, "lease ended on chain; job stopped");
                shared.placement.notify_one();
            }
        }
    }
}

/// The longest the failover task sleeps between looks at the leases; it wakes earlier, at the
/// moment the next lease's grace period runs out.
pub const FAILOVER_CHECK: Duration = Duration::from_millis(250);
/// How often leases are checked against the chain (ended by others).
const RECONCILE_EVERY: Duration = Duration::from_secs(2);

/// Runs the loops until `stop` resolves: placement, settlement, failover and reconciliation each
/// in a task of its own, so a slow round of one never delays another (failover also sends
/// through its own connection to the chain, see [`Shared::failover_chain`]).
pub async fn run_loops(shared: Arc<Shared>, stop: tokio::sync::watch::Receiver<bool>) {
    if shared.cfg.sequential_failover {
        return run_loops_sequential(shared, stop).await;
    }
    let placement = {
        let (shared, mut stop) = (shared.clone(), stop.clone());
        tokio::spawn(async move {
            let mut tick =
                tokio::time::interval(Duration::from_millis(shared.cfg.placement_every_ms));
            loop {
                tokio::select! {
                    _ = stop.changed() => break,
                    _ = tick.tick() => log(place(&shared).await, "placement"),
                    _ = shared.placement.notified() => log(place(&shared).await, "placement"),
                }
            }
        })
    };
    let settlement = {
        let (shared, mut stop) = (shared.clone(), stop.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(shared.cfg.settle_every_s));
            loop {
                tokio::select! {
                    _ = stop.changed() => break,
                    _ = tick.tick() => { settle(&shared).await; }
                    _ = shared.settlement.notified() => { settle(&shared).await; }
                }
            }
        })
    };
    let failover_task = {
        let (shared, mut stop) = (shared.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let (_, next) = failover(&shared).await;
                let now = Instant::now();
                let wake = next.map_or(now + FAILOVER_CHECK, |at| at.min(now + FAILOVER_CHECK));
                // Just past the moment, so the lease due then is past its grace.
                let wake = wake.max(now) + Duration::from_millis(1);
                tokio::select! {
                    _ = stop.changed() => break,
                    _ = tokio::time::sleep_until(wake.into()) => {}
                }
            }
        })
    };
    let reconciler = {
        let (shared, mut stop) = (shared.clone(), stop);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(RECONCILE_EVERY);
            loop {
                tokio::select! {
                    _ = stop.changed() => break,
                    _ = tick.tick() => {
                        stop_at_limits(&shared);
                        reconcile(&shared).await;
                    }
                }
            }
        })
    };
    for task in [placement, settlement, failover_task, reconciler] {
        if let Err(e) = task.await
            && e.is_panic()
        {
            std::panic::resume_unwind(e.into_panic());
        }
    }
}

/// The loops as one: placement, settlement, failover (every 100 ms, closing the lease alone and
/// leaving the order to the next placement round) and reconciliation take turns in one task.
/// How the service ran before failover replaced leases in one transaction; kept as the failover
/// benchmark's baseline (`Config::sequential_failover`).
async fn run_loops_sequential(shared: Arc<Shared>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let placement_every = Duration::from_millis(shared.cfg.placement_every_ms);
    let settle_every = Duration::from_secs(shared.cfg.settle_every_s);
    let mut placement_tick = tokio::time::interval(placement_every);
    let mut settle_tick = tokio::time::interval(settle_every);
    let mut failover_tick = tokio::time::interval(Duration::from_millis(100));
    let mut reconcile_tick = tokio::time::interval(RECONCILE_EVERY);
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = placement_tick.tick() => { log(place(&shared).await, "placement"); }
            _ = shared.placement.notified() => { log(place(&shared).await, "placement"); }
            _ = settle_tick.tick() => { settle(&shared).await; }
            _ = shared.settlement.notified() => { settle(&shared).await; }
            _ = failover_tick.tick() => { let _ = failover(&shared).await; }
            _ = reconcile_tick.tick() => {
                stop_at_limits(&shared);
                reconcile(&shared).await;
            }
        }
    }
}

fn log(result: Result<usize, String>, what: &str) {
    if let Err(e) = result {
        tracing::warn!(%e, "{what} round failed");
    }
}
