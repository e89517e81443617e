//! The matching engine: decides which workers serve which order, keeps the placements (leases)
//! it made so it can re-place them when a worker fails, and says why an order or a worker is
//! left without a match. Pure and single-threaded: no chain, no I/O, no clock (callers pass
//! `now`), and deterministic — the same calls in the same order give the same results.
//!
//! See the crate README for the model, the score, fairness and the index design.

mod error;
mod explain;
mod index;
#[cfg(any(test, feature = "baseline"))]
mod naive;
mod ranked;
pub mod reliability;
pub mod score;
mod types;
#[cfg(any(test, feature = "baseline"))]
pub mod workload;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

pub use error::SchedulerError;
pub use explain::{Rejections, WorkerExplanation};
pub use reliability::{WorkerRecord, reliability};
pub use score::{SchedulerConfig, effective_tier, price_tier};
pub use types::{
    Assignment, GPU_CLASSES, GpuClass, Order, OrderId, OrderMode, Placement, REGIONS, Region,
    RegionSet, Worker, WorkerId, WorkerSpec, WorkerStatus,
};

use index::{Cluster, Index, MemberState};

/// A placed order and where it runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub order: Order,
    pub placement: Placement,
}

/// An order left pending, with the reasons counted over the workers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unplaced {
    pub order: OrderId,
    pub why: Rejections,
}

/// What a matching round did: placements in the order they were made (priority order), and
/// the orders still pending, also in priority order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoundOutcome {
    pub placements: Vec<Placement>,
    pub unplaced: Vec<Unplaced>,
}

/// A lease moved off failed workers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replacement {
    pub order: OrderId,
    /// The GPUs the order lost on failed workers (their leases close on chain).
    pub lost: Vec<Assignment>,
    /// Where the order runs now: surviving assignments first, then the new ones.
    pub placement: Placement,
}

/// What re-placing the leases of failed workers did. Orders in `not_replaced` went back to the
/// pending queue with their original arrival time, so aging keeps them near the front.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rescheduling {
    pub replaced: Vec<Replacement>,
    pub not_replaced: Vec<Unplaced>,
}

/// Which search a placement uses: the index, or the full-scan baseline.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Search {
    Index,
    #[cfg(any(test, feature = "baseline"))]
    Scan,
}

/// The scheduler's whole state: workers, the index over them, pending orders and leases.
#[derive(Clone)]
pub struct Scheduler {
    cfg: score::SchedulerConfig,
    /// Worker table by slot; slots are reused after removal.
    workers: Vec<Option<Worker>>,
    /// Lookup only, never iterated, so its order cannot leak into results.
    slots: HashMap<WorkerId, u32>,
    free_slots: Vec<u32>,
    index: Index,
    pending: BTreeMap<OrderId, Order>,
    leases: BTreeMap<OrderId, Lease>,
}

impl Scheduler {
    pub fn new(cfg: SchedulerConfig) -> Result<Self, SchedulerError> {
        cfg.validate()?;
        Ok(Self {
            cfg,
            workers: Vec::new(),
            slots: HashMap::new(),
            free_slots: Vec::new(),
            index: Index::new(),
            pending: BTreeMap::new(),
            leases: BTreeMap::new(),
        })
    }

    pub fn config(&self) -> &SchedulerConfig {
        &self.cfg
    }

    // ----- workers -------------------------------------------------------------------------

    /// A worker joins with all its GPUs free.
    pub fn add_worker(&mut self, spec: WorkerSpec) -> Result<(), SchedulerError> {
        self.check_new(&spec)?;
        let slot = self.install(spec);
        if let Some(Some(worker)) = self.workers.get(slot as usize) {
            self.index.insert(&self.cfg, worker, slot);
        }
        Ok(())
    }

