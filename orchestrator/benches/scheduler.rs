//! Scheduler speed on synthetic markets (`scheduler::workload`, fixed seed) of several sizes,
//! each measured against the full-scan baseline in the same run:
//!
//! - index build: time to add the whole fleet at once (`add_workers`) and one worker at a time
//!   (`add_worker`), and the scheduler's live heap bytes per worker (counted by this binary's
//!   allocator);
//! - a full matching round (median of `--reps` rounds, each on a fresh copy of the market),
//!   split into placing and explaining the orders left pending;
//! - explaining every pending order after a round: shared, as the round does it
//!   (`explain_orders`); one by one on demand (`explain_order`: p50 / p99 / max); and by the
//!   full scan of every worker on a sample (ratio);
//! - single placements, each order placed on its own as on arrival: p50 / p99 / max;
//! - the full-scan placement on the first orders against the index on the same orders (ratio);
//! - a region outage of 1 % of the fleet: its leases re-placed.
//!
//! Run (sizes are `workers x orders`, comma-separated; the growth curve in one command):
//! `cargo bench -p gpumesh-orchestrator --bench scheduler -- --sizes 10000x1000,100000x10000,1000000x100000`
//! Defaults: `--sizes 100000x10000 --reps 5`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use gpumesh_orchestrator::scheduler::workload::{self, Market};
use gpumesh_orchestrator::scheduler::{OrderId, Scheduler, SchedulerConfig, WorkerId};

/// Counts live heap bytes so the benchmark can report the scheduler's memory per worker.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// "gpumesh" in ASCII.
const SEED: u64 = 0x0067_7075_6d65_7368;

struct Args {
    sizes: Vec<(usize, usize)>,
    reps: usize,
}

fn parse_count(s: &str) -> Option<usize> {
    let s = s.trim().to_ascii_lowercase();
    let (digits, scale) = match s.strip_suffix('m') {
        Some(d) => (d, 1_000_000),
        None => match s.strip_suffix('k') {
            Some(d) => (d, 1_000),
            None => (s.as_str(), 1),
        },
    };
    digits.parse::<usize>().ok().map(|v| v * scale)
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        sizes: vec![(100_000, 10_000)],
        reps: 5,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--sizes" => {
                let v = it.next().ok_or("--sizes needs a value like 100000x10000")?;
                args.sizes = v
                    .split(',')
                    .map(|pair| {
                        let (w, o) = pair
                            .split_once('x')
                            .ok_or(format!("size {pair:?} is not WORKERSxORDERS"))?;
                        match (parse_count(w), parse_count(o)) {
                            (Some(w), Some(o)) if w > 0 && o > 0 => Ok((w, o)),
                            _ => Err(format!("size {pair:?} is not WORKERSxORDERS")),
                        }
                    })
                    .collect::<Result<_, String>>()?;
            }
            "--reps" => {
                let v = it.next().ok_or("--reps needs a number")?;
                args.reps = v
                    .parse::<usize>()
                    .ok()
                    .filter(|&r| r > 0)
                    .ok_or(format!("--reps {v:?} is not a positive number"))?;
            }
            // `cargo bench` passes --bench; filters and other harness flags do not apply here.
            _ => {}
        }
    }
    Ok(args)
}

