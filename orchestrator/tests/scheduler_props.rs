//! Property tests over random small markets: hard constraints always hold, capacity is
//! conserved, results are deterministic and independent of insertion order, the index chooses
//! exactly what a full scan would, and an order that fits alone at the head of the queue is placed.

mod common;

use std::collections::BTreeMap;

use common::{class, region};
use gpumesh_orchestrator::scheduler::{
    Order, OrderId, OrderMode, RegionSet, RoundOutcome, Scheduler, SchedulerConfig, WorkerId,
    WorkerSpec, WorkerStatus, effective_tier,
};
use proptest::prelude::*;

const NOW: u64 = 100;

fn status() -> impl Strategy<Value = WorkerStatus> {
    prop_oneof![
        6 => Just(WorkerStatus::Idle),
        1 => Just(WorkerStatus::Busy),
        1 => Just(WorkerStatus::Draining),
        1 => Just(WorkerStatus::Offline),
        1 => Just(WorkerStatus::Jailed),
    ]
}

fn worker_spec(id: u32) -> impl Strategy<Value = WorkerSpec> {
    (
        0u8..3,
        prop::sample::select(vec![1u16, 2, 4, 8]),
        prop::sample::select(vec![16_384u32, 24_576, 81_920]),
        500u32..1_500,
        0u8..4,
        // Few distinct asks and scores, so ties are common and the later score keys matter.
        prop::sample::select(vec![80u64, 100, 100, 120, 140]),
        prop::sample::select(vec![5_000u16, 9_000, 9_000, 9_500]),
        0u32..20_000,
        status(),
    )
        .prop_map(
            move |(c, gpus, vram, bw, r, price, rel, lat, status)| WorkerSpec {
                id: WorkerId(id),
                class: class(c),
                gpus,
                vram_mib: vram,
                bandwidth_gbps: bw,
                region: region(r),
                price,
                reliability_bp: rel,
                latency_us: lat,
                status,
            },
        )
}

fn order_spec(id: u64) -> impl Strategy<Value = Order> {
    (
        0u8..3,
        prop::sample::select(vec![1u32, 1, 2, 3, 8, 16]),
        prop::sample::select(vec![0u32, 16_384, 24_576, 81_920]),
        0u32..1_200,
        1u64..16,
        30u64..300,
        any::<bool>(),
        0u64..NOW,
    )
        .prop_map(
            move |(c, gpus, vram, bw, regions, max_price, spot, arrived_at)| Order {
                id: OrderId(id),
                class: class(c),
                gpus,
                min_vram_mib: vram,
                min_bandwidth_gbps: bw,
                regions: RegionSet(regions),
                max_price,
                mode: if spot {
                    OrderMode::Spot
                } else {
                    OrderMode::Reserved
                },
                arrived_at,
            },
        )
}

fn market() -> impl Strategy<Value = (Vec<WorkerSpec>, Vec<Order>)> {
    (0usize..40, 0usize..16).prop_flat_map(|(nw, no)| {
        (
            (0..nw as u32).map(worker_spec).collect::<Vec<_>>(),
            (0..no as u64).map(order_spec).collect::<Vec<_>>(),
        )
    })
}

fn build(workers: &[WorkerSpec], orders: &[Order]) -> Scheduler {
    common::scheduler(workers, orders)
}

/// Would the order fit alone on the untouched inventory: some allowed region whose workers
/// passing every hard constraint hold enough free GPUs together?
fn fits_alone(workers: &[WorkerSpec], o: &Order) -> bool {
    let mut per_region = BTreeMap::new();
    for w in workers.iter().filter(|w| satisfies(w, o)) {
        *per_region.entry(w.region).or_insert(0u32) += u32::from(w.gpus);
    }
    per_region.values().any(|&g| g >= o.gpus)
}

fn satisfies(w: &WorkerSpec, o: &Order) -> bool {
    w.class == o.class
        && o.regions.contains(w.region)
        && w.vram_mib >= o.min_vram_mib
        && w.bandwidth_gbps >= o.min_bandwidth_gbps
        && w.price <= o.max_price
        && w.status.is_placeable()
}