    /// Many workers join at once, e.g. the fleet read from chain when the service starts: the
    /// same checks and the same state as [`Scheduler::add_worker`] for each in turn, but the
    /// index's ranked lists are built by one sort per list rather than one insertion per worker.
    /// Nothing is added unless every spec is valid and no id repeats.
    pub fn add_workers(&mut self, specs: Vec<WorkerSpec>) -> Result<(), SchedulerError> {
        let mut ids = HashSet::with_capacity(specs.len());
        for spec in &specs {
            self.check_new(spec)?;
            if !ids.insert(spec.id) {
                return Err(SchedulerError::DuplicateWorker(spec.id));
            }
        }
        let slots: Vec<u32> = specs.into_iter().map(|spec| self.install(spec)).collect();
        let joined = slots.iter().filter_map(|&slot| {
            let worker = self.workers.get(slot as usize)?.as_ref()?;
            Some((worker, slot))
        });
        self.index.insert_many(&self.cfg, joined);
        Ok(())
    }

    fn check_new(&self, spec: &WorkerSpec) -> Result<(), SchedulerError> {
        if spec.gpus == 0 {
            return Err(SchedulerError::ZeroGpuWorker(spec.id));
        }
        if spec.reliability_bp > 10_000 {
            return Err(SchedulerError::ReliabilityOutOfRange {
                score: spec.reliability_bp,
            });
        }
        if self.slots.contains_key(&spec.id) {
            return Err(SchedulerError::DuplicateWorker(spec.id));
        }
        Ok(())
    }

    /// Puts a checked newcomer in the worker table and the member columns (not yet in the
    /// ranked lists); returns its slot.
    fn install(&mut self, spec: WorkerSpec) -> u32 {
        let mut spec = spec;
        if spec.status == WorkerStatus::Busy {
            // Busy follows from leases; a newcomer has none.
            spec.status = WorkerStatus::Idle;
        }
        let worker = Worker {
            gpus_free: spec.gpus,
            spec,
            leases: Vec::new(),
        };
        let slot = match self.free_slots.pop() {
            Some(slot) => slot,
            None => {
                self.workers.push(None);
                (self.workers.len() - 1) as u32
            }
        };
        self.slots.insert(worker.spec.id, slot);
        self.index.add_member(&worker, slot);
        self.workers[slot as usize] = Some(worker);
        slot
    }

    /// A worker leaves for good. Refused while it serves leases: drain or fail it first.
    pub fn remove_worker(&mut self, id: WorkerId) -> Result<WorkerSpec, SchedulerError> {
        let slot = self.slot(id)?;
        let Some(worker) = self.workers[slot as usize].take() else {
            return Err(SchedulerError::UnknownWorker(id));
        };
        if !worker.leases.is_empty() {
            self.workers[slot as usize] = Some(worker);
            return Err(SchedulerError::WorkerHasLeases(id));
        }
        self.index.remove(&self.cfg, &worker, slot);
        self.index.remove_member(&worker, slot);
        self.slots.remove(&id);
        self.free_slots.push(slot);
        Ok(worker.spec)
    }

    pub fn set_price(&mut self, id: WorkerId, price: u64) -> Result<(), SchedulerError> {
        self.update_worker(id, |w| w.spec.price = price)
    }

    pub fn set_latency(&mut self, id: WorkerId, latency_us: u32) -> Result<(), SchedulerError> {
        self.update_worker(id, |w| w.spec.latency_us = latency_us)
    }

    pub fn set_reliability(&mut self, id: WorkerId, bp: u16) -> Result<(), SchedulerError> {
        if bp > 10_000 {
            return Err(SchedulerError::ReliabilityOutOfRange { score: bp });
        }
        self.update_worker(id, |w| w.spec.reliability_bp = bp)
    }

    /// Changes a worker's status. `Idle` and `Busy` both mean "available"; the scheduler
    /// keeps which of the two from the worker's leases. Marking a worker `Offline` or `Jailed`
    /// keeps its leases: call [`Scheduler::fail_workers`] to re-place them.
    pub fn set_status(&mut self, id: WorkerId, status: WorkerStatus) -> Result<(), SchedulerError> {
        self.update_worker(id, |w| {
            w.spec.status = match status {
                WorkerStatus::Idle | WorkerStatus::Busy if w.leases.is_empty() => {
                    WorkerStatus::Idle
                }
                WorkerStatus::Idle | WorkerStatus::Busy => WorkerStatus::Busy,
                other => other,
            }
        })
    }

