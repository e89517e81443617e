//! Failover with the real processes: the local chain, `gpumesh orchestrator run`, and `gpumesh
//! worker run` daemons (CPU workers) running examples/hello in containers through the engine
//! `DOCKER_HOST` names (`eval "$(scripts/services.sh)"` starts Podman's). One long job runs; the
//! bench SIGKILLs the daemon serving it `--kills` times. Before each kill a fresh supplier's
//! daemon joins as the spare (a killed worker is slashed each time, so the spares are new
//! workers rather than the dead ones back).
//!
//! Measured per kill, from the dead worker's last heartbeat (when the service reported the
//! worker down, less the silence it measured then), on the buyer's signed feed:
//! - `confirmed`: the replacement lease confirmed on chain (`lease_started`; with the service's
//!   one transaction: final receipt, offline close with the slash to the buyer, the spare's
//!   assign);
//! - `first log`: the replacement job's first line of output reaching the buyer's signed feed
//!   (the container started on the spare and printed).
//!
//! The same run measures the service's previous, sequential failover path (close alone, then
//! a placement round, then assign) over `--baseline-kills` kills on a fresh market, and prints
//! the ratios.
//!
//! `eval "$(scripts/services.sh)" && cargo bench -p gpumesh-cli --bench failover_daemons -- --kills 20`

#[allow(dead_code)]
#[path = "../tests/e2e/market.rs"]
mod market;
#[allow(dead_code)]
#[path = "../tests/e2e/net.rs"]
mod net;
#[allow(dead_code)]
#[path = "../tests/e2e/procs.rs"]
mod procs;

use gpumesh_client::{Signer, cluster};
use market::{Market, Supplier};
use procs::Proc;
use serde_json::Value;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

struct Args {
    kills: usize,
    baseline_kills: usize,
}

fn args() -> Args {
    let mut a = Args {
        kills: 20,
        baseline_kills: 5,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let value = argv.get(i + 1).cloned().unwrap_or_default();
        match argv[i].as_str() {
            "--kills" => a.kills = value.parse().expect("--kills N"),
            "--baseline-kills" => a.baseline_kills = value.parse().expect("--baseline-kills N"),
            // What `cargo bench` passes to every bench binary.
            "--bench" => {
                i += 1;
                continue;
            }
            other => panic!("unknown argument {other}: use --kills N --baseline-kills N"),
        }
        i += 2;
    }
    a
}

fn cpu_model() -> String {
    gpumesh_protocol::kernels::cpu_model().unwrap_or_else(|| "unknown CPU".into())
}

/// A job that prints a line a second for far longer than the bench runs.
fn long_spec(m: &Market) -> PathBuf {
    let path = m.net.path("long.toml");
    std::fs::write(
        &path,
        format!(
            "image = \"{}\"\ngpus = 1\nresults = [\"hello.txt\"]\nmax_duration_s = 3000\nmillicpus = 250\nmemory_mib = 64\n[env]\nSTEPS = \"3000\"\n",
            gpumesh_worker::examples::HELLO_IMAGE
        ),
    )
    .unwrap();
    path
}

/// The buyer's signed feed of an order (its events and its job's output), each event with the
/// moment it arrived.
fn feed(m: &Market, order: &str) -> mpsc::Receiver<(Instant, Value)> {
    let key = cluster::read_keypair(&m.buyer).unwrap();
    let order_key = gpumesh_client::Pubkey::from_str(order).unwrap();
    let unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let signature = key.sign_message(&gpumesh_protocol::jobspec::logs_message(
        &order_key.to_bytes(),
        unix_ms,
    ));
    let url = format!(
        "{}/v1/feed?order={order}&logs={order}&unix_ms={unix_ms}&signature={signature}",
        m.service.url.replace("http://", "ws://")
    );
    let (mut ws, _) = tungstenite::connect(url.as_str()).expect("the service's feed");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        while let Ok(message) = ws.read() {
            if let tungstenite::Message::Text(text) = message
                && let Ok(v) = serde_json::from_str::<Value>(&text)
                && tx.send((Instant::now(), v)).is_err()
            {
                break;
            }
        }
    });
    rx
}

struct Kill {
    confirmed: Duration,
    first_log: Duration,
}