/// Hard constraints of every lease, and free + leased = total on every worker.
fn check_state(s: &Scheduler, workers: &[WorkerSpec]) -> Result<(), TestCaseError> {
    let mut used: BTreeMap<WorkerId, u32> = BTreeMap::new();
    for lease in s.leases() {
        let o = &lease.order;
        let p = &lease.placement;
        prop_assert_eq!(p.gpus(), o.gpus, "placement sums to the order's count");
        let mut seen = std::collections::BTreeSet::new();
        for a in &p.assignments {
            prop_assert!(a.gpus > 0);
            prop_assert!(seen.insert(a.worker), "a worker appears once per placement");
            let w = s
                .worker(a.worker)
                .ok_or(TestCaseError::fail("leased worker is known"))?;
            let spec = &w.spec;
            prop_assert_eq!(spec.region, p.region, "cluster inside one region");
            prop_assert!(o.regions.contains(spec.region));
            prop_assert_eq!(spec.class, o.class);
            prop_assert!(spec.vram_mib >= o.min_vram_mib);
            prop_assert!(spec.bandwidth_gbps >= o.min_bandwidth_gbps);
            prop_assert!(a.price <= o.max_price);
            *used.entry(a.worker).or_default() += u32::from(a.gpus);
        }
    }
    for spec in workers {
        let w = s
            .worker(spec.id)
            .ok_or(TestCaseError::fail("worker is known"))?;
        let leased = used.get(&spec.id).copied().unwrap_or(0);
        prop_assert_eq!(
            u32::from(w.gpus_free) + leased,
            u32::from(spec.gpus),
            "capacity conserved"
        );
        prop_assert_eq!(w.leases.is_empty(), leased == 0);
    }
    Ok(())
}

fn priority_head(orders: &[Order]) -> Option<&Order> {
    let cfg = SchedulerConfig::default();
    orders.iter().min_by_key(|o| {
        (
            std::cmp::Reverse(effective_tier(&cfg, o, NOW)),
            o.arrived_at,
            o.id,
        )
    })
}

/// A change to a market between a round and the explanations.
#[derive(Clone, Debug)]
enum Change {
    Price(u32, u64),
    Status(u32, WorkerStatus),
    Remove(u32),
    Cancel(u64),
    Place(u64),
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        (
            0u32..40,
            prop::sample::select(vec![60u64, 80, 100, 120, 140, 400])
        )
            .prop_map(|(w, p)| Change::Price(w, p)),
        (0u32..40, status()).prop_map(|(w, s)| Change::Status(w, s)),
        (0u32..40).prop_map(Change::Remove),
        (0u64..64).prop_map(Change::Cancel),
        (0u64..64).prop_map(Change::Place),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Explanations shared between orders (what rounds attach, `explain_orders`) and computed
    /// on demand (`explain_order`) equal the full scan of every worker, on random fleets after
    /// a round and random changes; copies of orders share requirement sets.
    #[test]
    fn shared_and_on_demand_explanations_equal_the_full_scan(
        (workers, orders) in market(),
        copies in 0u64..3,
        changes in prop::collection::vec(change(), 0..24),
    ) {
        let mut all = orders.clone();
        for k in 1..=copies {
            all.extend(orders.iter().map(|o| Order { id: OrderId(o.id.0 + 16 * k), ..o.clone() }));
        }
        let mut s = build(&workers, &all);
        let out = s.match_round(NOW);
        for u in &out.unplaced {
            let scan = s.explain_order_naive(u.order).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(u.why, scan);
        }
        for c in changes {
            // Refusals (unknown ids, workers with leases, placed orders) are part of the mix.
            let _ = match c {
                Change::Price(w, p) => s.set_price(WorkerId(w), p).map(|_| ()),
                Change::Status(w, st) => s.set_status(WorkerId(w), st),
                Change::Remove(w) => s.remove_worker(WorkerId(w)).map(|_| ()),
                Change::Cancel(o) => s.cancel_order(OrderId(o)).map(|_| ()),
                Change::Place(o) => s.place_order(OrderId(o)).map(|_| ()),
            };
        }
        let mut pending: Vec<OrderId> = s.pending_orders().map(|o| o.id).collect();
        // Any order of ids, repeats included.
        pending.reverse();
        if let Some(&first) = pending.first() {
            pending.push(first);
        }
        let shared = s.explain_orders(&pending).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(shared.len(), pending.len());
        for (&id, shared) in pending.iter().zip(shared) {
            let scan = s.explain_order_naive(id).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let on_demand = s.explain_order(id).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(scan, shared, "shared explanation of {:?}", id);
            prop_assert_eq!(scan, on_demand, "on-demand explanation of {:?}", id);
        }
        // A round after the changes attaches the same counts the full scan finds.
        let again = s.match_round(NOW + 1);
        for u in &again.unplaced {
            let scan = s.explain_order_naive(u.order).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(u.why, scan);
        }
    }

    #[test]
    fn rounds_keep_hard_constraints_and_conserve_capacity((workers, orders) in market()) {
        let mut s = build(&workers, &orders);
        let out = s.match_round(NOW);
        prop_assert_eq!(out.placements.len() + out.unplaced.len(), orders.len());
        check_state(&s, &workers)?;
        // Placed workers were placeable: none draining, offline or jailed at the start.
        for p in &out.placements {
            for a in &p.assignments {
                let spec = workers.iter().find(|w| w.id == a.worker)
                    .ok_or(TestCaseError::fail("known"))?;
                prop_assert!(spec.status.is_placeable());
            }
        }
        // A second round places nothing new on an unchanged market.
        let again = s.match_round(NOW);
        prop_assert!(again.placements.is_empty());
    }

