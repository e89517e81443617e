//! The service's live copy of its market. It subscribes to the program's accounts of this market
//! and to the market account over the node's websocket, lists the market once the subscriptions
//! stand (so no change falls in between), then applies every change it hears. Placement rounds
//! read this copy instead of listing the market each time.
//!
//! What no notification reports is an account closed by someone else (a lease ended by the
//! buyer's exit): when an order's or a worker's counts stop matching the leases the copy holds,
//! those leases are read again, and the whole market is listed again every `resync_every_s`.
//! When the websocket drops, the copy is marked stale (placement lists the market itself
//! meanwhile), and the follower reconnects with backoff and lists again.

use super::state::Shared;
use crate::sync::{MarketAccounts, MarketView};
use anchor_lang::{AccountDeserialize, Discriminator};
use gpumesh_client::program::state::{Lease, Market, Order, Worker};
use gpumesh_client::pubsub::{self, Follow, Update};
use gpumesh_client::{ChainExt, Pubkey, filters};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// How long an assignment the chain took counts against the copy before the copy shows it.
const PENDING_FOR: Duration = Duration::from_secs(30);

/// The market's accounts as the follower last heard them.
#[derive(Debug, Clone)]
pub struct Mirror {
    pub market: Market,
    pub workers: HashMap<Pubkey, Worker>,
    pub orders: HashMap<Pubkey, Order>,
    pub leases: HashMap<Pubkey, Lease>,
    /// Whether the websocket is live (otherwise the copy may be behind the chain).
    pub live: bool,
    /// Assignments sent and confirmed whose lease the copy has not heard of yet.
    pending: Vec<(Pubkey, Pubkey, u16, Instant)>,
}

/// What an update asks of the follower besides applying it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// The account was one of this market's.
    pub relevant: bool,
    /// Leases whose existence the counts put in doubt: read them again.
    pub check: Vec<Pubkey>,
}

impl Mirror {
    pub fn new(accounts: MarketAccounts) -> Self {
        Self {
            market: accounts.market,
            workers: accounts.workers.into_iter().collect(),
            orders: accounts.orders.into_iter().collect(),
            leases: accounts.leases.into_iter().collect(),
            live: true,
            pending: vec![],
        }
    }

    /// Replaces the accounts with a fresh listing (pending assignments the listing does not show
    /// yet are kept).
    pub fn reload(&mut self, accounts: MarketAccounts) {
        let pending = std::mem::take(&mut self.pending);
        *self = Self::new(accounts);
        self.pending = pending;
        self.prune_pending();
    }

    /// The scheduler's view of the copy at chain time `now`, with the pending assignments counted.
    pub fn view(&self, now: i64) -> MarketView {
        let mut view = MarketView::new(
            MarketAccounts {
                market: self.market.clone(),
                workers: self.workers.iter().map(|(k, w)| (*k, w.clone())).collect(),
                orders: self.orders.iter().map(|(k, o)| (*k, o.clone())).collect(),
                leases: self.leases.iter().map(|(k, l)| (*k, l.clone())).collect(),
            },
            now,
        );
        for (order, worker, gpus, _) in &self.pending {
            view.assume_assigned(order, worker, *gpus);
        }
        view
    }

    /// Records an assignment the chain confirmed, until the copy hears of its lease.
    pub fn assigned(&mut self, order: Pubkey, worker: Pubkey, gpus: u16) {
        self.pending.push((order, worker, gpus, Instant::now()));
    }

    /// Takes back an assignment recorded with [`Mirror::assigned`] that did not land.
    pub fn unassigned(&mut self, order: &Pubkey, worker: &Pubkey) {
        if let Some(at) = self
            .pending
            .iter()
            .rposition(|(o, w, _, _)| o == order && w == worker)
        {
            self.pending.remove(at);
        }
    }

