//! Chain sync: the scheduler's inputs built from the chain's accounts, in this one place. A
//! [`MarketView`] reads a market's workers, orders and live leases; it turns each worker into
//! what the scheduler may place on it (the GPUs that are free *and* backed by stake, nothing on a
//! jailed worker or one priced above the circuit breaker) and each order into what it still
//! needs; and before an assignment is proposed it runs the program's own pure checks
//! (`check_assignable`, the breaker cap, one lease per order and worker) against those accounts,
//! so the orchestrator never sends what the program would refuse.

use crate::scheduler::{
    self, Assignment, GpuClass, OrderId, OrderMode, Placement, Region, RegionSet, Scheduler,
    SchedulerConfig, SchedulerError, WorkerId, WorkerSpec, WorkerStatus, reliability,
};
use gpumesh_client::chain::{Chain, ChainExt};
use gpumesh_client::program::errors::GpumeshError;
use gpumesh_client::program::instructions::{breaker_cap, check_assignable};
use gpumesh_client::program::state::{self as chain, Lease, Market};
use gpumesh_client::{ChainError, MarketAddresses, Pubkey, filters};
use std::collections::{BTreeMap, HashSet};

/// Round-trip latency assumed for a worker the gateway has not measured yet.
pub const UNMEASURED_LATENCY_US: u32 = 50_000;

/// An assignment checked against the program's rules, ready to send as `assign`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainAssignment {
    pub order: Pubkey,
    pub worker: Pubkey,
    pub gpus: u16,
}

/// Why a proposed assignment will not be sent.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProposalError {
    #[error("{0:?} is not an order of this view")]
    UnknownOrder(OrderId),
    #[error("{0:?} is not a worker of this view")]
    UnknownWorker(WorkerId),
    #[error("the program would refuse {assignment:?}: {error}")]
    Refused {
        assignment: Assignment,
        error: GpumeshError,
    },
    #[error(
        "{assignment:?}: the worker already serves this order; the program allows one lease per order and worker"
    )]
    LeaseExists { assignment: Assignment },
}

/// A market as the chain holds it at one moment, indexed the way the scheduler names things:
/// worker `i` is `WorkerId(i)`, order `i` is `OrderId(i)`.
#[derive(Debug, Clone)]
pub struct MarketView {
    pub addrs: MarketAddresses,
    pub market: Market,
    pub workers: Vec<(Pubkey, chain::Worker)>,
    pub orders: Vec<(Pubkey, chain::Order)>,
    /// (order, worker) pairs with a live lease: the program allows one per pair.
    leased: HashSet<(Pubkey, Pubkey)>,
    /// The chain's clock when the view was read.
    pub now: i64,
}

/// A market's accounts as listed from the chain (or kept up to date by the service's follower):
/// the market, its workers, orders and live leases.
#[derive(Debug, Clone)]
pub struct MarketAccounts {
    pub market: Market,
    pub workers: Vec<(Pubkey, chain::Worker)>,
    pub orders: Vec<(Pubkey, chain::Order)>,
    pub leases: Vec<(Pubkey, Lease)>,
}

impl MarketAccounts {
    /// Reads `market`'s accounts (getProgramAccounts with the market filter on a cluster).
    pub fn load(chain: &dyn Chain, market: &Pubkey) -> Result<Self, ChainError> {
        let m: Market = chain.fetch(market)?;
        let in_market = filters::in_market(market);
        Ok(Self {
            market: m,
            workers: chain.list_decoded::<chain::Worker>(&in_market)?,
            orders: chain.list_decoded::<chain::Order>(&in_market)?,
            leases: chain.list_decoded::<Lease>(&in_market)?,
        })
    }
}

impl MarketView {
    /// Reads `market`'s accounts and the chain's clock.
    pub fn load(chain: &dyn Chain, market: &Pubkey) -> Result<Self, ChainError> {
        let accounts = MarketAccounts::load(chain, market)?;
        Ok(Self::new(accounts, chain.unix_time()?))
    }

    /// The view of `accounts` at chain time `now`.
    pub fn new(accounts: MarketAccounts, now: i64) -> Self {
        let MarketAccounts {
            market,
            mut workers,
            mut orders,
            leases,
        } = accounts;
        // A stable numbering, whatever order the node lists accounts in.
        workers.sort_by_key(|(k, _)| *k);
        orders.sort_by_key(|(_, o)| (o.created_ts, o.buyer, o.order_id));
        Self {
            addrs: MarketAddresses::of(&market),
            market,
            workers,
            orders,
            leased: leases.iter().map(|(_, l)| (l.order, l.worker)).collect(),
            now,
        }
    }