    pub fn worker(&self, id: WorkerId) -> Option<&Worker> {
        let slot = *self.slots.get(&id)?;
        self.workers.get(slot as usize)?.as_ref()
    }

    pub fn worker_count(&self) -> usize {
        self.slots.len()
    }

    fn slot(&self, id: WorkerId) -> Result<u32, SchedulerError> {
        self.slots
            .get(&id)
            .copied()
            .ok_or(SchedulerError::UnknownWorker(id))
    }

    /// Takes the worker out of the index, changes it, and puts it back: O(log n).
    fn update_worker(
        &mut self,
        id: WorkerId,
        change: impl FnOnce(&mut Worker),
    ) -> Result<(), SchedulerError> {
        let slot = self.slot(id)?;
        self.update_slot(slot, change);
        Ok(())
    }

    fn update_slot(&mut self, slot: u32, change: impl FnOnce(&mut Worker)) {
        let Some(Some(worker)) = self.workers.get_mut(slot as usize) else {
            return;
        };
        let before = MemberState::of(worker);
        self.index.remove(&self.cfg, worker, slot);
        change(worker);
        self.index.insert(&self.cfg, worker, slot);
        self.index.update_member(&before, worker, slot);
    }

    // ----- orders --------------------------------------------------------------------------

    /// An order arrives and waits for the next round (or an explicit [`Scheduler::place_order`]).
    pub fn submit_order(&mut self, order: Order) -> Result<(), SchedulerError> {
        if order.gpus == 0 {
            return Err(SchedulerError::ZeroGpuOrder(order.id));
        }
        if order.regions.is_empty() {
            return Err(SchedulerError::NoRegionAllowed(order.id));
        }
        if self.pending.contains_key(&order.id) || self.leases.contains_key(&order.id) {
            return Err(SchedulerError::DuplicateOrder(order.id));
        }
        self.pending.insert(order.id, order);
        Ok(())
    }

    /// Cancels a pending order, or ends a placed one (cancelled or completed) and frees its
    /// GPUs; returns the placement it had, if any.
    pub fn cancel_order(&mut self, id: OrderId) -> Result<Option<Placement>, SchedulerError> {
        if self.pending.remove(&id).is_some() {
            return Ok(None);
        }
        let lease = self
            .leases
            .remove(&id)
            .ok_or(SchedulerError::UnknownOrder(id))?;
        for a in &lease.placement.assignments {
            self.give_back(id, a);
        }
        Ok(Some(lease.placement))
    }

    /// Pending orders by id.
    pub fn pending_orders(&self) -> impl Iterator<Item = &Order> {
        self.pending.values()
    }

    pub fn lease(&self, order: OrderId) -> Option<&Lease> {
        self.leases.get(&order)
    }

    /// Leases by order id.
    pub fn leases(&self) -> impl Iterator<Item = &Lease> {
        self.leases.values()
    }

    // ----- placement -----------------------------------------------------------------------

    /// Places one pending order now, through the index, ahead of the round (e.g. on arrival).
    /// `Ok(None)` means it stays pending: ask [`Scheduler::explain_order`] why.
    pub fn place_order(&mut self, id: OrderId) -> Result<Option<Placement>, SchedulerError> {
        self.place_pending(id, Search::Index)
    }

    #[cfg(any(test, feature = "baseline"))]
    /// The same as [`Scheduler::place_order`] by scanning every worker: the benchmark's baseline.
    pub fn place_order_naive(&mut self, id: OrderId) -> Result<Option<Placement>, SchedulerError> {
        self.place_pending(id, Search::Scan)
    }

    /// Where [`Scheduler::place_order`] would put a pending order, without placing it.
    pub fn preview_order(&self, id: OrderId) -> Result<Option<Placement>, SchedulerError> {
        self.preview(id, Search::Index)
    }

