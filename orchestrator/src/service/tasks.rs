//! The service's loops: placement (rounds on events and at a bounded rate), settlement (on a
//! cadence and at every lease end), failover (a worker silent past the grace period is down: its
//! leases close as offline with their last receipt settled, the buyer is paid the slash, and the
//! orders are placed again at once), and restoring what the chain and the store hold at start.

use super::feed::FeedEvent;
use super::state::{JobPhase, Shared, Tracked};
use crate::actions::ActionError;
use crate::scheduler::{Scheduler, SchedulerConfig};
use crate::sync::MarketView;
use gpumesh_client::ix::LeaseRef;
use gpumesh_client::program::state::{CloseReason, Lease, Order};
use gpumesh_client::{ChainExt, Pubkey, filters, receipt};
use gpumesh_protocol::SignedReceipt;
use gpumesh_protocol::heartbeat::HeartbeatChain;
use gpumesh_protocol::wire::{JobSpec, LeaseAssignment, LeaseId, StopReason, ToWorker};
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
        settled_seconds: settled,
        job: JobPhase::Assigned,
        result_hash: None,
        assigned_at: Instant::now(),
        failover_from: None,
        exited_at: None,
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
        t.latest_receipt = shared.store.latest_receipt(&t.id).await.ok().flatten();
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
    let now = shared.chain.call(|c| c.unix_time()).await.map_err(|e| {
        shared.metrics.rpc_errors.inc();
        format!("cannot read the chain's clock: {e}")
    })?;
    if let Some(m) = shared.mirror().as_ref().filter(|m| m.live) {
        return Ok(m.view(now));
    }
    let market = shared.addrs.market;
    shared.metrics.chain_loads.inc();
    shared
        .chain
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
    // Workers connected that proved their class and are not proving it right now.
    let connected: HashMap<Pubkey, u32> = shared
        .live()
        .sessions
        .iter()
        .filter(|(_, s)| s.verified && !s.challenging)
        .map(|(k, s)| (*k, s.rtt_us.unwrap_or(crate::sync::UNMEASURED_LATENCY_US)))
        .collect();
    let mut specs: HashMap<Pubkey, (String, JobSpec)> = HashMap::new();
    let mut waiting = HashMap::new();
    for (i, (key, _)) in view.orders.iter().enumerate() {
        if view.order(i).is_none() {
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
                waiting.insert(
                    *key,
                    "waiting for its job spec: upload it to the orchestrator (PUT /v1/orders/{order}/spec)".into(),
                );
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
            let result = shared
                .chain
                .call(move |c| orchestrator.assign(c, &a.order, &a.worker, a.gpus))
                .await;
            let lease = match result {
                Ok((lease, _)) => {
                    if let Some(m) = shared.mirror().as_mut() {
                        m.assigned(a.order, a.worker, a.gpus);
                    }
                    lease
                }
                Err(e) => {
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
pub async fn settle(shared: &Arc<Shared>) -> usize {
    let due: Vec<(LeaseRef, SignedReceipt)> = {
        let live = shared.live();
        live.leases
            .values()
            .filter(|t| t.job != JobPhase::Exited)
            .filter_map(|t| {
                let r = t.latest_receipt.as_ref()?;
                (r.served_seconds > t.settled_seconds).then(|| (t.lease, r.clone()))
            })
            .collect()
    };
    shared.metrics.settlement_backlog.set(due.len() as i64);
    let mut settled = 0;
    if !due.is_empty() {
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
                // One bad receipt must not hold the others back: settle them one by one. A
                // batch before the failing one may have landed: the chain says which did, and
                // a cumulative receipt is never sent to be paid twice.
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
        let now_ms = unix_ms();
        for (lease, r, signature) in &done {
            let id = lease_id(lease);
            let stored = if signature.is_empty() {
                shared.store.mark_settled(&id, r.served_seconds).await
            } else {
                shared
                    .store
                    .record_settlement(&id, r.served_seconds, signature, now_ms)
                    .await
            };
            if let Err(e) = stored {
                tracing::warn!(%e, "cannot record a settlement");
            }
            if let Some(t) = shared.live().leases.get_mut(&id) {
                t.settled_seconds = t.settled_seconds.max(r.served_seconds);
            }
            shared.feed.send(FeedEvent::Settled {
                order: lease.order.to_string(),
                worker: lease.worker.to_string(),
                lease: lease.lease.to_string(),
                nonce: lease.nonce,
                served_seconds: r.served_seconds,
                signature: signature.clone(),
            });
            settled += 1;
        }
    }
    end_exited(shared).await;
    settled
}

/// Leases whose job exited: final receipt and close in one transaction, then the order completes
/// once it has no lease left (with the job's result hash).
async fn end_exited(shared: &Arc<Shared>) {
    let grace = shared.cfg.grace();
    let exited: Vec<(LeaseRef, Option<SignedReceipt>, Option<[u8; 32]>)> = {
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
                let last = t
                    .latest_receipt
                    .clone()
                    .filter(|r| r.served_seconds > t.settled_seconds);
                (t.lease, last, t.result_hash)
            })
            .collect()
    };
    for (lease, last, result_hash) in exited {
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
                shared.feed.send(FeedEvent::OrderCompleted {
                    order: order.to_string(),
                    result_hash: result_hash
                        .map(|h| h.iter().map(|b| format!("{b:02x}")).collect()),
                });
                tracing::info!(%order, "order completed")
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(%e, %order, "completing the order failed"),
        }
        shared.placement.notify_one();
    }
}

/// Declares down every worker silent past the grace period: its leases close as offline (final
/// receipt settled, the buyer paid the slash), and their orders are placed again at once.
pub async fn failover(shared: &Arc<Shared>) -> usize {
    let grace = shared.cfg.grace();
    let down: Vec<(Tracked, Option<SignedReceipt>)> = {
        let mut live = shared.live();
        let silent: HashSet<Pubkey> = live
            .leases
            .values()
            .filter(|t| t.last_beat.elapsed() > grace && t.job != JobPhase::Exited)
            .filter(|t| {
                live.sessions
                    .get(&t.worker)
                    .is_none_or(|s| s.last_seen.elapsed() > grace)
            })
            .map(|t| t.worker)
            .collect();
        let ids: Vec<LeaseId> = live
            .leases
            .values()
            .filter(|t| silent.contains(&t.worker) && t.last_beat.elapsed() > grace)
            .map(|t| t.id)
            .collect();
        ids.into_iter()
            .filter_map(|id| live.leases.remove(&id))
            .map(|t| {
                let last = t
                    .latest_receipt
                    .clone()
                    .filter(|r| r.served_seconds > t.settled_seconds);
                (t, last)
            })
            .collect()
    };
    let mut moved = 0;
    for (t, last) in down {
        let lease = t.lease;
        let orchestrator = shared.orchestrator.clone();
        let with_receipt = last.clone();
        let mut result = shared
            .chain
            .call(move |c| {
                orchestrator.end_lease(c, &lease, with_receipt, CloseReason::WorkerOffline)
            })
            .await;
        // Whether the final receipt settled with the close.
        let mut settled = last.clone();
        if result.is_err() && last.is_some() {
            // The receipt may be what the chain refuses; the lease must still close.
            settled = None;
            let orchestrator = shared.orchestrator.clone();
            result = shared
                .chain
                .call(move |c| orchestrator.end_lease(c, &lease, None, CloseReason::WorkerOffline))
                .await;
        }
        match result {
            Ok(_) => {
                moved += 1;
                shared.metrics.failovers.inc();
                if let Some(m) = shared.mirror().as_mut() {
                    m.closed(&lease.lease);
                }
                if let (Some(r), Ok(outcome)) = (&settled, &result) {
                    let _ = shared
                        .store
                        .record_settlement(&t.id, r.served_seconds, &outcome.signature, unix_ms())
                        .await;
                }
                shared.feed.send(FeedEvent::WorkerDown {
                    worker: t.worker.to_string(),
                    order: t.order.to_string(),
                    lease: t.lease.lease.to_string(),
                    nonce: t.lease.nonce,
                    silent_ms: t.last_beat.elapsed().as_millis() as u64,
                });
                shared.feed.send(FeedEvent::LeaseEnded {
                    order: t.order.to_string(),
                    worker: t.worker.to_string(),
                    lease: t.lease.lease.to_string(),
                    nonce: t.lease.nonce,
                    reason: "worker_offline".into(),
                });
                let mut live = shared.live();
                live.failed_over.insert(t.order, t.last_beat);
                if let Some(s) = live.sessions.get(&t.worker) {
                    let _ = s.tx.try_send(ToWorker::StopJob {
                        lease: t.id,
                        reason: StopReason::DeclaredDown,
                        grace_ms: 0,
                    });
                }
                tracing::warn!(worker = %t.worker, lease = %t.lease.lease, "worker declared down; lease closed as offline");
            }
            Err(e) => {
                shared.metrics.failed_transactions.inc();
                let gone = matches!(&e, ActionError::Chain(c) if c.code() == Some(3012));
                tracing::warn!(%e, lease = %t.lease.lease, "offline close failed");
                if !gone {
                    // Try again on the next tick.
                    shared.live().leases.insert(t.id, t);
                }
            }
        }
    }
    if moved > 0 {
        shared.placement.notify_one();
    }
    moved
}

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

/// Runs the loops until `stop` resolves.
pub async fn run_loops(shared: Arc<Shared>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let placement_every = Duration::from_millis(shared.cfg.placement_every_ms);
    let settle_every = Duration::from_secs(shared.cfg.settle_every_s);
    let mut placement_tick = tokio::time::interval(placement_every);
    let mut settle_tick = tokio::time::interval(settle_every);
    let mut failover_tick = tokio::time::interval(Duration::from_millis(100));
    let mut reconcile_tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = placement_tick.tick() => { log(place(&shared).await, "placement"); }
            _ = shared.placement.notified() => { log(place(&shared).await, "placement"); }
            _ = settle_tick.tick() => { settle(&shared).await; }
            _ = shared.settlement.notified() => { settle(&shared).await; }
            _ = failover_tick.tick() => { failover(&shared).await; }
            _ = reconcile_tick.tick() => { reconcile(&shared).await; }
        }
    }
}

fn log(result: Result<usize, String>, what: &str) {
    if let Err(e) = result {
        tracing::warn!(%e, "{what} round failed");
    }
}