    /// Counts an assignment the chain has taken but this view's accounts may not show yet (the
    /// service's follower hears of it a moment later): the worker's GPUs are taken and the pair
    /// is leased, so nothing is proposed twice.
    pub fn assume_assigned(&mut self, order: &Pubkey, worker: &Pubkey, gpus: u16) {
        let oi = self.orders.iter().position(|(k, _)| k == order);
        let wi = self.workers.iter().position(|(k, _)| k == worker);
        if let (Some(oi), Some(wi)) = (oi, wi)
            && !self.leased.contains(&(*order, *worker))
        {
            self.apply(oi, wi, gpus);
        }
    }

    /// Counts a lease as ended although this view's accounts may still show it (the service is
    /// about to close it, or closed it and the follower has not heard yet): the symmetric of
    /// [`MarketView::assume_assigned`]. The worker's GPUs and the order's come free and the pair
    /// may be leased again. Does nothing for a pair this view holds no lease of.
    pub fn assume_released(&mut self, order: &Pubkey, worker: &Pubkey, gpus: u16) {
        if !self.leased.remove(&(*order, *worker)) {
            return;
        }
        if let Some((_, o)) = self.orders.iter_mut().find(|(k, _)| k == order) {
            o.gpus_assigned = o.gpus_assigned.saturating_sub(gpus);
            o.active_leases = o.active_leases.saturating_sub(1);
        }
        if let Some((_, w)) = self.workers.iter_mut().find(|(k, _)| k == worker) {
            w.gpus_leased = w.gpus_leased.saturating_sub(gpus);
            w.active_leases = w.active_leases.saturating_sub(1);
        }
    }

    /// The index of `order` in this view (its `OrderId`), if the view holds it.
    pub fn order_index(&self, order: &Pubkey) -> Option<usize> {
        self.orders.iter().position(|(k, _)| k == order)
    }

    /// The workers serving `order` in this view (a live lease of the pair).
    pub fn workers_of(&self, order: &Pubkey) -> Vec<Pubkey> {
        let mut out: Vec<Pubkey> = self
            .leased
            .iter()
            .filter(|(o, _)| o == order)
            .map(|(_, w)| *w)
            .collect();
        out.sort();
        out
    }

    /// One assignment's effect on the accounts: the pair leased, the GPUs counted on both sides.
    fn apply(&mut self, oi: usize, wi: usize, gpus: u16) {
        self.leased.insert((self.orders[oi].0, self.workers[wi].0));
        let order = &mut self.orders[oi].1;
        order.gpus_assigned = order.gpus_assigned.saturating_add(gpus);
        order.active_leases = order.active_leases.saturating_add(1);
        let worker = &mut self.workers[wi].1;
        worker.gpus_leased = worker.gpus_leased.saturating_add(gpus);
        worker.active_leases = worker.active_leases.saturating_add(1);
    }

    pub fn placeable_gpus(&self, w: &chain::Worker) -> u16 {
        let min = self.market.params.min_stake_per_gpu.max(1);
        let backed = u16::try_from(w.stake / min).unwrap_or(u16::MAX);
        w.free_gpus().min(backed.saturating_sub(w.gpus_leased))
    }

    fn above_breaker(&self, w: &chain::Worker) -> bool {
        matches!(
            breaker_cap(&self.market, w.hardware.gpu_class),
            Ok(Some(cap)) if w.price_per_gpu_second > cap
        )
    }

    /// Worker `i` as the scheduler sees it, or `None` when nothing can be placed on it (no GPU
    /// free and backed by stake, or a class the protocol does not name). A jailed worker, or one
    /// asking more than the circuit breaker allows, is kept with a status that takes nothing new,
    /// so explanations still count it.
    pub fn worker_spec(&self, i: usize, latency_us: u32) -> Option<WorkerSpec> {
        let (_, w) = self.workers.get(i)?;
        let class = GpuClass::from_code(w.hardware.gpu_class).ok()?;
        let region = Region::from_code(w.hardware.region).ok()?;
        let status = if w.is_jailed(self.now) {
            WorkerStatus::Jailed
        } else if self.above_breaker(w) {
            WorkerStatus::Draining
        } else {
            WorkerStatus::Idle
        };
        let gpus = match status {
            WorkerStatus::Idle => self.placeable_gpus(w),
            _ => w.hardware.gpu_count,
        };
        if gpus == 0 {
            return None;
        }
        Some(WorkerSpec {
            id: WorkerId(u32::try_from(i).ok()?),
            class,
            gpus,
            vram_mib: w.hardware.vram_mib,
            bandwidth_gbps: w.hardware.bandwidth_gbps,
            region,
            price: w.price_per_gpu_second,
            reliability_bp: reliability(&w.record),
            latency_us,
            status,
        })
    }

