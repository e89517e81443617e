//! Scheduler behaviour through its public API: the score, clusters, fairness and aging,
//! rescheduling, explanations, incremental changes and input errors.

mod common;

use common::*;
use gpumesh_orchestrator::scheduler::{
    GpuClass, OrderId, OrderMode, Region, RegionSet, Scheduler, SchedulerConfig, SchedulerError,
    WorkerId, WorkerStatus, effective_tier, price_tier,
};

// ----- score ---------------------------------------------------------------------------------

#[test]
fn spot_takes_the_cheapest_ask_then_the_lowest_latency() {
    let mut cheap_far = worker(1, 1, 0, 90);
    cheap_far.latency_us = 70_000;
    let dear_near = worker(2, 1, 0, 100);
    let mut s = scheduler(&[cheap_far, dear_near], &[order(1, 1, &[0], 200)]);
    s.match_round(0);
    assert_eq!(picked(&s, 1), vec![(1, 1)]);

    let mut far = worker(1, 1, 0, 100);
    far.latency_us = 70_000;
    let near = worker(2, 1, 0, 100);
    let mut s = scheduler(&[far, near], &[order(1, 1, &[0], 200)]);
    s.match_round(0);
    assert_eq!(picked(&s, 1), vec![(2, 1)]);
}

#[test]
fn reserved_takes_the_most_reliable_worker_even_when_dearer() {
    let mut shaky = worker(1, 1, 0, 50);
    shaky.reliability_bp = 6_000;
    let steady = worker(2, 1, 0, 100);
    let mut o = order(1, 1, &[0], 200);
    o.mode = OrderMode::Reserved;
    let mut s = scheduler(&[shaky.clone(), steady.clone()], &[o]);
    s.match_round(0);
    assert_eq!(picked(&s, 1), vec![(2, 1)]);
    // The same market for a spot order goes to the cheaper one.
    let mut s = scheduler(&[shaky, steady], &[order(1, 1, &[0], 200)]);
    s.match_round(0);
    assert_eq!(picked(&s, 1), vec![(1, 1)]);
}

#[test]
fn latency_within_one_band_counts_as_equal_so_best_fit_decides() {
    let mut big = worker(1, 8, 0, 100);
    big.latency_us = 10_100;
    let mut small = worker(2, 1, 0, 100);
    small.latency_us = 10_900;
    let mut s = scheduler(&[big, small], &[order(1, 1, &[0], 200)]);
    s.match_round(0);
    // Same price, same 5 ms band: the 1-GPU machine, leaving the 8-GPU one whole.
    assert_eq!(picked(&s, 1), vec![(2, 1)]);
}

#[test]
fn best_fit_keeps_large_machines_whole_for_large_orders() {
    let workers = [
        worker(1, 8, 0, 100),
        worker(2, 2, 0, 100),
        worker(3, 4, 0, 100),
    ];
    let mut s = scheduler(&workers, &[order(1, 2, &[0], 200), order(2, 8, &[0], 200)]);
    let out = s.match_round(0);
    assert_eq!(out.placements.len(), 2);
    assert_eq!(picked(&s, 1), vec![(2, 2)]);
    assert_eq!(picked(&s, 2), vec![(1, 8)]);
}

// ----- clusters ------------------------------------------------------------------------------

#[test]
fn cluster_prefers_one_machine_to_many_at_equal_price() {
    let mut workers: Vec<_> = (1..=8).map(|i| worker(i, 1, 0, 100)).collect();
    workers.push(worker(9, 8, 1, 100));
    let mut s = scheduler(&workers, &[order(1, 8, &[0, 1], 200)]);
    let out = s.match_round(0);
    assert_eq!(out.placements[0].region, region(1));
    assert_eq!(picked(&s, 1), vec![(9, 8)]);
}

