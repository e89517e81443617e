//! Failover latency on the local chain: a real Solana node in process (gpumesh-localnet), the
//! orchestrator service on a free port, and workers simulated over the real wire protocol (the
//! service's tests' `net` support). A job runs on one worker; the bench kills that worker's
//! daemon `--kills` times and measures, from the dead worker's last heartbeat, (a) the
//! replacement lease confirmed on chain (the spare receives StartJob, which the service sends
//! right after the confirmation) and (b) the job running again (the service's `job running`
//! feed event, sent once it has the spare's JobStarted). The killed daemon comes back as a spare.
//!
//! Each run compares, on a fresh node each: `sequential`, the service as it failed over before
//! (close alone, then a placement round, then assign; one task for all loops, failover checked
//! every 100 ms, one chain connection, status lookups every 250 ms) and `one-tx` (this service:
//! receipt, close and the spare's assign in one transaction, failover in its own task on its own
//! connection every 20 ms, status lookups every 25 ms).
//!
//! `cargo bench -p gpumesh-orchestrator --bench failover -- --kills 30 --slot-ms 100,400`

#[path = "../tests/net/mod.rs"]
mod net;

use gpumesh_client::RpcChain;
use gpumesh_client::rpc::RpcConfig;
use gpumesh_orchestrator::service::{Config, Parts};
use net::{FeedClient, Net, PRICE, Service, SimWorker, spec_text, upload_spec};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Variant {
    Sequential,
    OneTransaction,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Sequential => "sequential (before)",
            Variant::OneTransaction => "one-tx (now)",
        }
    }
}

struct Args {
    kills: usize,
    slots: Vec<u64>,
    workers: usize,
}

fn args() -> Args {
    let mut a = Args {
        kills: 30,
        slots: vec![100, 400],
        workers: 3,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let value = argv.get(i + 1).cloned().unwrap_or_default();
        match argv[i].as_str() {
            "--kills" => a.kills = value.parse().expect("--kills N"),
            "--workers" => a.workers = value.parse::<usize>().expect("--workers N").max(2),
            "--slot-ms" => {
                a.slots = value
                    .split(',')
                    .map(|s| s.trim().parse().expect("--slot-ms A,B"))
                    .collect()
            }
            // What cargo bench passes along.
            "--bench" => {
                i += 1;
                continue;
            }
            _ => {}
        }
        i += 2;
    }
    a
}

fn cpu_model() -> String {
    gpumesh_protocol::kernels::cpu_model().unwrap_or_else(|| "unknown CPU".into())
}

fn config(net: &Net, variant: Variant) -> Config {
    let defaults: Config = toml::from_str(&format!(
        "rpc_url = \"{}\"\nmarket = \"{}\"\nkeypair = \"unused.json\"",
        net.url, net.m.addrs.market
    ))
    .expect("defaults");
    Config {
        ws_url: Some(net.node.ws_url().to_string()),
        listen: "127.0.0.1:0".into(),
        store: net.store_url(&format!("{variant:?}.db")),
        // A receipt every second, so each failover carries a final receipt to settle.
        receipt_every_s: 1,
        // The smallest compute challenge, once per worker (the simulated daemons compute it).
        challenge_every_s: 3_600,
        challenge_target_ms: 0,
        challenge_rows: 8,
        spot_check_every_s: 3_600,
        fee_budget_lamports_per_gpu_hour: 0,
        runway_floor_s: 600,
        confirm_poll_ms: match variant {
            Variant::Sequential => 250,
            Variant::OneTransaction => defaults.confirm_poll_ms,
        },
        sequential_failover: variant == Variant::Sequential,
        ..defaults
    }
}

fn parts(net: &Net, cfg: &Config, variant: Variant) -> Parts {
    let rpc = || {
        let config = RpcConfig {
            poll_interval: Duration::from_millis(cfg.confirm_poll_ms),
            ..RpcConfig::default()
        };
        Box::new(RpcChain::with_config(net.url.clone(), config))
            as Box<dyn gpumesh_client::Chain + Send>
    };
    Parts {
        chain: rpc(),
        keypair: net.m.orchestrator.insecure_clone(),
        failover_chain: match variant {
            Variant::Sequential => None,
            Variant::OneTransaction => Some(rpc()),
        },
    }
}

/// Seconds from each kill's last heartbeat to (a) the spare's StartJob and (b) the job running.
struct Samples {
    leased: Vec<f64>,
    running: Vec<f64>,
}