    /// Order `i` as the scheduler sees it (the GPUs it still needs), or `None` when it takes no
    /// new lease: its buyer asked to close it, it has all its GPUs, its escrow is empty, or its
    /// class has no name.
    pub fn order(&self, i: usize) -> Option<scheduler::Order> {
        let (_, o) = self.orders.get(i)?;
        let req = &o.terms.requirements;
        let needed = req.gpu_count.saturating_sub(o.gpus_assigned);
        if o.is_closing() || needed == 0 || o.escrow_remaining == 0 {
            return None;
        }
        Some(scheduler::Order {
            id: OrderId(i as u64),
            class: GpuClass::from_code(req.gpu_class).ok()?,
            gpus: u32::from(needed),
            min_vram_mib: req.min_vram_mib,
            min_bandwidth_gbps: req.min_bandwidth_gbps,
            regions: RegionSet(req.regions),
            max_price: o.terms.max_price_per_gpu_second,
            mode: match o.terms.mode {
                chain::OrderMode::Spot => OrderMode::Spot,
                chain::OrderMode::Reserved => OrderMode::Reserved,
            },
            arrived_at: u64::try_from(o.created_ts).unwrap_or(0),
        })
    }

    /// A scheduler holding this view's workers (with `latency_us` for each, by address) and
    /// pending orders.
    pub fn scheduler(
        &self,
        cfg: SchedulerConfig,
        latency_us: &BTreeMap<Pubkey, u32>,
    ) -> Result<Scheduler, SchedulerError> {
        let mut s = Scheduler::new(cfg)?;
        let specs = (0..self.workers.len())
            .filter_map(|i| {
                let latency = latency_us
                    .get(&self.workers[i].0)
                    .copied()
                    .unwrap_or(UNMEASURED_LATENCY_US);
                self.worker_spec(i, latency)
            })
            .collect();
        s.add_workers(specs)?;
        for i in 0..self.orders.len() {
            if let Some(order) = self.order(i) {
                s.submit_order(order)?;
            }
        }
        Ok(s)
    }

    /// Checks a placement with the program's own rules, assignment by assignment, applying each
    /// to this view so the next sees it (GPUs leased on the worker, GPUs assigned to the order).
    /// Returns what to send, or the first assignment the program would refuse; on a refusal the
    /// view keeps the assignments before it.
    pub fn propose(
        &mut self,
        placement: &Placement,
    ) -> Result<Vec<ChainAssignment>, ProposalError> {
        let oi = usize::try_from(placement.order.0)
            .ok()
            .filter(|&i| i < self.orders.len())
            .ok_or(ProposalError::UnknownOrder(placement.order))?;
        let mut out = Vec::with_capacity(placement.assignments.len());
        for a in &placement.assignments {
            let wi = usize::try_from(a.worker.0)
                .ok()
                .filter(|&i| i < self.workers.len())
                .ok_or(ProposalError::UnknownWorker(a.worker))?;
            let refused = |error| ProposalError::Refused {
                assignment: *a,
                error,
            };
            let (order_key, order) = &self.orders[oi];
            let (worker_key, worker) = &self.workers[wi];
            if self.leased.contains(&(*order_key, *worker_key)) {
                return Err(ProposalError::LeaseExists { assignment: *a });
            }
            if let Err(e) = check_assignable(&self.market, order, worker, a.gpus, self.now) {
                return Err(refused(program_error(e)));
            }
            if self.above_breaker(worker) {
                return Err(refused(GpumeshError::PriceAboveBreaker));
            }
            let (order_key, worker_key) = (*order_key, *worker_key);
            self.apply(oi, wi, a.gpus);
            out.push(ChainAssignment {
                order: order_key,
                worker: worker_key,
                gpus: a.gpus,
            });
        }
        Ok(out)
    }
}

fn program_error(err: anchor_lang::error::Error) -> GpumeshError {
    match &err {
        anchor_lang::error::Error::AnchorError(e) => {
            GpumeshError::from_code(e.error_code_number).unwrap_or(GpumeshError::MathOverflow)
        }
        anchor_lang::error::Error::ProgramError(_) => GpumeshError::MathOverflow,
    }
}