    #[test]
    fn same_input_same_output_in_any_insertion_order((workers, orders) in market()) {
        let a = build(&workers, &orders).match_round(NOW);
        let b = build(&workers, &orders).match_round(NOW);
        let mut rw = workers.clone();
        rw.reverse();
        let mut ro = orders.clone();
        ro.reverse();
        let c = build(&rw, &ro).match_round(NOW);
        prop_assert_eq!(&a, &b);
        prop_assert_eq!(&a, &c);
    }

    #[test]
    fn index_chooses_what_a_full_scan_would((workers, orders) in market()) {
        let indexed: RoundOutcome = build(&workers, &orders).match_round(NOW);
        let scanned = build(&workers, &orders).match_round_naive(NOW);
        prop_assert_eq!(indexed, scanned);
    }

    #[test]
    fn an_order_that_fits_alone_at_the_head_is_placed((workers, orders) in market()) {
        // Each order alone: placed exactly when a feasible set exists.
        for o in &orders {
            let mut s = build(&workers, std::slice::from_ref(o));
            let placed = s.place_order(o.id).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(placed.is_some(), fits_alone(&workers, o), "order {:?}", o.id);
        }
        // In a round, nothing competes with the highest-priority order.
        if let Some(head) = priority_head(&orders) {
            let mut s = build(&workers, &orders);
            let out = s.match_round(NOW);
            let placed = out.placements.iter().any(|p| p.order == head.id);
            prop_assert_eq!(placed, fits_alone(&workers, head));
        }
    }

    #[test]
    fn explanations_agree_and_account_for_every_worker((workers, orders) in market()) {
        let mut s = build(&workers, &orders);
        let out = s.match_round(NOW);
        for u in &out.unplaced {
            let scan = s.explain_order_naive(u.order).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(scan, u.why);
            let on_demand = s.explain_order(u.order).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(scan, on_demand);
            let w = u.why;
            let total = w.class + w.region + w.status + w.vram + w.bandwidth + w.price
                + w.capacity + w.eligible;
            prop_assert_eq!(total as usize, workers.len());
            let o = orders.iter().find(|o| o.id == u.order).ok_or(TestCaseError::fail("known"))?;
            // Greedy clusters take every eligible GPU if needed, so an unplaced order really
            // lacks GPUs in every region.
            prop_assert!(w.best_region_gpus < o.gpus);
        }
        for spec in &workers {
            let e = s.explain_worker(spec.id).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let total = e.status + e.capacity + e.class + e.region + e.vram + e.bandwidth
                + e.price + e.fits;
            prop_assert_eq!(total as usize, out.unplaced.len());
        }
    }

    #[test]
    fn failing_workers_keeps_every_invariant(
        (workers, orders) in market(),
        fail_mask in any::<u64>(),
    ) {
        let mut s = build(&workers, &orders);
        s.match_round(NOW);
        let failed: Vec<WorkerId> = workers
            .iter()
            .filter(|w| fail_mask & (1 << (w.id.0 % 64)) != 0)
            .map(|w| w.id)
            .collect();
        let leased_before: Vec<OrderId> = s.leases().map(|l| l.order.id).collect();
        let r = s.fail_workers(&failed, NOW).map_err(|e| TestCaseError::fail(e.to_string()))?;
        check_state(&s, &workers)?;
        for rep in &r.replaced {
            for a in &rep.placement.assignments {
                prop_assert!(!failed.contains(&a.worker), "re-placed on a failed worker");
            }
        }
        for u in &r.not_replaced {
            prop_assert!(s.pending_orders().any(|o| o.id == u.order));
        }
        // The index's explanation records stay in step with the workers through failures.
        let pending: Vec<OrderId> = s.pending_orders().map(|o| o.id).collect();
        let shared = s.explain_orders(&pending).map_err(|e| TestCaseError::fail(e.to_string()))?;
        for (&id, shared) in pending.iter().zip(shared) {
            let scan = s.explain_order_naive(id).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let indexed = s.explain_order(id).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(scan, indexed);
            prop_assert_eq!(scan, shared);
        }
        // Every order that was leased is still leased or back in the queue.
        for id in leased_before {
            prop_assert!(s.lease(id).is_some() || s.pending_orders().any(|o| o.id == id));
        }
        // No lease uses a failed worker any more.
        for l in s.leases() {
            for a in &l.placement.assignments {
                prop_assert!(!failed.contains(&a.worker));
            }
        }
    }
}