    #[cfg(any(test, feature = "baseline"))]
    /// Where the full-scan baseline would put a pending order, without placing it.
    pub fn preview_order_naive(&self, id: OrderId) -> Result<Option<Placement>, SchedulerError> {
        self.preview(id, Search::Scan)
    }

    fn preview(&self, id: OrderId, search: Search) -> Result<Option<Placement>, SchedulerError> {
        let order = self.pending_order(id)?;
        Ok(self
            .search(search, order, order.gpus, order.regions, &[])
            .map(|c| Placement {
                order: id,
                region: c.region,
                assignments: c.picks.iter().map(|p| self.assignment(p)).collect(),
            }))
    }

    fn pending_order(&self, id: OrderId) -> Result<&Order, SchedulerError> {
        match self.pending.get(&id) {
            Some(order) => Ok(order),
            None if self.leases.contains_key(&id) => Err(SchedulerError::AlreadyPlaced(id)),
            None => Err(SchedulerError::UnknownOrder(id)),
        }
    }

    fn search(
        &self,
        search: Search,
        order: &Order,
        gpus: u32,
        regions: RegionSet,
        exclude: &[u32],
    ) -> Option<Cluster> {
        match search {
            Search::Index => self.index.best_cluster(order, gpus, regions, exclude),
            #[cfg(any(test, feature = "baseline"))]
            Search::Scan => {
                naive::best_cluster(&self.cfg, &self.workers, order, gpus, regions, exclude)
            }
        }
    }

    fn place_pending(
        &mut self,
        id: OrderId,
        search: Search,
    ) -> Result<Option<Placement>, SchedulerError> {
        let order = self.pending_order(id)?;
        let Some(cluster) = self.search(search, order, order.gpus, order.regions, &[]) else {
            return Ok(None);
        };
        let Some(order) = self.pending.remove(&id) else {
            return Err(SchedulerError::UnknownOrder(id));
        };
        let assignments = self.take(id, &cluster);
        let placement = Placement {
            order: id,
            region: cluster.region,
            assignments,
        };
        self.leases.insert(
            id,
            Lease {
                order,
                placement: placement.clone(),
            },
        );
        Ok(Some(placement))
    }

    fn assignment(&self, p: &score::Pick) -> Assignment {
        let worker = self.workers[p.slot as usize]
            .as_ref()
            .map_or(WorkerId(u32::MAX), |w| w.spec.id);
        Assignment {
            worker,
            gpus: p.gpus,
            price: p.price,
        }
    }

    /// Books a cluster's GPUs for an order on its workers.
    fn take(&mut self, order: OrderId, cluster: &Cluster) -> Vec<Assignment> {
        let mut out = Vec::with_capacity(cluster.picks.len());
        for p in &cluster.picks {
            out.push(self.assignment(p));
            self.update_slot(p.slot, |w| {
                w.gpus_free -= p.gpus;
                if let Err(at) = w.leases.binary_search(&order) {
                    w.leases.insert(at, order);
                }
                if w.spec.status == WorkerStatus::Idle {
                    w.spec.status = WorkerStatus::Busy;
                }
            });
        }
        out
    }

    /// Returns an assignment's GPUs to its worker.
    fn give_back(&mut self, order: OrderId, a: &Assignment) {
        let Some(&slot) = self.slots.get(&a.worker) else {
            return;
        };
        self.update_slot(slot, |w| {
            w.gpus_free += a.gpus;
            if let Ok(at) = w.leases.binary_search(&order) {
                w.leases.remove(at);
            }
            if w.leases.is_empty() && w.spec.status == WorkerStatus::Busy {
                w.spec.status = WorkerStatus::Idle;
            }
        });
    }

    /// Places all pending orders in priority order (see [`score::effective_tier`]): higher
    /// effective price tier first, then older, then lower id. Orders that do not fit stay
    /// pending and come back with per-reason counts taken after the round's placements.
    pub fn match_round(&mut self, now: u64) -> RoundOutcome {
        self.round(now, Search::Index)
    }

    #[cfg(any(test, feature = "baseline"))]
    /// The same round through the full-scan baseline (tests and benchmarks only).
    pub fn match_round_naive(&mut self, now: u64) -> RoundOutcome {
        self.round(now, Search::Scan)
    }

