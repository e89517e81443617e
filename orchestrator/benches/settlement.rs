//! Receipts settled per second on the local node (gpumesh-localnet in process, a real Solana
//! runtime): `--leases` 1-GPU leases on 8-GPU workers, each with a signed cumulative receipt
//! per round, settled by the orchestrator's `settle_batches` (every transaction of the round in
//! flight together, confirmed as a group) against `settle_batches_sequentially` (each confirmed
//! before the next is sent, how the service settled before) in alternating rounds on the same
//! node. Also prints what one receipt's settlement costs in fees.
//!
//! `cargo bench --profile dev -p gpumesh-orchestrator --bench settlement -- --leases 32 --rounds 3`

#[path = "../tests/net/mod.rs"]
mod net;

use gpumesh_client::ix::LeaseRef;
use gpumesh_client::{Chain, SignedReceipt, receipt};
use gpumesh_orchestrator::actions::Orchestrator;
use gpumesh_protocol::LeaseService;
use net::{Net, PRICE, spec_text};
use std::time::{Duration, Instant};

struct Args {
    leases: usize,
    rounds: usize,
    slot_ms: u64,
}

fn args() -> Args {
    let mut a = Args {
        leases: 32,
        rounds: 3,
        slot_ms: 100,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let value = argv.get(i + 1).cloned().unwrap_or_default();
        match argv[i].as_str() {
            "--leases" => a.leases = value.parse::<usize>().expect("--leases N").max(1),
            "--rounds" => a.rounds = value.parse::<usize>().expect("--rounds N").max(1),
            "--slot-ms" => a.slot_ms = value.parse().expect("--slot-ms MS"),
            "--bench" => {
                i += 1;
                continue;
            }
            other => panic!("unknown argument {other}: use --leases N --rounds N --slot-ms MS"),
        }
        i += 2;
    }
    a
}

fn cpu_model() -> String {
    gpumesh_protocol::kernels::cpu_model().unwrap_or_else(|| "unknown CPU".into())
}

struct Served {
    lease: LeaseRef,
    service: LeaseService,
    node: gpumesh_client::Keypair,
    started: i64,
}

/// Each lease's receipt for the seconds since it started on the node's clock (at least one
/// more than the last round's).
fn receipts(net: &Net, leases: &mut [Served], last: &mut u64) -> Vec<(LeaseRef, SignedReceipt)> {
    loop {
        let now = net.chain.unix_time().expect("clock");
        let served = leases
            .iter()
            .map(|l| (now - l.started).max(0) as u64)
            .min()
            .unwrap_or(0);
        if served > *last {
            *last = served;
            let now_ms = now as u64 * 1_000;
            return leases
                .iter_mut()
                .map(|l| {
                    l.service
                        .heartbeat(now_ms, served, b"1 x h100")
                        .expect("heartbeat");
                    (l.lease, l.service.receipt(&receipt::signing_key(&l.node)))
                })
                .collect();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn main() {
    let a = args();
    println!(
        "settlement on the local node: {} ({} threads); {} leases (1 GPU each, 8-GPU workers), {} rounds per variant, slot {} ms",
        cpu_model(),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        a.leases,
        a.rounds,
        a.slot_ms
    );
    let mut net = Net::start_with(a.slot_ms);
    let orch = Orchestrator::new(net.m.addrs, net.m.orchestrator.insecure_clone());
    let mut leases = vec![];
    let mut worker = None;
    for i in 0..a.leases {
        if i % 8 == 0 {
            let (w, _owner, node) = net.worker(8, PRICE);
            worker = Some((w, node));
        }
        let Some((w, node)) = &worker else {
            unreachable!("a worker every eight leases")
        };
        let order = net.order(i as u64 + 1, 1, &spec_text("settle"), 2_000_000);
        let (lease, _) = orch.assign(&mut net.chain, &order, w, 1).expect("assign");
        leases.push(Served {
            service: LeaseService::new(
                receipt::key(&gpumesh_client::program::ID),
                receipt::key(&lease.lease),
                lease.nonce,
            ),
            lease,
            node: node.insecure_clone(),
            started: net.chain.unix_time().expect("clock"),
        });
    }
    // The leases started at slightly different moments: count from the last one.
    let latest = leases.iter().map(|l| l.started).max().unwrap_or(0);
    for l in &mut leases {
        l.started = latest;
    }

    let mut last = 0;
    let mut pipelined = vec![];
    let mut sequential = vec![];
    let mut transactions = 0;
    for round in 0..a.rounds * 2 {
        let due = receipts(&net, &mut leases, &mut last);
        let started = Instant::now();
        let done = if round % 2 == 0 {
            orch.settle_batches(&mut net.chain, &due)
        } else {
            orch.settle_batches_sequentially(&mut net.chain, &due)
        }
        .expect("settle");
        let took = started.elapsed();
        transactions = done.len();
        let rate = due.len() as f64 / took.as_secs_f64();
        let name = if round % 2 == 0 {
            pipelined.push(rate);
            "pipelined"
        } else {
            sequential.push(rate);
            "sequential"
        };
        println!(
            "round {:>2} {name:<10} {} receipts in {} transactions: {:>7.1} ms, {:>7.1} receipts/s",
            round / 2 + 1,
            due.len(),
            done.len(),
            took.as_secs_f64() * 1e3,
            rate
        );
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (p, s) = (median(pipelined), median(sequential));
    let per_tx = a.leases.div_ceil(transactions.max(1));
    let fee_per_receipt = gpumesh_orchestrator::settlement::LAMPORTS_PER_SIGNATURE
        + gpumesh_orchestrator::settlement::LAMPORTS_PER_SIGNATURE / per_tx as u64;
    println!(
        "median: pipelined {p:.1} receipts/s, sequential {s:.1} receipts/s: {:.1}x; {per_tx} receipts per transaction, {fee_per_receipt} lamports of fees per receipt settled",
        p / s
    );
}