#[test]
fn cluster_in_a_region_uses_the_fewest_machines_largest_first_then_best_fit() {
    let workers = [
        worker(1, 1, 0, 100),
        worker(2, 4, 0, 100),
        worker(3, 4, 0, 100),
        worker(4, 2, 0, 100),
        worker(5, 1, 0, 100),
    ];
    let mut s = scheduler(&workers, &[order(1, 9, &[0], 200)]);
    s.match_round(0);
    // 4 + 4 + 1: three machines, and the last GPU from a 1-GPU machine, not the 2-GPU one.
    assert_eq!(picked(&s, 1), vec![(2, 4), (3, 4), (1, 1)]);
}

#[test]
fn cluster_never_spans_regions() {
    let workers = [worker(1, 4, 0, 100), worker(2, 4, 1, 100)];
    let mut s = scheduler(&workers, &[order(1, 8, &[0, 1], 200)]);
    let out = s.match_round(0);
    assert!(out.placements.is_empty());
    assert_eq!(out.unplaced[0].why.eligible, 2);
    assert_eq!(out.unplaced[0].why.best_region_gpus, 4);
}

#[test]
fn spot_cluster_goes_to_the_cheaper_region() {
    let workers = [worker(1, 8, 0, 120), worker(2, 8, 1, 100)];
    let mut s = scheduler(&workers, &[order(1, 8, &[0, 1], 200)]);
    s.match_round(0);
    assert_eq!(picked(&s, 1), vec![(2, 8)]);
}

// ----- hard constraints ----------------------------------------------------------------------

#[test]
fn every_hard_constraint_turns_a_worker_away() {
    let mut wrong_class = worker(1, 1, 0, 100);
    wrong_class.class = class(1);
    let wrong_region = worker(2, 1, 1, 100);
    let mut small_vram = worker(3, 1, 0, 100);
    small_vram.vram_mib = 16_384;
    let mut slow = worker(4, 1, 0, 100);
    slow.bandwidth_gbps = 500;
    let dear = worker(5, 1, 0, 500);
    let mut jailed = worker(6, 1, 0, 100);
    jailed.status = WorkerStatus::Jailed;
    let mut draining = worker(7, 1, 0, 100);
    draining.status = WorkerStatus::Draining;
    let mut offline = worker(8, 1, 0, 100);
    offline.status = WorkerStatus::Offline;
    let full = worker(9, 1, 0, 100);
    let workers = [
        wrong_class,
        wrong_region,
        small_vram,
        slow,
        dear,
        jailed,
        draining,
        offline,
        full,
    ];
    // Order 1 fills worker 9; order 2 then finds nothing.
    let mut first = order(1, 1, &[0], 200);
    first.arrived_at = 0;
    let mut second = order(2, 1, &[0], 200);
    second.arrived_at = 1;
    let mut s = scheduler(&workers, &[first, second]);
    let out = s.match_round(1);
    assert_eq!(picked(&s, 1), vec![(9, 1)]);
    assert_eq!(out.unplaced.len(), 1);
    let why = out.unplaced[0].why;
    assert_eq!(
        (why.class, why.region, why.vram, why.bandwidth, why.price),
        (1, 1, 1, 1, 1)
    );
    assert_eq!((why.status, why.capacity, why.eligible), (3, 1, 0));
    assert_eq!(s.explain_order(OrderId(2)), Ok(why));
    assert_eq!(s.explain_order_naive(OrderId(2)), Ok(why));
    assert_eq!(
        s.explain_orders(&[OrderId(2), OrderId(2)]),
        Ok(vec![why, why])
    );
    assert_eq!(
        s.explain_orders(&[OrderId(2), OrderId(1)]),
        Err(SchedulerError::AlreadyPlaced(OrderId(1)))
    );
}

// ----- fairness ------------------------------------------------------------------------------

