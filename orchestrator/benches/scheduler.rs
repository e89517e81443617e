//! Scheduler speed on a synthetic market of 100,000 workers and 10,000 pending orders (fixed
//! seed): a full matching round, single placements (criterion mean, plus p50/p99 over 10,000
//! timed placements printed first), re-placing the leases of 1,000 workers lost in a region
//! outage, and the full-scan baseline on the first 1,000 orders with the index/scan ratio.
//!
//! Run: `cargo bench -p gpumesh-orchestrator --bench scheduler`

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion};
use gpumesh_orchestrator::scheduler::workload::{self, Market};
use gpumesh_orchestrator::scheduler::{OrderId, Scheduler, SchedulerConfig, WorkerId};

/// "gpumesh" in ASCII.
const SEED: u64 = 0x0067_7075_6d65_7368;
const WORKERS: usize = 100_000;
const ORDERS: usize = 10_000;
/// The baseline scans 100,000 workers per order, so it runs on this many orders only.
const NAIVE_ORDERS: usize = 1_000;
const OUTAGE_WORKERS: usize = 1_000;
/// Round time: every order arrived at its id, so `NOW` ages the oldest by 10,000 units.
const NOW: u64 = ORDERS as u64;

fn scheduler(market: &Market) -> Scheduler {
    let mut s = Scheduler::new(SchedulerConfig::default()).expect("default config is valid");
    for w in &market.workers {
        s.add_worker(w.clone())
            .expect("generated workers are valid");
    }
    for o in &market.orders {
        s.submit_order(o.clone())
            .expect("generated orders are valid");
    }
    s
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// 1,000 workers of the region with the most leased workers after a round, those holding
/// leases first: the machines a region outage takes down.
fn outage_victims(after_round: &Scheduler) -> Vec<WorkerId> {
    let mut per_region = [0usize; 64];
    let mut all: Vec<(bool, u8, WorkerId)> = Vec::new();
    for id in 0..WORKERS as u32 {
        if let Some(w) = after_round.worker(WorkerId(id)) {
            let leased = !w.leases.is_empty();
            if leased {
                per_region[usize::from(w.spec.region.code())] += 1;
            }
            all.push((!leased, w.spec.region.code(), w.spec.id));
        }
    }
    let region = (0..64).max_by_key(|&r| per_region[r]).unwrap_or(0) as u8;
    all.retain(|(_, r, _)| *r == region);
    all.sort_unstable();
    all.into_iter()
        .map(|(_, _, id)| id)
        .take(OUTAGE_WORKERS)
        .collect()
}

/// Timed by hand because criterion reports means, and the goal is on the tail.
fn report(base: &Scheduler, after_round: &Scheduler, victims: &[WorkerId]) {
    println!("== gpumesh scheduler, {WORKERS} workers, {ORDERS} pending orders, seed {SEED:#x}");

    let mut s = base.clone();
    let t = Instant::now();
    let outcome = s.match_round(NOW);
    println!(
        "full round: {:?} ({} placed, {} left pending with reasons)",
        t.elapsed(),
        outcome.placements.len(),
        outcome.unplaced.len()
    );

    // Single placements: each of the 10,000 orders placed on its own, as on arrival.
    let mut s = base.clone();
    let mut times: Vec<Duration> = Vec::with_capacity(ORDERS);
    let mut placed = 0;
    for id in 0..ORDERS as u64 {
        let t = Instant::now();
        let r = s.place_order(OrderId(id));
        times.push(t.elapsed());
        if matches!(r, Ok(Some(_))) {
            placed += 1;
        }
    }
    let index_total: Duration = times.iter().sum();
    times.sort_unstable();
    println!(
        "single placement over {ORDERS} orders ({placed} placed): p50 {:?}, p99 {:?}, max {:?}, mean {:?}",
        percentile(&times, 0.50),
        percentile(&times, 0.99),
        percentile(&times, 1.0),
        index_total / ORDERS as u32
    );

    // The same first 1,000 orders, placed by the index and by the full scan.
    let mut s = base.clone();
    let t = Instant::now();
    for id in 0..NAIVE_ORDERS as u64 {
        black_box(s.place_order(OrderId(id)).ok());
    }
    let index_per_order = t.elapsed() / NAIVE_ORDERS as u32;
    let mut n = base.clone();
    let t = Instant::now();
    for id in 0..NAIVE_ORDERS as u64 {
        black_box(n.place_order_naive(OrderId(id)).ok());
    }
    let naive_per_order = t.elapsed() / NAIVE_ORDERS as u32;
    let same = (0..NAIVE_ORDERS as u64).all(|id| s.lease(OrderId(id)) == n.lease(OrderId(id)));
    println!(
        "naive full scan: {naive_per_order:?}/order vs index {index_per_order:?}/order on the first \
         {NAIVE_ORDERS} orders: index is {:.0}x faster (same placements: {same}); \
         extrapolated naive round of {ORDERS}: {:?}",
        naive_per_order.as_secs_f64() / index_per_order.as_secs_f64().max(1e-12),
        naive_per_order * ORDERS as u32
    );

    let mut s = after_round.clone();
    let t = Instant::now();
    let r = s
        .fail_workers(victims, NOW)
        .expect("victims are known workers");
    println!(
        "region outage: {} workers failed, {} leases re-placed, {} not re-placed, in {:?}",
        victims.len(),
        r.replaced.len(),
        r.not_replaced.len(),
        t.elapsed()
    );
}

fn main() {
    let market = workload::market(SEED, WORKERS, ORDERS);
    let base = scheduler(&market);
    let mut after_round = base.clone();
    after_round.match_round(NOW);
    let victims = outage_victims(&after_round);

    report(&base, &after_round, &victims);

    let mut c = Criterion::default()
        .configure_from_args()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));

    c.bench_function("full round (100k workers, 10k orders)", |b| {
        b.iter_batched(
            || base.clone(),
            // Hand the scheduler back so dropping 100k workers is not timed.
            |mut s| {
                let out = s.match_round(NOW);
                (s, black_box(out))
            },
            BatchSize::LargeInput,
        )
    });

    // Placement search for one order against the full fleet, cycling through the orders.
    let mut next = 0u64;
    c.bench_function("single placement search (100k workers)", |b| {
        b.iter(|| {
            next = (next + 1) % ORDERS as u64;
            black_box(base.preview_order(OrderId(next)).ok())
        })
    });

    c.bench_function("region outage: re-place leases of 1,000 workers", |b| {
        b.iter_batched(
            || after_round.clone(),
            |mut s| {
                let out = s.fail_workers(&victims, NOW).ok();
                (s, black_box(out))
            },
            BatchSize::LargeInput,
        )
    });

    let mut next = 0u64;
    c.bench_function("naive single placement search (full scan)", |b| {
        b.iter(|| {
            next = (next + 1) % NAIVE_ORDERS as u64;
            black_box(base.preview_order_naive(OrderId(next)).ok())
        })
    });

    c.final_summary();
}