    /// Forgets a lease the service closed itself, and frees its GPUs on the copy's order and
    /// worker unless the copy already heard of the close (its count of their leases shows it),
    /// so a placement round right after sees them free. The follower's next notification of
    /// those accounts replaces them with what the chain says.
    pub fn closed(&mut self, lease: &Pubkey) {
        let Some(l) = self.leases.remove(lease) else {
            return;
        };
        let held_by_order = self.leases.values().filter(|x| x.order == l.order).count() + 1;
        if let Some(o) = self.orders.get_mut(&l.order)
            && usize::from(o.active_leases) == held_by_order
        {
            o.gpus_assigned = o.gpus_assigned.saturating_sub(l.gpus);
            o.active_leases = o.active_leases.saturating_sub(1);
        }
        let held_by_worker = self
            .leases
            .values()
            .filter(|x| x.worker == l.worker)
            .count()
            + 1;
        if let Some(w) = self.workers.get_mut(&l.worker)
            && usize::from(w.active_leases) == held_by_worker
        {
            w.gpus_leased = w.gpus_leased.saturating_sub(l.gpus);
            w.active_leases = w.active_leases.saturating_sub(1);
        }
    }

    /// Forgets an order the chain no longer has (the service completed it, or a move found it
    /// gone): a program subscription never reports a closed account, and placement must not
    /// keep proposing it until the next full listing.
    pub fn order_gone(&mut self, order: &Pubkey) {
        self.orders.remove(order);
        self.pending.retain(|(o, _, _, _)| o != order);
    }

    fn prune_pending(&mut self) {
        let leases = &self.leases;
        self.pending.retain(|(order, worker, _, at)| {
            at.elapsed() < PENDING_FOR
                && !leases
                    .values()
                    .any(|l| l.order == *order && l.worker == *worker)
        });
    }

    /// Applies one account as a notification carried it.
    pub fn apply(&mut self, market_key: &Pubkey, u: &Update) -> Applied {
        let data = &u.account.data;
        let ours = u.account.owner == gpumesh_client::program::ID && !data.is_empty();
        if u.key == *market_key {
            if ours && let Ok(m) = Market::try_deserialize(&mut &data[..]) {
                self.market = m;
            }
            return Applied {
                relevant: true,
                check: vec![],
            };
        }
        if !ours {
            // Closed (an account subscription reports it; a program subscription never does).
            let known = self.workers.remove(&u.key).is_some()
                | self.orders.remove(&u.key).is_some()
                | self.leases.remove(&u.key).is_some();
            return Applied {
                relevant: known,
                check: vec![],
            };
        }
        let disc = data.get(..8).unwrap_or_default();
        let mut check = vec![];
        if disc == Worker::DISCRIMINATOR {
            let Ok(w) = Worker::try_deserialize(&mut &data[..]) else {
                return Applied::default();
            };
            if w.market != *market_key {
                return Applied::default();
            }
            let held: Vec<Pubkey> = self.leases_where(|l| l.worker == u.key);
            if held.len() != usize::from(w.active_leases) {
                check = held;
            }
            self.workers.insert(u.key, w);
        } else if disc == Order::DISCRIMINATOR {
            let Ok(o) = Order::try_deserialize(&mut &data[..]) else {
                return Applied::default();
            };
            if o.market != *market_key {
                return Applied::default();
            }
            let held: Vec<Pubkey> = self.leases_where(|l| l.order == u.key);
            if held.len() != usize::from(o.active_leases) {
                check = held;
            }
            self.orders.insert(u.key, o);
        } else if disc == Lease::DISCRIMINATOR {
            let Ok(l) = Lease::try_deserialize(&mut &data[..]) else {
                return Applied::default();
            };
            if l.market != *market_key {
                return Applied::default();
            }
            self.leases.insert(u.key, l);
            self.prune_pending();
        } else {
            return Applied::default();
        }
        Applied {
            relevant: true,
            check,
        }
    }

    fn leases_where(&self, f: impl Fn(&Lease) -> bool) -> Vec<Pubkey> {
        self.leases
            .iter()
            .filter(|(_, l)| f(l))
            .map(|(k, _)| *k)
            .collect()
    }
}

/// Lists the market's accounts (one full listing, counted).
async fn load(shared: &Arc<Shared>) -> Result<MarketAccounts, String> {
    let market = shared.addrs.market;
    shared.metrics.chain_loads.inc();
    shared
        .chain
        .call(move |c| MarketAccounts::load(c, &market))
        .await
        .map_err(|e| {
            shared.metrics.rpc_errors.inc();
            format!("cannot list the market: {e}")
        })
}