#[test]
fn older_orders_go_first_within_a_price_tier() {
    let mut young = order(1, 1, &[0], 200);
    young.arrived_at = 5;
    let mut old = order(2, 1, &[0], 150); // same tier (128..=255), lower bid, older
    old.arrived_at = 1;
    let mut s = scheduler(&[worker(1, 1, 0, 100)], &[young, old]);
    let out = s.match_round(5);
    assert_eq!(out.placements[0].order, OrderId(2));
    assert_eq!(out.unplaced[0].order, OrderId(1));
}

#[test]
fn a_higher_tier_goes_first_until_aging_promotes_the_old_order() {
    assert_eq!(price_tier(100), 7);
    assert_eq!(price_tier(1_000), 10);
    let cfg = SchedulerConfig {
        aging_step: 10,
        ..SchedulerConfig::default()
    };
    let run = |cfg: SchedulerConfig| -> Option<u64> {
        let mut s = Scheduler::new(cfg).expect("config");
        s.add_worker(worker(1, 1, 0, 50)).expect("worker");
        s.submit_order(order(1_000, 1, &[0], 100))
            .expect("old order");
        // Each round a new, better-paying order arrives and competes for the one GPU; the
        // order placed in the previous round finishes first.
        for round in 0..10u64 {
            let now = round * 10;
            let mut fresh = order(round, 1, &[0], 1_000);
            fresh.arrived_at = now;
            s.submit_order(fresh).expect("new order");
            let out = s.match_round(now);
            if out.placements.iter().any(|p| p.order == OrderId(1_000)) {
                return Some(now);
            }
            for p in out.placements {
                s.cancel_order(p.order).expect("finish");
            }
        }
        None
    };
    // Three steps of aging lift tier 7 to tier 10, and there the older order wins the tie.
    assert_eq!(run(cfg), Some(30));
    // Without effective aging the old order starves behind the stream.
    let no_aging = SchedulerConfig {
        aging_step: u64::MAX,
        ..cfg
    };
    assert_eq!(run(no_aging), None);
}

#[test]
fn aging_is_bounded_by_the_top_tier() {
    let cfg = SchedulerConfig::default();
    let mut o = order(1, 1, &[0], 1);
    o.arrived_at = 0;
    assert_eq!(effective_tier(&cfg, &o, 0), 1);
    assert_eq!(effective_tier(&cfg, &o, 60), 2);
    assert_eq!(effective_tier(&cfg, &o, u64::MAX), 64);
    // A clock going backwards does not demote.
    o.arrived_at = 100;
    assert_eq!(effective_tier(&cfg, &o, 0), 1);
}

// ----- rescheduling --------------------------------------------------------------------------

#[test]
fn a_failed_workers_lease_moves_to_the_best_spare() {
    let workers = [
        worker(1, 1, 0, 100),
        worker(2, 1, 0, 110),
        worker(3, 1, 1, 90),
    ];
    let mut s = scheduler(&workers, &[order(1, 1, &[0, 1], 200)]);
    s.match_round(0);
    assert_eq!(picked(&s, 1), vec![(3, 1)]);
    let r = s.fail_workers(&[WorkerId(3)], 1).expect("known worker");
    assert_eq!(r.replaced.len(), 1);
    assert!(r.not_replaced.is_empty());
    assert_eq!(r.replaced[0].lost[0].worker, WorkerId(3));
    assert_eq!(picked(&s, 1), vec![(1, 1)]);
    let failed = s.worker(WorkerId(3)).expect("still known");
    assert_eq!(failed.spec.status, WorkerStatus::Offline);
    assert_eq!((failed.gpus_free, failed.leases.len()), (1, 0));
}

#[test]
fn a_cluster_keeps_its_surviving_workers_when_the_region_has_a_spare() {
    let workers = [
        worker(1, 4, 0, 100),
        worker(2, 4, 0, 100),
        worker(3, 4, 0, 150),
    ];
    let mut s = scheduler(&workers, &[order(1, 8, &[0], 200)]);
    s.match_round(0);
    assert_eq!(picked(&s, 1), vec![(1, 4), (2, 4)]);
    let r = s.fail_workers(&[WorkerId(2)], 1).expect("known worker");
    assert_eq!(r.replaced.len(), 1);
    assert_eq!(picked(&s, 1), vec![(1, 4), (3, 4)]);
}