    fn round(&mut self, now: u64, search: Search) -> RoundOutcome {
        let mut queue: Vec<_> = self
            .pending
            .values()
            .map(|o| score::priority(&self.cfg, o, now))
            .collect();
        queue.sort_unstable();
        let mut outcome = RoundOutcome::default();
        let mut left = Vec::new();
        for (_, _, id) in queue {
            match self.place_pending(id, search) {
                Ok(Some(placement)) => outcome.placements.push(placement),
                Ok(None) => left.push(id),
                Err(_) => {}
            }
        }
        outcome.unplaced = self.unplaced(left, search);
        outcome
    }

    /// Pending orders with their reasons, counted now: through the index with the work shared
    /// between orders of the same requirements, or (baseline) by scanning every worker for each.
    fn unplaced(&self, ids: Vec<OrderId>, search: Search) -> Vec<Unplaced> {
        let orders: Vec<&Order> = ids.iter().filter_map(|id| self.pending.get(id)).collect();
        let why = match search {
            Search::Index => explain::orders_by_index(&self.index, &orders),
            #[cfg(any(test, feature = "baseline"))]
            Search::Scan => orders
                .iter()
                .map(|o| explain::order_by_scan(&self.workers, o))
                .collect(),
        };
        orders
            .iter()
            .zip(why)
            .map(|(o, why)| Unplaced { order: o.id, why })
            .collect()
    }

    // ----- rescheduling --------------------------------------------------------------------

    /// Marks workers offline and re-places every lease that used them, before any new order:
    /// first the lost GPUs alone in the lease's region (its surviving workers keep running),
    /// then, failing that, the whole order anywhere it allows. Leases are handled in priority
    /// order at `now`. Orders that fit nowhere return to the pending queue and are reported
    /// with reasons, counted once every lease has been handled (as a round counts them after
    /// its placements). All ids are checked before anything changes.
    pub fn fail_workers(
        &mut self,
        ids: &[WorkerId],
        now: u64,
    ) -> Result<Rescheduling, SchedulerError> {
        let slots = ids
            .iter()
            .map(|&id| self.slot(id))
            .collect::<Result<BTreeSet<u32>, _>>()?;
        let failed: BTreeSet<WorkerId> = ids.iter().copied().collect();
        let mut affected = BTreeSet::new();
        for &slot in &slots {
            self.update_slot(slot, |w| {
                w.spec.status = WorkerStatus::Offline;
                affected.extend(w.leases.iter().copied());
            });
        }
        let mut queue: Vec<_> = affected
            .iter()
            .filter_map(|id| self.leases.get(id))
            .map(|l| score::priority(&self.cfg, &l.order, now))
            .collect();
        queue.sort_unstable();

        let mut out = Rescheduling::default();
        let mut not_replaced = Vec::new();
        for (_, _, id) in queue {
            let Some(lease) = self.leases.remove(&id) else {
                continue;
            };
            let (lost, kept): (Vec<Assignment>, Vec<Assignment>) = lease
                .placement
                .assignments
                .iter()
                .partition(|a| failed.contains(&a.worker));
            for a in &lost {
                self.give_back(id, a);
            }
            let order = lease.order;
            let missing: u32 = lost.iter().map(|a| u32::from(a.gpus)).sum();
            let kept_slots: Vec<u32> = kept
                .iter()
                .filter_map(|a| self.slots.get(&a.worker).copied())
                .collect();
            let region = lease.placement.region;
            let placement = if let Some(cluster) =
                self.index
                    .best_cluster(&order, missing, RegionSet::of(&[region]), &kept_slots)
            {
                let mut assignments = kept;
                assignments.extend(self.take(id, &cluster));
                Some(Placement {
                    order: id,
                    region,
                    assignments,
                })
            } else {
                for a in &kept {
                    self.give_back(id, a);
                }
                self.index
                    .best_cluster(&order, order.gpus, order.regions, &[])
                    .map(|cluster| Placement {
                        order: id,
                        region: cluster.region,
                        assignments: self.take(id, &cluster),
                    })
            };
            match placement {
                Some(placement) => {
                    out.replaced.push(Replacement {
                        order: id,
                        lost,
                        placement: placement.clone(),
                    });
                    self.leases.insert(id, Lease { order, placement });
                }
                None => {
                    not_replaced.push(id);
                    self.pending.insert(id, order);
                }
            }
        }
        out.not_replaced = self.unplaced(not_replaced, Search::Index);
        Ok(out)
    }