fn cpu_model() -> String {
    gpumesh_protocol::kernels::cpu_model().unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ratio(slow: Duration, fast: Duration) -> f64 {
    slow.as_secs_f64() / fast.as_secs_f64().max(1e-12)
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn us(d: Duration) -> String {
    format!("{:.2} µs", d.as_secs_f64() * 1e6)
}

fn empty() -> Scheduler {
    Scheduler::new(SchedulerConfig::default()).expect("default config is valid")
}

/// 1 % of the fleet in the region with the most leased workers after a round, those holding
/// leases first: the machines a region outage takes down.
fn outage_victims(after_round: &Scheduler, market: &Market) -> Vec<WorkerId> {
    let mut per_region = [0usize; 64];
    let mut all: Vec<(bool, u8, WorkerId)> = Vec::new();
    for spec in &market.workers {
        if let Some(w) = after_round.worker(spec.id) {
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
        .take((market.workers.len() / 100).max(1))
        .collect()
}

fn run(workers: usize, orders: usize, reps: usize) {
    println!("\n== {workers} workers, {orders} pending orders, seed {SEED:#x}, {reps} reps");
    let market = workload::market(SEED, workers, orders);
    let now = orders as u64;

    // Index build and memory: the whole fleet at once (as at start-up), then one by one.
    let specs = market.workers.clone();
    let before = LIVE.load(Ordering::Relaxed);
    let t = Instant::now();
    let mut base = empty();
    base.add_workers(specs)
        .expect("generated workers are valid");
    let bulk = t.elapsed();
    let bulk_bytes = LIVE.load(Ordering::Relaxed).saturating_sub(before);
    drop(base);
    let before = LIVE.load(Ordering::Relaxed);
    let t = Instant::now();
    let mut base = empty();
    for w in &market.workers {
        base.add_worker(w.clone())
            .expect("generated workers are valid");
    }
    let build = t.elapsed();
    let worker_bytes = LIVE.load(Ordering::Relaxed).saturating_sub(before);
    for o in &market.orders {
        base.submit_order(o.clone())
            .expect("generated orders are valid");
    }
    let all_bytes = LIVE.load(Ordering::Relaxed).saturating_sub(before);
    println!(
        "index build: all {workers} workers at once (add_workers) {} ({:.0} B/worker); one by \
         one (add_worker) {} ({:.2} µs/worker, {:.0} B/worker, {:.1} MiB; {:.1} MiB with the \
         orders)",
        ms(bulk),
        bulk_bytes as f64 / workers as f64,
        ms(build),
        build.as_secs_f64() * 1e6 / workers as f64,
        worker_bytes as f64 / workers as f64,
        worker_bytes as f64 / (1 << 20) as f64,
        all_bytes as f64 / (1 << 20) as f64,
    );

    // Full rounds, each on a fresh copy; the copy and its drop are not timed.
    let mut rounds = Vec::with_capacity(reps);
    let mut after_round = None;
    let mut placed = 0;
    let mut unplaced = Vec::new();
    for _ in 0..reps {
        let mut s = base.clone();
        let t = Instant::now();
        let out = s.match_round(now);
        rounds.push(t.elapsed());
        placed = out.placements.len();
        unplaced = out.unplaced.iter().map(|u| u.order).collect::<Vec<_>>();
        if after_round.is_none() {
            after_round = Some(s);
        }
    }
    let Some(after_round) = after_round else {
        return;
    };
    let round = median(rounds);

    // Explaining every pending order after the round, as the round does it (shared).
    let mut explains = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t = Instant::now();
        black_box(after_round.explain_orders(&unplaced).ok());
        explains.push(t.elapsed());
    }
    let explain_all = median(explains);
    println!(
        "full round: {} median ({placed} placed, {} pending with reasons): placing {} + \
         explaining {} ({:.0} % of the round)",
        ms(round),
        unplaced.len(),
        ms(round.saturating_sub(explain_all)),
        ms(explain_all),
        100.0 * ratio(explain_all, round),
    );

    // The same explanations order by order: on demand from the index, and by the full scan of
    // every worker (on a sample of the pending orders: it is slow).
    let mut times: Vec<Duration> = unplaced
        .iter()
        .map(|&id| {
            let t = Instant::now();
            black_box(after_round.explain_order(id).ok());
            t.elapsed()
        })
        .collect();
    let one_by_one: Duration = times.iter().sum();
    times.sort_unstable();
    println!(
        "explain_order on demand, each pending order on its own: p50 {}, p99 {}, max {}; all \
         {} of them one by one: {} ({:.1}x the shared explanation)",
        us(percentile(&times, 0.5)),
        us(percentile(&times, 0.99)),
        us(percentile(&times, 1.0)),
        unplaced.len(),
        ms(one_by_one),
        ratio(one_by_one, explain_all),
    );
    let sample: Vec<OrderId> = unplaced
        .iter()
        .copied()
        .take((20_000_000 / workers).clamp(20, 1_000))
        .collect();
    if !sample.is_empty() {
        let t = Instant::now();
        for &id in &sample {
            black_box(after_round.explain_order_naive(id).ok());
        }
        let scan = t.elapsed() / sample.len() as u32;
        let t = Instant::now();
        for &id in &sample {
            black_box(after_round.explain_order(id).ok());
        }
        let index = t.elapsed() / sample.len() as u32;
        let shared = after_round.explain_orders(&sample).ok();
        let same = sample
            .iter()
            .zip(shared.iter().flatten())
            .all(|(&id, shared)| {
                let scan = after_round.explain_order_naive(id);
                scan == after_round.explain_order(id) && scan.as_ref() == Ok(shared)
            });
        let scan_all = scan * unplaced.len() as u32;
        println!(
            "full-scan explanation on the first {} pending orders: {}/order vs on demand {}/order: \
             {:.0}x (same counts: {same}); explaining all {} by full scan would take ~{}, {:.0}x \
             the shared explanation",
            sample.len(),
            us(scan),
            us(index),
            ratio(scan, index),
            unplaced.len(),
            ms(scan_all),
            ratio(scan_all, explain_all),
        );
    }

    // Single placements: each order placed on its own, as on arrival.
    let mut s = base.clone();
    let mut times: Vec<Duration> = Vec::with_capacity(orders);
    let mut placed = 0;
    for o in &market.orders {
        let t = Instant::now();
        let r = s.place_order(o.id);
        times.push(t.elapsed());
        if matches!(r, Ok(Some(_))) {
            placed += 1;
        }
    }
    let mean = times.iter().sum::<Duration>() / orders as u32;
    times.sort_unstable();
    println!(
        "single placement over {orders} orders ({placed} placed): p50 {}, p99 {}, max {}, mean {}",
        us(percentile(&times, 0.5)),
        us(percentile(&times, 0.99)),
        us(percentile(&times, 1.0)),
        us(mean),
    );
    drop(s);

    // The first orders placed by the index and by the full scan.
    let naive_orders = (100_000_000 / workers).clamp(20, 1_000).min(orders);
    let mut s = base.clone();
    let t = Instant::now();
    for o in &market.orders[..naive_orders] {
        black_box(s.place_order(o.id).ok());
    }
    let index = t.elapsed() / naive_orders as u32;
    let mut n = base.clone();
    let t = Instant::now();
    for o in &market.orders[..naive_orders] {
        black_box(n.place_order_naive(o.id).ok());
    }
    let naive = t.elapsed() / naive_orders as u32;
    let same = market.orders[..naive_orders]
        .iter()
        .all(|o| s.lease(o.id) == n.lease(o.id));
    println!(
        "placement on the first {naive_orders} orders: full scan {}/order vs index {}/order: \
         {:.0}x (same placements: {same}); a full-scan round of {orders} would take ~{:.1} s, \
         {:.0}x this round",
        us(naive),
        us(index),
        ratio(naive, index),
        naive.as_secs_f64() * orders as f64,
        naive.as_secs_f64() * orders as f64 / round.as_secs_f64().max(1e-12),
    );
    drop((s, n));

    // A region outage.
    let victims = outage_victims(&after_round, &market);
    let mut outage = Vec::with_capacity(reps);
    let mut last = (0, 0);
    for _ in 0..reps {
        let mut s = after_round.clone();
        let t = Instant::now();
        let r = s
            .fail_workers(&victims, now)
            .expect("victims are known workers");
        outage.push(t.elapsed());
        last = (r.replaced.len(), r.not_replaced.len());
    }
    println!(
        "region outage: {} workers failed, {} leases re-placed, {} not re-placed, {} median",
        victims.len(),
        last.0,
        last.1,
        ms(median(outage)),
    );
}

fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("scheduler bench: {e}");
            std::process::exit(2);
        }
    };
    println!(
        "gpumesh scheduler benchmark on {} ({} logical CPUs; the scheduler is single-threaded)",
        cpu_model(),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    );
    for &(workers, orders) in &args.sizes {
        run(workers, orders, args.reps);
    }
}