#[test]
fn a_cluster_moves_whole_to_another_region_when_its_own_has_no_spare() {
    let workers = [
        worker(1, 4, 0, 100),
        worker(2, 4, 0, 100),
        worker(3, 8, 1, 150),
    ];
    let mut s = scheduler(&workers, &[order(1, 8, &[0, 1], 200)]);
    s.match_round(0);
    assert_eq!(picked(&s, 1), vec![(1, 4), (2, 4)]);
    let r = s.fail_workers(&[WorkerId(1)], 1).expect("known worker");
    assert_eq!(r.replaced[0].placement.region, region(1));
    assert_eq!(picked(&s, 1), vec![(3, 8)]);
    // The survivor in region 0 got its GPUs back and is idle again.
    let survivor = s.worker(WorkerId(2)).expect("known");
    assert_eq!(
        (survivor.gpus_free, survivor.spec.status),
        (4, WorkerStatus::Idle)
    );
}

#[test]
fn leases_that_fit_nowhere_are_reported_and_return_to_the_queue() {
    let mut s = scheduler(&[worker(1, 1, 0, 100)], &[order(1, 1, &[0], 200)]);
    s.match_round(0);
    let r = s.fail_workers(&[WorkerId(1)], 1).expect("known worker");
    assert!(r.replaced.is_empty());
    assert_eq!(r.not_replaced[0].order, OrderId(1));
    assert_eq!(r.not_replaced[0].why.status, 1);
    assert!(s.pending_orders().any(|o| o.id == OrderId(1)));
    assert_eq!(
        s.fail_workers(&[WorkerId(7)], 1),
        Err(SchedulerError::UnknownWorker(WorkerId(7)))
    );
}

#[test]
fn rescheduling_serves_higher_priority_leases_first() {
    // Two orders lose their worker; one spare: the higher tier gets it.
    let workers = [worker(1, 2, 0, 50), worker(2, 1, 0, 100)];
    let mut s = scheduler(
        &workers,
        &[order(1, 1, &[0], 150), order(2, 1, &[0], 1_000)],
    );
    s.match_round(0);
    assert_eq!(picked(&s, 1), vec![(1, 1)]);
    assert_eq!(picked(&s, 2), vec![(1, 1)]);
    let r = s.fail_workers(&[WorkerId(1)], 0).expect("known");
    assert_eq!(r.replaced[0].order, OrderId(2));
    assert_eq!(r.not_replaced[0].order, OrderId(1));
}

// ----- explanations --------------------------------------------------------------------------

#[test]
fn an_idle_worker_hears_why_no_order_fits_it() {
    let mut o_class = order(1, 1, &[0], 200);
    o_class.class = class(3);
    let o_region = order(2, 1, &[5], 200);
    let mut o_vram = order(3, 1, &[0], 200);
    o_vram.min_vram_mib = 200_000;
    let mut o_bw = order(4, 1, &[0], 200);
    o_bw.min_bandwidth_gbps = 5_000;
    let o_price = order(5, 1, &[0], 10);
    let s = scheduler(
        &[worker(1, 1, 0, 100)],
        &[o_class, o_region, o_vram, o_bw, o_price],
    );
    let e = s.explain_worker(WorkerId(1)).expect("known");
    assert_eq!(
        (e.class, e.region, e.vram, e.bandwidth, e.price, e.fits),
        (1, 1, 1, 1, 1, 0)
    );

    let mut jailed = worker(2, 1, 0, 100);
    jailed.status = WorkerStatus::Jailed;
    let s = scheduler(&[jailed], &[order(1, 1, &[0], 200)]);
    let e = s.explain_worker(WorkerId(2)).expect("known");
    assert_eq!((e.status, e.fits), (1, 0));
}