    // ----- explanations --------------------------------------------------------------------

    /// Why a pending order is not placed now: every worker counted under the first check it
    /// fails. From the index, on demand: class and region from counters, the rest by one
    /// vectorized pass over the member columns of each bucket the order may use, so the cost
    /// grows with the workers of the order's class in its regions, not with the fleet (the
    /// benchmark reports it at 1M workers). Takes `&self` and changes nothing, so a service can
    /// answer it from a shared reference (e.g. under a read lock) between rounds.
    pub fn explain_order(&self, id: OrderId) -> Result<Rejections, SchedulerError> {
        let order = self.pending_order(id)?;
        Ok(explain::order_by_index(&self.index, order))
    }

    /// [`Scheduler::explain_order`] for many pending orders at once, in the order given, with the
    /// work shared: orders with the same requirements share one explanation, and each bucket is
    /// read once per distinct (VRAM, bandwidth) threshold for all prices asked of it. This is what
    /// rounds attach to the orders they leave pending. Fails on the first id that is not pending.
    pub fn explain_orders(&self, ids: &[OrderId]) -> Result<Vec<Rejections>, SchedulerError> {
        let orders = ids
            .iter()
            .map(|&id| self.pending_order(id))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(explain::orders_by_index(&self.index, &orders))
    }

    #[cfg(any(test, feature = "baseline"))]
    /// The same counts as [`Scheduler::explain_order`] by scanning every worker: the reference
    /// the index is tested against, and the benchmark's baseline.
    pub fn explain_order_naive(&self, id: OrderId) -> Result<Rejections, SchedulerError> {
        let order = self.pending_order(id)?;
        Ok(explain::order_by_scan(&self.workers, order))
    }

    /// Why no pending order uses a worker: every pending order counted under the first check
    /// it fails for this worker. A scan of the pending orders.
    pub fn explain_worker(&self, id: WorkerId) -> Result<WorkerExplanation, SchedulerError> {
        let worker = self.worker(id).ok_or(SchedulerError::UnknownWorker(id))?;
        Ok(explain::worker_by_scan(worker, self.pending.values()))
    }
}

#[cfg(test)]
mod tests {
    use super::workload::Rng;
    use super::*;

    /// A dense market: two classes in three regions, so each free-count group holds hundreds of
    /// workers and the ranked lists split into blocks and merge again as GPUs come and go.
    fn dense(seed: u64, workers: u32, orders: u64) -> (Vec<WorkerSpec>, Vec<Order>) {
        let mut rng = Rng::new(seed);
        let workers = (0..workers)
            .map(|id| WorkerSpec {
                id: WorkerId(id),
                class: GpuClass::from_code(rng.below(2) as u8).expect("class < 16"),
                gpus: [1, 2, 4, 8][rng.below(4) as usize],
                vram_mib: [24_576, 49_152, 81_920][rng.below(3) as usize],
                bandwidth_gbps: 800 + rng.below(400) as u32,
                region: Region::from_code(rng.below(3) as u8).expect("region < 64"),
                price: 50 + rng.below(100),
                reliability_bp: 4_000 + rng.below(6_001) as u16,
                latency_us: rng.below(60_000) as u32,
                status: match rng.below(20) {
                    0 => WorkerStatus::Offline,
                    1 => WorkerStatus::Draining,
                    _ => WorkerStatus::Idle,
                },
            })
            .collect();
        let orders = (0..orders)
            .map(|id| Order {
                id: OrderId(id),
                class: GpuClass::from_code(rng.below(2) as u8).expect("class < 16"),
                gpus: [1, 1, 1, 2, 8, 16, 64][rng.below(7) as usize],
                min_vram_mib: [0, 40_000, 81_920][rng.below(3) as usize],
                min_bandwidth_gbps: 700 + rng.below(500) as u32,
                regions: RegionSet(1 + rng.below(7)),
                max_price: 40 + rng.below(120),
                mode: if rng.chance(60) {
                    OrderMode::Spot
                } else {
                    OrderMode::Reserved
                },
                arrived_at: rng.below(1_000),
            })
            .collect();
        (workers, orders)
    }