/// Reads leases again and drops those that are gone from the chain.
async fn verify_leases(shared: &Arc<Shared>, keys: Vec<Pubkey>) {
    let asked = keys.clone();
    let found = shared
        .chain
        .call(move |c| {
            keys.iter()
                .map(|k| c.fetch_opt::<Lease>(k))
                .collect::<Result<Vec<_>, _>>()
        })
        .await;
    let Ok(found) = found else {
        shared.metrics.rpc_errors.inc();
        return;
    };
    let mut mirror = shared.mirror();
    if let Some(m) = mirror.as_mut() {
        for (key, lease) in asked.iter().zip(found) {
            match lease {
                Some(l) => {
                    m.leases.insert(*key, l);
                }
                None => {
                    m.leases.remove(key);
                }
            }
        }
    }
}

fn set_live(shared: &Arc<Shared>, live: bool) {
    if let Some(m) = shared.mirror().as_mut() {
        m.live = live;
    }
    shared.metrics.chain_following.set(i64::from(live));
}

/// Follows the chain until `stop` changes.
pub async fn run(shared: Arc<Shared>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let ws_url = match shared.cfg.websocket_url() {
        Ok(url) => url,
        Err(e) => {
            tracing::error!(%e, "no websocket to follow the chain on; placement lists the market each round");
            return;
        }
    };
    let spec = Follow {
        ws_url,
        program: gpumesh_client::program::ID,
        filters: filters::in_market(&shared.addrs.market),
        accounts: vec![shared.addrs.market],
        commitment: pubsub::CommitmentConfig::confirmed(),
    };
    let resync_every = Duration::from_secs(shared.cfg.resync_every_s);
    let mut backoff = Duration::from_millis(200);
    let mut first = true;
    loop {
        if *stop.borrow() {
            return;
        }
        if !first {
            shared.metrics.chain_reconnects.inc();
            tokio::select! {
                _ = stop.changed() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
        first = false;
        let (ready_tx, ready_rx) = oneshot::channel();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut follower = tokio::spawn(pubsub::follow(spec.clone(), ready_tx, tx));
        let ready = tokio::select! {
            _ = stop.changed() => { follower.abort(); return; }
            r = tokio::time::timeout(Duration::from_secs(10), ready_rx) => r,
        };
        if !matches!(ready, Ok(Ok(()))) {
            follower.abort();
            let why = match (&mut follower).await {
                Ok(e) => e.to_string(),
                Err(_) => "no answer in 10 s".to_string(),
            };
            tracing::warn!(%why, url = %spec.ws_url, "cannot follow the chain; retrying");
            set_live(&shared, false);
            continue;
        }
        // Subscribed: what is listed now is at least as new as anything queued so far.
        while rx.try_recv().is_ok() {}
        match load(&shared).await {
            Ok(accounts) => {
                let mut mirror = shared.mirror();
                match mirror.as_mut() {
                    Some(m) => m.reload(accounts),
                    None => *mirror = Some(Mirror::new(accounts)),
                }
            }
            Err(e) => {
                tracing::warn!(%e, "cannot list the market; retrying");
                follower.abort();
                continue;
            }
        }
        set_live(&shared, true);
        backoff = Duration::from_millis(200);
        shared.placement.notify_one();
        tracing::info!(url = %spec.ws_url, "following the market over the websocket");

        let mut resync =
            tokio::time::interval_at(tokio::time::Instant::now() + resync_every, resync_every);
        loop {
            tokio::select! {
                _ = stop.changed() => { follower.abort(); return; }
                update = rx.recv() => {
                    let Some(update) = update else { break };
                    shared.metrics.chain_updates.inc();
                    let market = shared.addrs.market;
                    let applied = shared
                        .mirror()
                        .as_mut()
                        .map(|m| m.apply(&market, &update))
                        .unwrap_or_default();
                    if !applied.check.is_empty() {
                        verify_leases(&shared, applied.check).await;
                    }
                    if applied.relevant {
                        shared.placement.notify_one();
                    }
                }
                _ = resync.tick() => {
                    match load(&shared).await {
                        Ok(accounts) => {
                            if let Some(m) = shared.mirror().as_mut() {
                                m.reload(accounts);
                            }
                        }
                        Err(e) => tracing::warn!(%e, "resync failed; the websocket copy stays"),
                    }
                }
            }
        }
        let why = match follower.await {
            Ok(e) => e.to_string(),
            Err(e) => e.to_string(),
        };
        tracing::warn!(%why, "the websocket dropped; reconnecting and listing the market again");
        set_live(&shared, false);
    }
}
