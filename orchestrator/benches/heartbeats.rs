//! Heartbeats one orchestrator sustains. The service runs in this process on a free port, its
//! market on the in-process chain (gpumesh-svm: N workers registered and staked, N orders, N
//! leases, all through the real program; the chain is not on the heartbeat path, and N leases
//! set up in seconds). A second process (this binary with `--generate`) opens N WebSocket
//! connections to the real gateway, each a worker daemon proving its node key, getting its
//! lease back in `Ready`, and sending a heartbeat every `heartbeat_ms` (500: 2 Hz) with real
//! telemetry (varying, one GPU) and the lease's real hash-chain link, which the service
//! recomputes and checks.
//!
//! Measured per N over a window after a warm-up:
//! - heartbeats applied per second (the service's own counter) against those offered;
//! - processing latency: after every `--sample-every`th heartbeat the daemon sends a WebSocket
//!   ping frame; the gateway reads a connection's frames in order and its pong goes out when it
//!   reads the next frame, so the round trip covers the heartbeat being applied (an upper bound:
//!   it adds the loopback both ways);
//! - the service process's CPU time per heartbeat (utime + stime), hence heartbeats per core
//!   second, and the generator's;
//! - memory: the service's RSS growth per connected worker (sessions, sockets, buffers), and
//!   per tracked lease before any worker connects.
//!
//! `cargo bench -p gpumesh-orchestrator --bench heartbeats -- --workers 1000,5000,10000`