// ----- incremental changes -------------------------------------------------------------------

#[test]
fn price_status_and_membership_changes_take_effect_without_a_rebuild() {
    let mut s = scheduler(&[worker(1, 1, 0, 100), worker(2, 1, 0, 120)], &[]);
    s.submit_order(order(1, 1, &[0], 200)).expect("order");
    assert_eq!(
        s.preview_order(OrderId(1))
            .expect("pending")
            .map(|p| p.assignments[0].worker),
        Some(WorkerId(1))
    );
    s.set_price(WorkerId(1), 130).expect("known");
    assert_eq!(
        s.preview_order(OrderId(1))
            .expect("pending")
            .map(|p| p.assignments[0].worker),
        Some(WorkerId(2))
    );
    s.set_status(WorkerId(2), WorkerStatus::Offline)
        .expect("known");
    assert_eq!(
        s.preview_order(OrderId(1))
            .expect("pending")
            .map(|p| p.assignments[0].worker),
        Some(WorkerId(1))
    );
    s.remove_worker(WorkerId(1)).expect("no leases");
    assert_eq!(s.preview_order(OrderId(1)), Ok(None));
    s.set_status(WorkerId(2), WorkerStatus::Idle)
        .expect("known");
    let placed = s.place_order(OrderId(1)).expect("pending");
    assert_eq!(placed.map(|p| p.assignments[0].worker), Some(WorkerId(2)));
    assert_eq!(
        s.worker(WorkerId(2)).map(|w| w.spec.status),
        Some(WorkerStatus::Busy)
    );
    assert_eq!(
        s.remove_worker(WorkerId(2)),
        Err(SchedulerError::WorkerHasLeases(WorkerId(2)))
    );
    let freed = s.cancel_order(OrderId(1)).expect("placed");
    assert!(freed.is_some());
    assert_eq!(
        s.worker(WorkerId(2)).map(|w| (w.gpus_free, w.spec.status)),
        Some((1, WorkerStatus::Idle))
    );
    assert_eq!(
        s.cancel_order(OrderId(1)),
        Err(SchedulerError::UnknownOrder(OrderId(1)))
    );
}

// ----- input errors --------------------------------------------------------------------------

#[test]
fn invalid_input_is_refused_with_a_typed_error() {
    // Codes come from the protocol's vocabulary, which refuses what the chain cannot hold.
    assert!(Region::from_code(64).is_err());
    assert!(GpuClass::from_code(16).is_err());
    let mut s = scheduler(&[worker(1, 1, 0, 100)], &[]);
    assert_eq!(
        s.submit_order(order(1, 0, &[0], 100)),
        Err(SchedulerError::ZeroGpuOrder(OrderId(1)))
    );
    let mut nowhere = order(2, 1, &[0], 100);
    nowhere.regions = RegionSet(0);
    assert_eq!(
        s.submit_order(nowhere),
        Err(SchedulerError::NoRegionAllowed(OrderId(2)))
    );
    assert_eq!(
        s.add_worker(worker(1, 1, 0, 100)),
        Err(SchedulerError::DuplicateWorker(WorkerId(1)))
    );
    assert_eq!(
        s.add_worker(worker(2, 0, 0, 100)),
        Err(SchedulerError::ZeroGpuWorker(WorkerId(2)))
    );
    assert_eq!(
        s.set_price(WorkerId(9), 1),
        Err(SchedulerError::UnknownWorker(WorkerId(9)))
    );
    assert_eq!(
        s.place_order(OrderId(9)),
        Err(SchedulerError::UnknownOrder(OrderId(9)))
    );
    assert!(
        Region::from_code(70)
            .unwrap_err()
            .to_string()
            .contains("below 64")
    );
    assert_eq!(
        Scheduler::new(SchedulerConfig {
            aging_step: 0,
            ..SchedulerConfig::default()
        })
        .err(),
        Some(SchedulerError::ZeroAgingStep)
    );
}