    fn build(workers: &[WorkerSpec], orders: &[Order]) -> Scheduler {
        let mut s = Scheduler::new(SchedulerConfig::default()).expect("default config");
        for w in workers {
            s.add_worker(w.clone()).expect("valid worker");
        }
        for o in orders {
            s.submit_order(o.clone()).expect("valid order");
        }
        s
    }

    #[test]
    fn adding_workers_at_once_equals_adding_them_one_by_one() {
        let (workers, orders) = dense(7, 4_000, 800);
        let mut one_by_one = build(&workers, &orders);
        let mut at_once = Scheduler::new(SchedulerConfig::default()).expect("default config");
        // Half first, so the second batch extends lists that already exist.
        let (first, rest) = workers.split_at(1_500);
        at_once.add_workers(first.to_vec()).expect("valid workers");
        at_once.add_workers(rest.to_vec()).expect("valid workers");
        for o in &orders {
            at_once.submit_order(o.clone()).expect("valid order");
        }
        assert_eq!(at_once.index.check(), Ok(()));
        assert_eq!(at_once.match_round(1_000), one_by_one.match_round(1_000));

        // A bad spec or a repeated id refuses the whole batch.
        let mut s = Scheduler::new(SchedulerConfig::default()).expect("default config");
        let mut repeated = workers[..3].to_vec();
        repeated.push(workers[1].clone());
        assert_eq!(
            s.add_workers(repeated),
            Err(SchedulerError::DuplicateWorker(workers[1].id))
        );
        let mut zero = workers[..3].to_vec();
        zero[2].gpus = 0;
        assert_eq!(
            s.add_workers(zero),
            Err(SchedulerError::ZeroGpuWorker(workers[2].id))
        );
        assert_eq!(s.worker_count(), 0);
        s.add_workers(workers[..3].to_vec()).expect("valid workers");
        assert_eq!(
            s.add_workers(workers[2..4].to_vec()),
            Err(SchedulerError::DuplicateWorker(workers[2].id))
        );
        assert_eq!(s.worker_count(), 3);
    }

    #[test]
    fn dense_markets_place_and_explain_what_the_full_scan_does() {
        for seed in 0..3 {
            let (workers, orders) = dense(seed, 8_000, 2_000);
            let mut indexed = build(&workers, &orders);
            let mut scanned = indexed.clone();
            assert_eq!(
                indexed.match_round(1_000),
                scanned.match_round_naive(1_000),
                "seed {seed}"
            );
            assert_eq!(indexed.index.check(), Ok(()));
            // Fail a slice of the fleet, release some leases, and compare again.
            let failed: Vec<WorkerId> = (0..8_000).step_by(7).map(WorkerId).collect();
            let r = indexed.fail_workers(&failed, 1_001).expect("known workers");
            for u in &r.not_replaced {
                assert_eq!(indexed.explain_order_naive(u.order), Ok(u.why));
            }
            for id in (0..2_000).step_by(3).map(OrderId) {
                let _ = indexed.cancel_order(id);
            }
            for w in (0..8_000).step_by(11).map(WorkerId) {
                let _ = indexed.set_price(w, 60);
                let _ = indexed.set_status(w, WorkerStatus::Idle);
            }
            assert_eq!(indexed.index.check(), Ok(()));
            let mut scanned = indexed.clone();
            assert_eq!(
                indexed.match_round(2_000),
                scanned.match_round_naive(2_000),
                "seed {seed} after changes"
            );
            assert_eq!(indexed.index.check(), Ok(()));
        }
    }
}