/// Runs `kills` failovers on a fresh market whose service has `service_extra` in its config.
fn measure(service_extra: &str, kills: usize, label: &str) -> Vec<Kill> {
    let m = Market::start_with(service_extra, None);
    let mut suppliers: Vec<Supplier> = vec![];
    let mut daemons: Vec<Option<Proc>> = vec![];
    for i in 0..2 {
        let s = m.supplier(&format!("w{i}"));
        daemons.push(Some(m.daemon(&s)));
        suppliers.push(s);
    }
    let order = m.order(&long_spec(&m));
    let events = feed(&m, &order);
    let mut out = vec![];
    let mut serving = loop {
        let page = m.order_page(&order);
        if let Some(w) = page["leases"]
            .as_array()
            .and_then(|ls| ls.iter().find(|l| l["job"] == "running"))
            .and_then(|l| l["worker"].as_str())
        {
            break w.to_string();
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    for k in 0..kills {
        // A spare for this kill, if the last one took the job.
        let idle = suppliers
            .iter()
            .zip(&daemons)
            .filter(|(s, d)| d.is_some() && s.worker != serving)
            .count();
        if idle == 0 {
            let s = m.supplier(&format!("w{}", suppliers.len()));
            daemons.push(Some(m.daemon(&s)));
            suppliers.push(s);
        }
        let victim = suppliers
            .iter()
            .position(|s| s.worker == serving)
            .expect("the serving worker is one of ours");
        // Let the job print on its worker, then forget what came before.
        std::thread::sleep(Duration::from_millis(1_500));
        while events.try_recv().is_ok() {}
        drop(daemons[victim].take()); // SIGKILL
        let deadline = Instant::now() + Duration::from_secs(60);
        // The dead worker's last heartbeat, on this clock: when the service reported it down,
        // less the silence it measured at that moment.
        let mut last_beat: Option<(Instant, String)> = None;
        let mut started: Option<Instant> = None;
        let mut first_log: Option<Instant> = None;
        while first_log.is_none() || started.is_none() || last_beat.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let (at, e) = events
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("kill {k}: no failover within a minute"));
            match e["type"].as_str() {
                Some("worker_down") if e["worker"] == serving.as_str() => {
                    let silent = Duration::from_millis(e["silent_ms"].as_u64().unwrap_or(0));
                    let dead = e["lease"].as_str().unwrap_or_default().to_string();
                    last_beat = Some((at - silent, dead));
                }
                // The replacement lease, confirmed (StartJob goes out with this event).
                Some("lease_started") if started.is_none() => started = Some(at),
                // The first output of another lease of the order: the replacement's job.
                Some("job_log") if first_log.is_none() => {
                    if let Some((_, dead)) = &last_beat
                        && e["lease"].as_str() != Some(dead.as_str())
                    {
                        first_log = Some(at);
                    }
                }
                _ => {}
            }
        }
        let (Some((beat, _)), Some(started), Some(logged)) = (last_beat, started, first_log) else {
            unreachable!("the loop ends with all three");
        };
        let confirmed = started.saturating_duration_since(beat);
        let first_log = logged.saturating_duration_since(beat);
        eprintln!(
            "{label} kill {:>2}: confirmed {:>5} ms, first log {:>5} ms",
            k + 1,
            confirmed.as_millis(),
            first_log.as_millis()
        );
        out.push(Kill {
            confirmed,
            first_log,
        });
        // The dead machine's container is removed as its returning daemon would.
        remove_containers(&suppliers[victim].worker);
        serving = loop {
            let page = m.order_page(&order);
            if let Some(w) = page["leases"]
                .as_array()
                .and_then(|ls| {
                    ls.iter()
                        .find(|l| l["job"] == "running" && l["worker"] != serving.as_str())
                })
                .and_then(|l| l["worker"].as_str())
            {
                break w.to_string();
            }
            std::thread::sleep(Duration::from_millis(50));
        };
    }
    for d in daemons.into_iter().flatten() {
        let _ = d.terminate();
    }
    // A stopped daemon leaves its job's container running (the next start picks it up): the
    // bench's are removed, so that no job outlives it.
    for s in &suppliers {
        remove_containers(&s.worker);
    }
    let Market { service, .. } = m;
    let _ = service.terminate();
    out
}

/// Force-removes every container of `worker` (running or not).
fn remove_containers(worker: &str) {
    let docker = market::engine();
    for name in market::containers_of(&docker, worker) {
        market::block_on(async {
            let _ = docker
                .remove_container(
                    name.trim_start_matches('/'),
                    Some(bollard::query_parameters::RemoveContainerOptions {
                        force: true,
                        ..Default::default()
                    }),
                )
                .await;
        });
    }
}

fn percentile(mut v: Vec<Duration>, p: f64) -> Duration {
    v.sort();
    let i = ((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1;
    v[i]
}

fn summary(label: &str, kills: &[Kill]) -> [Duration; 4] {
    let c: Vec<Duration> = kills.iter().map(|k| k.confirmed).collect();
    let l: Vec<Duration> = kills.iter().map(|k| k.first_log).collect();
    let r = [
        percentile(c.clone(), 0.5),
        percentile(c, 0.99),
        percentile(l.clone(), 0.5),
        percentile(l, 0.99),
    ];
    println!(
        "{label:<28} kills {:>3}  confirmed p50 {:>5} ms  p99 {:>5} ms   first log p50 {:>5} ms  p99 {:>5} ms",
        kills.len(),
        r[0].as_millis(),
        r[1].as_millis(),
        r[2].as_millis(),
        r[3].as_millis()
    );
    r
}

fn main() {
    let a = args();
    println!(
        "failover with real daemons: {} ({} threads); heartbeat 200 ms, grace 1,500 ms, receipts every 1 s; {} kills one-tx, {} kills sequential baseline; debug or release as cargo built this bench",
        cpu_model(),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        a.kills,
        a.baseline_kills
    );
    let now = measure("", a.kills, "one-tx");
    let before = if a.baseline_kills > 0 {
        measure(
            "sequential_failover = true\n",
            a.baseline_kills,
            "sequential",
        )
    } else {
        vec![]
    };
    let n = summary("one-tx (the service)", &now);
    if !before.is_empty() {
        let b = summary("sequential (baseline)", &before);
        println!(
            "ratio sequential / one-tx: confirmed p50 {:.2}x p99 {:.2}x, first log p50 {:.2}x p99 {:.2}x",
            b[0].as_secs_f64() / n[0].as_secs_f64(),
            b[1].as_secs_f64() / n[1].as_secs_f64(),
            b[2].as_secs_f64() / n[2].as_secs_f64(),
            b[3].as_secs_f64() / n[3].as_secs_f64()
        );
    }
}