use futures_util::{SinkExt, StreamExt};
use gpumesh_client::chain::Chain;
use gpumesh_client::program::instructions::{CreateOrderArgs, RegisterWorkerArgs};
use gpumesh_client::program::state::{
    HardwareClaim, MarketParams, OrderMode, OrderRequirements, OrderTerms,
};
use gpumesh_client::{Keypair, Pubkey, Signer, ix, receipt};
use gpumesh_orchestrator::service::store::Store;
use gpumesh_orchestrator::service::{self, Config, Parts};
use gpumesh_protocol::wire::{
    self, GpuTelemetry, HardwareReport, Heartbeat, LeaseBeat, Telemetry, ToOrchestrator, ToWorker,
    WIRE_VERSION,
};
use gpumesh_protocol::{GpuClass, LeaseService};
use gpumesh_svm::SvmChain;
use gpumesh_svm::fixtures::LocalMarket;
use std::io::{BufRead, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

const CLASS: u8 = 9; // h100
const REGION: u8 = 5;
const PRICE: u64 = 1_000;
const HEARTBEAT_MS: u32 = 500;

fn cpu_model() -> String {
    gpumesh_protocol::kernels::cpu_model().unwrap_or_else(|| "unknown CPU".into())
}

/// CPU seconds (user + system) a process used so far (`/proc/<pid>/stat`, 100 ticks a second).
fn cpu_seconds(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // The command name may hold spaces: fields count from after its closing parenthesis.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (ticks(11) + ticks(12)) as f64 / 100.0
}

/// Resident memory of this process, bytes.
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn open_files_limit() -> usize {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(1024)
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    f64::from(sorted[rank.clamp(1, sorted.len()) - 1]) / 1_000.0
}

struct Args {
    workers: Vec<usize>,
    warmup_s: u64,
    window_s: u64,
    sample_every: u64,
}

fn flag(argv: &[String], name: &str) -> Option<String> {
    argv.iter()
        .position(|a| a == name)
        .and_then(|i| argv.get(i + 1).cloned())
}

// ----- the market and the service --------------------------------------------------------------

/// N workers, each with one GPU leased to its own order, on the in-process chain; the job spec of
/// every order in a fresh store. Returns the chain, the market, and per worker its address and
/// node key.
async fn market(n: usize, store_url: &str) -> (SvmChain, LocalMarket, Vec<(Pubkey, Keypair)>) {
    let mut chain = SvmChain::new();
    let m = LocalMarket::create(
        &mut chain,
        MarketParams {
            min_stake_per_gpu: 100,
            ..MarketParams::default()
        },
        6,
    )
    .expect("market");
    let buyer = m.funded_user(&mut chain, 1_000_000_000).expect("buyer");
    let buyer_token = m.token_account(&buyer.pubkey());
    let spec = "image = \"localhost/gpumesh-hello:latest\"\n";
    let spec_hash = gpumesh_protocol::job_spec_hash(spec.as_bytes());
    let store = Store::open(store_url).await.expect("store");
    let a = m.addrs;
    let mut workers = Vec::with_capacity(n);
    for i in 0..n {
        let owner = m.funded_user(&mut chain, 1_000).expect("owner");
        let node = Keypair::new();
        let token = m.token_account(&owner.pubkey());
        chain
            .send(
                &[
                    ix::register_worker(
                        &a,
                        &owner.pubkey(),
                        RegisterWorkerArgs {
                            node_key: node.pubkey(),
                            hardware: HardwareClaim {
                                gpu_class: CLASS,
                                gpu_count: 1,
                                vram_mib: 81_920,
                                bandwidth_gbps: 3_350,
                                region: REGION,
                            },
                            price_per_gpu_second: PRICE,
                        },
                    ),
                    ix::stake(&a, &owner.pubkey(), &token, 1_000),
                ],
                &owner,
                &[],
            )
            .expect("register and stake");
        let worker = a.worker(&owner.pubkey());
        let order_id = i as u64 + 1;
        chain
            .send(
                &[ix::create_order(
                    &a,
                    &buyer.pubkey(),
                    &buyer_token,
                    CreateOrderArgs {
                        order_id,
                        terms: OrderTerms {
                            requirements: OrderRequirements {
                                gpu_class: CLASS,
                                gpu_count: 1,
                                min_vram_mib: 40_000,
                                min_bandwidth_gbps: 1_000,
                                regions: 1 << REGION,
                            },
                            max_price_per_gpu_second: 10 * PRICE,
                            duration: 3_600,
                            mode: OrderMode::Spot,
                            job_spec_hash: spec_hash,
                        },
                        deposit: 100_000,
                    },
                )],
                &buyer,
                &[],
            )
            .expect("create order");
        let order = a.order(&buyer.pubkey(), order_id);
        chain
            .send(
                &[ix::assign(&a, &m.orchestrator.pubkey(), &order, &worker, 1)],
                &m.orchestrator,
                &[],
            )
            .expect("assign");
        store
            .put_spec(
                &order.to_string(),
                &buyer.pubkey().to_string(),
                spec,
                &spec_hash,
            )
            .await
            .expect("spec");
        workers.push((worker, node));
    }
    (chain, m, workers)
}

fn config(m: &LocalMarket, store: &str) -> Config {
    let mut cfg: Config = toml::from_str(&format!(
        "rpc_url = \"http://127.0.0.1:9\"\nmarket = \"{}\"\nkeypair = \"unused.json\"",
        m.addrs.market
    ))
    .expect("defaults");
    // Nothing follows this chain over a websocket (the in-process chain has none): the service
    // reads it directly, which costs the heartbeat path nothing.
    cfg.ws_url = Some("ws://127.0.0.1:9".into());
    cfg.listen = "127.0.0.1:0".into();
    cfg.store = store.into();
    cfg.heartbeat_ms = HEARTBEAT_MS;
    // Only heartbeats in the window: no receipts, settlements, placement rounds or challenges,
    // and a generator that falls behind is measured, not declared down.
    cfg.grace_ms = 3_600_000;
    cfg.receipt_every_s = 3_600;
    cfg.settle_every_s = 3_600;
    cfg.placement_every_ms = 3_600_000;
    cfg.resync_every_s = 3_600;
    cfg.challenge_every_s = 3_600;
    cfg
}

struct Step {
    n: usize,
    offered: f64,
    applied: f64,
    service_cpu: f64,
    generator_cpu: f64,
    window: f64,
    latency_ms: [f64; 4],
    samples: usize,
    rss_per_worker: f64,
    rss_per_lease: f64,
    setup_s: f64,
}

async fn metric(addr: std::net::SocketAddr, name: &str) -> f64 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return 0.0;
    };
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if s.write_all(request.as_bytes()).await.is_err() {
        return 0.0;
    }
    let mut body = String::new();
    let _ = s.read_to_string(&mut body).await;
    body.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(' ')?;
            (k == name).then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0.0)
}