async fn run(slot_ms: u64, variant: Variant, a: &Args) -> (Samples, Config) {
    let mut net = tokio::task::spawn_blocking(move || Net::start_with(slot_ms))
        .await
        .expect("net");
    let keys: Vec<_> = (0..a.workers)
        .map(|i| net.worker(1, PRICE + i as u64))
        .collect();
    let spec = spec_text("failover bench");
    let order = net.order(1, 1, &spec, 50_000_000);
    let cfg = config(&net, variant);
    let service = Service::start_parts(cfg.clone(), parts(&net, &cfg, variant)).await;
    let feed = FeedClient::connect(service.addr, &format!("?order={order}"))
        .await
        .expect("feed");
    let (status, body) = upload_spec(service.addr, &order, &spec, &net.buyer).await;
    assert_eq!(status, 200, "{body}");
    let spawn = |i: usize| {
        let (worker, _, node) = &keys[i];
        SimWorker::spawn(service.ws_url(), *worker, node.insecure_clone(), 0)
    };
    let mut sims: Vec<SimWorker> = (0..a.workers).map(spawn).collect();
    let mut samples = Samples {
        leased: vec![],
        running: vec![],
    };
    let serving = |sims: &[SimWorker]| {
        sims.iter()
            .enumerate()
            .filter_map(|(i, s)| s.seen.lock().unwrap().started.last().map(|x| (x.1, i)))
            .max()
            .map(|(_, i)| i)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while serving(&sims).is_none() {
        assert!(Instant::now() < deadline, "the job never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for kill in 0..a.kills {
        // Steady state: the job runs and has had a receipt acknowledged; every spare is back.
        let current = serving(&sims).expect("a worker serves the job");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let acked = !sims[current].seen.lock().unwrap().acks.is_empty();
            let ready = sims.iter().all(|s| s.seen.lock().unwrap().ready > 0);
            if acked && ready {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no steady state before kill {kill}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(700)).await;
        let from_event = feed.len();
        sims[current].kill();
        let last_beat = sims[current]
            .seen
            .lock()
            .unwrap()
            .last_heartbeat
            .expect("it sent heartbeats");
        let started_before: Vec<usize> = sims
            .iter()
            .map(|s| s.seen.lock().unwrap().started.len())
            .collect();
        let deadline = Instant::now() + Duration::from_secs(30);
        let (leased_at, spare) = loop {
            let moved = sims.iter().enumerate().find_map(|(i, s)| {
                let seen = s.seen.lock().unwrap();
                (i != current && seen.started.len() > started_before[i])
                    .then(|| (seen.started[started_before[i]].1, i))
            });
            if let Some(m) = moved {
                break m;
            }
            assert!(
                Instant::now() < deadline,
                "kill {kill}: the job did not move"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let lease = sims[spare].seen.lock().unwrap().started[started_before[spare]].0;
        let lease_key = lease.lease.to_string();
        let running_at = loop {
            let running = feed
                .of_type_since("job", from_event)
                .into_iter()
                .find(|(_, e)| e["lease"] == lease_key.as_str() && e["status"] == "running");
            if let Some((at, _)) = running {
                break at;
            }
            assert!(
                Instant::now() < deadline,
                "kill {kill}: no job running event"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        samples
            .leased
            .push(leased_at.duration_since(last_beat).as_secs_f64());
        samples
            .running
            .push(running_at.duration_since(last_beat).as_secs_f64());
        // The dead daemon comes back as a spare.
        sims[current] = spawn(current);
    }
    for s in &sims {
        s.kill();
    }
    service.stop().await;
    (samples, cfg)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

struct Summary {
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
}

fn summary(values: &[f64]) -> Summary {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    Summary {
        p50: percentile(&v, 50.0),
        p90: percentile(&v, 90.0),
        p99: percentile(&v, 99.0),
        max: v.last().copied().unwrap_or(f64::NAN),
    }
}

fn main() {
    let a = args();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("runtime");
    println!("failover latency on the local chain");
    println!(
        "cpu: {} ({} cores)",
        cpu_model(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "kills per run: {}, workers: {} (1 GPU each), the job on one of them",
        a.kills, a.workers
    );
    let mut printed_params = false;
    for &slot_ms in &a.slots {
        let mut results = vec![];
        for variant in [Variant::Sequential, Variant::OneTransaction] {
            let (s, cfg) = runtime.block_on(run(slot_ms, variant, &a));
            if !printed_params {
                println!(
                    "parameters: grace {} ms, heartbeat {} ms, receipt every {} s, settlement every {} s, placement every {} ms",
                    cfg.grace_ms,
                    cfg.heartbeat_ms,
                    cfg.receipt_every_s,
                    cfg.settle_every_s,
                    cfg.placement_every_ms
                );
                printed_params = true;
            }
            results.push((
                variant,
                s,
                cfg.confirm_poll_ms,
                cfg.grace_ms as f64 / 1_000.0,
            ));
        }
        println!();
        println!(
            "slot time {slot_ms} ms; seconds from the dead worker's last heartbeat ({} kills each)",
            a.kills
        );
        println!(
            "{:<22} {:>8} | {:>23} | {:>23}",
            "", "", "(a) new lease confirmed", "(b) job running again"
        );
        println!(
            "{:<22} {:>8} | {:>5} {:>5} {:>5} {:>5} | {:>5} {:>5} {:>5} {:>5}",
            "path", "poll ms", "p50", "p90", "p99", "max", "p50", "p90", "p99", "max"
        );
        let mut sums = vec![];
        for (variant, s, poll, _) in &results {
            let (l, r) = (summary(&s.leased), summary(&s.running));
            println!(
                "{:<22} {:>8} | {:>5.2} {:>5.2} {:>5.2} {:>5.2} | {:>5.2} {:>5.2} {:>5.2} {:>5.2}",
                variant.name(),
                poll,
                l.p50,
                l.p90,
                l.p99,
                l.max,
                r.p50,
                r.p90,
                r.p99,
                r.max
            );
            sums.push((l, r));
        }
        let grace = results.first().map_or(1.5, |r| r.3);
        if let [(bl, br), (nl, nr)] = &sums[..] {
            println!(
                "ratio before / now: (a) p50 {:.2}x, p99 {:.2}x; (b) p50 {:.2}x, p99 {:.2}x; beyond the grace (a) p50 {:.2}x",
                bl.p50 / nl.p50,
                bl.p99 / nl.p99,
                br.p50 / nr.p50,
                br.p99 / nr.p99,
                (bl.p50 - grace) / (nl.p50 - grace),
            );
        }
    }
}