async fn step(n: usize, a: &Args) -> Step {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = format!("sqlite://{}?mode=rwc", dir.path().join("hb.db").display());
    let started = Instant::now();
    let (chain, m, workers) = market(n, &store).await;
    let setup_s = started.elapsed().as_secs_f64();
    let keys = dir.path().join("workers.txt");
    {
        let mut f = std::fs::File::create(&keys).expect("keys");
        for (w, node) in &workers {
            let secret = gpumesh_protocol::hex(node.secret_bytes());
            writeln!(f, "{w} {secret}").expect("write keys");
        }
    }
    let rss_before = rss_bytes();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("listen");
    let addr = listener.local_addr().expect("addr");
    let cfg = config(&m, &store);
    let parts = Parts {
        chain: Box::new(chain),
        keypair: m.orchestrator.insecure_clone(),
        failover_chain: None,
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let service = tokio::spawn(service::run(cfg, parts, listener, async move {
        let _ = stopped.await;
    }));
    while metric(addr, "gpumesh_orchestrator_leases").await < n as f64 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_leases = rss_bytes();

    let me = std::env::current_exe().expect("this binary");
    let mut child = std::process::Command::new(me)
        .args([
            "--generate",
            &format!("ws://{addr}/v1/worker"),
            &keys.display().to_string(),
            &a.warmup_s.to_string(),
            &a.window_s.to_string(),
            &a.sample_every.to_string(),
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("generator");
    let child_pid = child.id().to_string();
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
    let stdout = child.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut window = None;
    let mut result = None;
    while let Some(line) = lines.recv().await {
        if line == "window" {
            window = Some((
                Instant::now(),
                metric(addr, "gpumesh_orchestrator_heartbeats_total").await,
                cpu_seconds("self"),
                cpu_seconds(&child_pid),
            ));
        } else if let Some(stats) = line.strip_prefix("stats ") {
            let Some((at, beats, cpu, gen_cpu)) = window else {
                panic!("stats before the window");
            };
            let elapsed = at.elapsed().as_secs_f64();
            let applied = metric(addr, "gpumesh_orchestrator_heartbeats_total").await - beats;
            let service_cpu = cpu_seconds("self") - cpu;
            let generator_cpu = cpu_seconds(&child_pid) - gen_cpu;
            let rss_now = rss_bytes();
            let mut lat: Vec<u32> = stats.split(',').filter_map(|s| s.parse().ok()).collect();
            lat.sort_unstable();
            result = Some(Step {
                n,
                offered: n as f64 * 1_000.0 / f64::from(HEARTBEAT_MS),
                applied: applied / elapsed,
                service_cpu,
                generator_cpu,
                window: elapsed,
                latency_ms: [
                    percentile(&lat, 50.0),
                    percentile(&lat, 90.0),
                    percentile(&lat, 99.0),
                    percentile(&lat, 100.0),
                ],
                samples: lat.len(),
                rss_per_worker: rss_now.saturating_sub(rss_leases) as f64 / n as f64,
                rss_per_lease: rss_leases.saturating_sub(rss_before) as f64 / n as f64,
                setup_s,
            });
            break;
        } else if let Some(e) = line.strip_prefix("error ") {
            panic!("generator: {e}");
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = stop.send(());
    let _ = service.await;
    result.expect("the generator reported")
}

// ----- the generator: N worker daemons in one process -------------------------------------------

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

struct Shared {
    connected: AtomicU64,
    measuring: AtomicBool,
    failed: AtomicU64,
    latencies_us: std::sync::Mutex<Vec<u32>>,
}

async fn daemon(
    url: String,
    worker: Pubkey,
    node: gpumesh_protocol::SigningKey,
    offset: Duration,
    sample_every: u64,
    shared: Arc<Shared>,
    connecting: Arc<tokio::sync::Semaphore>,
) {
    let permit = connecting.acquire().await;
    let Ok((mut ws, _)) = tokio_tungstenite::connect_async(&url).await else {
        shared.failed.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let Some(Ok(Message::Text(text))) = ws.next().await else {
        shared.failed.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let Ok(ToWorker::Welcome {
        nonce, program_id, ..
    }) = wire::decode::<ToWorker>(&text)
    else {
        shared.failed.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let key = receipt::key(&worker);
    let hello = ToOrchestrator::Hello {
        version: WIRE_VERSION,
        node_key: gpumesh_protocol::Key(node.verifying_key().to_bytes()),
        worker: key,
        hardware: HardwareReport {
            class: GpuClass::H100,
            gpus: vec![],
            measured_bandwidth_gbps: 3_000.0,
            backend: "simulated".into(),
        },
        signature: wire::sign_auth(&node, &program_id, &key, &nonce),
        agent: "heartbeat bench".into(),
    };
    if !send(&mut ws, &hello).await {
        shared.failed.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let mut leases = vec![];
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => match wire::decode::<ToWorker>(&text) {
                Ok(ToWorker::Ready { leases: l, .. }) => {
                    leases = l
                        .into_iter()
                        .map(|a| {
                            (
                                a.lease,
                                LeaseService::new(program_id, a.lease.lease, a.lease.nonce),
                            )
                        })
                        .collect::<Vec<_>>();
                    break;
                }
                Ok(ToWorker::Error { message, .. }) => {
                    println!("error {message}");
                    return;
                }
                _ => {}
            },
            _ => {
                shared.failed.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
    }
    drop(permit);
    shared.connected.fetch_add(1, Ordering::Relaxed);
    let start = Instant::now();
    let mut beat = tokio::time::interval_at(
        tokio::time::Instant::now() + offset,
        Duration::from_millis(u64::from(HEARTBEAT_MS)),
    );
    let mut seq = 0u64;
    let mut ping_sent: Option<(u64, Instant)> = None;
    loop {
        tokio::select! {
            incoming = ws.next() => {
                match incoming {
                    Some(Ok(Message::Text(text))) => {
                        if let Ok(ToWorker::Ping { id, .. }) = wire::decode::<ToWorker>(&text)
                            && !send(&mut ws, &ToOrchestrator::Pong { id }).await
                        {
                            return;
                        }
                    }
                    Some(Ok(Message::Pong(data))) => {
                        if let Some((id, at)) = ping_sent.take()
                            && data.as_ref() == id.to_le_bytes()
                            && shared.measuring.load(Ordering::Relaxed)
                        {
                            let us = at.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
                            shared.latencies_us.lock().unwrap_or_else(|e| e.into_inner()).push(us);
                        }
                    }
                    Some(Ok(_)) => {}
                    _ => return,
                }
            }
            _ = beat.tick() => {
                seq += 1;
                let now = now_ms();
                let telemetry = Telemetry {
                    gpus: vec![GpuTelemetry {
                        index: 0,
                        temperature_c: 60.0 + (seq % 20) as f32,
                        utilization_pct: (seq % 100) as f32,
                        memory_used_mib: 40_000 + (seq % 1_000) as u32,
                        memory_total_mib: 81_920,
                        power_w: 500.0 + (seq % 50) as f32,
                        sm_clock_mhz: 1_980,
                        memory_clock_mhz: 2_619,
                    }],
                    cpu_pct: (seq % 100) as f32,
                    memory_used_mib: 100_000,
                    memory_total_mib: 1_000_000,
                };
                let digest = telemetry.digest_bytes();
                let served = start.elapsed().as_secs();
                let mut beats = vec![];
                for (id, service) in leases.iter_mut() {
                    if let Ok(head) = service.heartbeat(now, served, &digest) {
                        beats.push(LeaseBeat { lease: *id, seq: service.seq(), served_seconds: served, head });
                    }
                }
                let hb = ToOrchestrator::Heartbeat(Heartbeat { seq, unix_ms: now, telemetry, leases: beats, rtt_us: Some(300) });
                if !send(&mut ws, &hb).await {
                    return;
                }
                if seq.is_multiple_of(sample_every) && ping_sent.is_none() {
                    ping_sent = Some((seq, Instant::now()));
                    if ws.send(Message::Ping(seq.to_le_bytes().to_vec().into())).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

async fn send(ws: &mut Ws, m: &ToOrchestrator) -> bool {
    ws.send(Message::Text(wire::encode(m).into())).await.is_ok()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn generate(argv: &[String]) {
    let url = argv[0].clone();
    let keys = std::fs::read_to_string(&argv[1]).expect("keys file");
    let warmup: u64 = argv[2].parse().expect("warm-up seconds");
    let window: u64 = argv[3].parse().expect("window seconds");
    let sample_every: u64 = argv[4].parse().expect("sample every");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let shared = Arc::new(Shared {
            connected: AtomicU64::new(0),
            measuring: AtomicBool::new(false),
            failed: AtomicU64::new(0),
            latencies_us: std::sync::Mutex::new(vec![]),
        });
        let connecting = Arc::new(tokio::sync::Semaphore::new(64));
        let lines: Vec<&str> = keys.lines().collect();
        let n = lines.len();
        for (i, line) in lines.iter().enumerate() {
            let mut parts = line.split_whitespace();
            let worker: Pubkey = parts.next().and_then(|w| w.parse().ok()).expect("worker");
            let secret: Vec<u8> = parts
                .next()
                .map(|h| {
                    (0..h.len())
                        .step_by(2)
                        .filter_map(|j| u8::from_str_radix(&h[j..j + 2], 16).ok())
                        .collect()
                })
                .expect("node key");
            let secret: [u8; 32] = secret.try_into().expect("32-byte node key");
            let node = gpumesh_protocol::SigningKey::from_bytes(&secret);
            // Heartbeats spread evenly over the period.
            let offset =
                Duration::from_micros((i as u64 * u64::from(HEARTBEAT_MS) * 1_000) / n as u64);
            tokio::spawn(daemon(
                url.clone(),
                worker,
                node,
                offset,
                sample_every,
                shared.clone(),
                connecting.clone(),
            ));
        }
        while shared.connected.load(Ordering::Relaxed) + shared.failed.load(Ordering::Relaxed)
            < n as u64
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let failed = shared.failed.load(Ordering::Relaxed);
        if failed > 0 {
            println!("error {failed} of {n} daemons could not connect");
            return;
        }
        tokio::time::sleep(Duration::from_secs(warmup)).await;
        shared.measuring.store(true, Ordering::Relaxed);
        println!("window");
        let _ = std::io::stdout().flush();
        tokio::time::sleep(Duration::from_secs(window)).await;
        shared.measuring.store(false, Ordering::Relaxed);
        let lat = std::mem::take(
            &mut *shared
                .latencies_us
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        let text: Vec<String> = lat.iter().map(u32::to_string).collect();
        println!("stats {}", text.join(","));
        let _ = std::io::stdout().flush();
        // Keep beating until the parent has read the counters and stops this process.
        tokio::time::sleep(Duration::from_secs(3_600)).await;
    });
}

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = argv.iter().position(|a| a == "--generate") {
        generate(&argv[i + 1..]);
        return;
    }
    let limit = open_files_limit();
    let mut a = Args {
        workers: vec![1_000, 5_000, 10_000],
        warmup_s: 5,
        window_s: 20,
        sample_every: 10,
    };
    if let Some(w) = flag(&argv, "--workers") {
        a.workers = w
            .split(',')
            .map(|s| s.trim().parse().expect("--workers A,B"))
            .collect();
    }
    if let Some(s) = flag(&argv, "--window") {
        a.window_s = s.parse().expect("--window seconds");
    }
    if let Some(s) = flag(&argv, "--warmup") {
        a.warmup_s = s.parse().expect("--warmup seconds");
    }
    if let Some(s) = flag(&argv, "--sample-every") {
        a.sample_every = s.parse::<u64>().expect("--sample-every N").max(1);
    }
    println!("heartbeats one orchestrator sustains");
    println!(
        "cpu: {} ({} cores, shared by the service and the generator process)",
        cpu_model(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "parameters: heartbeat every {HEARTBEAT_MS} ms (2 Hz), 1 lease and 1 GPU of telemetry per worker, warm-up {} s, window {} s, latency sampled every {}th heartbeat, open files limit {limit}",
        a.warmup_s, a.window_s, a.sample_every
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "{:>7} {:>9} {:>9} {:>8} {:>10} {:>9} | {:>6} {:>6} {:>6} {:>6} {:>7} | {:>8} {:>8} {:>7}",
        "workers",
        "offered/s",
        "applied/s",
        "svc cpu",
        "µs cpu/hb",
        "hb/core·s",
        "p50 ms",
        "p90",
        "p99",
        "max",
        "samples",
        "B/worker",
        "B/lease",
        "gen cpu"
    );
    for &n in &a.workers {
        if n + 64 > limit {
            println!("{n:>7} skipped: over the open files limit ({limit})");
            continue;
        }
        let s = runtime.block_on(step(n, &a));
        let cpu_per_hb = s.service_cpu / (s.applied * s.window);
        println!(
            "{:>7} {:>9.0} {:>9.0} {:>7.2}c {:>10.2} {:>9.0} | {:>6.2} {:>6.2} {:>6.2} {:>6.2} {:>7} | {:>8.0} {:>8.0} {:>6.2}c",
            s.n,
            s.offered,
            s.applied,
            s.service_cpu / s.window,
            cpu_per_hb * 1e6,
            1.0 / cpu_per_hb,
            s.latency_ms[0],
            s.latency_ms[1],
            s.latency_ms[2],
            s.latency_ms[3],
            s.samples,
            s.rss_per_worker,
            s.rss_per_lease,
            s.generator_cpu / s.window,
        );
        eprintln!(
            "(set up {} leases on the in-process chain in {:.1} s)",
            s.n, s.setup_s
        );
    }
}
