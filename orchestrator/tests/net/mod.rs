//! For the service's tests: a local chain node with a market, the orchestrator service started on
//! a free port with its own store, workers simulated in process over the real wire protocol (a
//! WebSocket, real heartbeat chains and signed receipts; the real daemon lives in the worker
//! crate), and a small HTTP client for the API.

#![allow(dead_code)]

use futures_util::{SinkExt, StreamExt};
use gpumesh_client::program::instructions::{CreateOrderArgs, RegisterWorkerArgs};
use gpumesh_client::program::state::{
    HardwareClaim, Market, MarketParams, OrderMode, OrderRequirements, OrderTerms,
};
use gpumesh_client::{Chain, ChainExt, Keypair, Pubkey, RpcChain, Signer, ix, receipt, token};
use gpumesh_localnet::{Localnet, LocalnetConfig};
use gpumesh_orchestrator::service::{self, Config, Parts};
use gpumesh_protocol::merkle::MerkleTree;
use gpumesh_protocol::wire::{
    self, HardwareReport, Heartbeat, LeaseBeat, LeaseId, Telemetry, ToOrchestrator, ToWorker,
    WIRE_VERSION,
};
use gpumesh_protocol::{GpuClass, LeaseService};
use gpumesh_svm::fixtures::LocalMarket;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

pub const PRICE: u64 = 1_000;
pub const CLASS: u8 = 9; // h100
pub const REGION: u8 = 5;

pub fn spec_text(tag: &str) -> String {
    format!(
        "image = \"localhost/gpumesh-hello:latest\"\ncommand = [\"sh\", \"-c\", \"echo {tag}\"]\n"
    )
}

pub struct Net {
    pub node: Localnet,
    pub url: String,
    pub chain: RpcChain,
    pub m: LocalMarket,
    pub buyer: Keypair,
    pub dir: tempfile::TempDir,
}

impl Net {
    pub fn start() -> Self {
        Self::start_with(100)
    }

    /// [`Net::start`] from async code (the node's setup blocks).
    pub async fn start_async() -> Self {
        tokio::task::spawn_blocking(Net::start).await.expect("net")
    }

    /// A local node making a slot every `slot_time_ms`, with a market and a funded buyer.
    pub fn start_with(slot_time_ms: u64) -> Self {
        let node = Localnet::start(LocalnetConfig {
            slot_time_ms,
            ..LocalnetConfig::on_free_ports().expect("ports")
        })
        .expect("local chain");
        let url = node.rpc_url().to_string();
        let mut chain = RpcChain::new(url.clone());
        let m = LocalMarket::create(
            &mut chain,
            MarketParams {
                protocol_fee_bps: 250,
                min_stake_per_gpu: 100,
                fee_burn_bps: 0,
                ..MarketParams::default()
            },
            6,
        )
        .expect("market");
        let buyer = m.funded_user(&mut chain, 100_000_000).expect("buyer");
        Self {
            node,
            url,
            chain,
            m,
            buyer,
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// A registered, staked worker with `gpus` H100s at `price`; its owner and node key.
    pub fn worker(&mut self, gpus: u16, price: u64) -> (Pubkey, Keypair, Keypair) {
        let owner = self.m.funded_user(&mut self.chain, 10_000).expect("owner");
        let node = Keypair::new();
        let a = self.m.addrs;
        let token = self.m.token_account(&owner.pubkey());
        self.chain
            .send(
                &[
                    ix::register_worker(
                        &a,
                        &owner.pubkey(),
                        RegisterWorkerArgs {
                            node_key: node.pubkey(),
                            hardware: HardwareClaim {
                                gpu_class: CLASS,
                                gpu_count: gpus,
                                vram_mib: 81_920,
                                bandwidth_gbps: 3_350,
                                region: REGION,
                            },
                            price_per_gpu_second: price,
                        },
                    ),
                    ix::stake(&a, &owner.pubkey(), &token, 1_000),
                ],
                &owner,
                &[],
            )
            .expect("register and stake");
        (a.worker(&owner.pubkey()), owner, node)
    }

    /// An order for `gpus` H100s whose job spec is `spec`.
    pub fn order(&mut self, id: u64, gpus: u16, spec: &str, deposit: u64) -> Pubkey {
        let a = self.m.addrs;
        let buyer_token = self.m.token_account(&self.buyer.pubkey());
        self.chain
            .send(
                &[ix::create_order(
                    &a,
                    &self.buyer.pubkey(),
                    &buyer_token,
                    CreateOrderArgs {
                        order_id: id,
                        terms: OrderTerms {
                            requirements: OrderRequirements {
                                gpu_class: CLASS,
                                gpu_count: gpus,
                                min_vram_mib: 40_000,
                                min_bandwidth_gbps: 1_000,
                                regions: 1 << REGION,
                            },
                            max_price_per_gpu_second: 10 * PRICE,
                            duration: 3_600,
                            mode: OrderMode::Spot,
                            job_spec_hash: gpumesh_protocol::job_spec_hash(spec.as_bytes()),
                        },
                        deposit,
                    },
                )],
                &self.buyer,
                &[],
            )
            .expect("create order");
        a.order(&self.buyer.pubkey(), id)
    }

    pub fn config(&self, store: &str) -> Config {
        Config {
            rpc_url: self.url.clone(),
            ws_url: Some(self.node.ws_url().to_string()),
            market: self.m.addrs.market.to_string(),
            keypair: self.dir.path().join("unused.json"),
            listen: "127.0.0.1:0".into(),
            store: store.into(),
            heartbeat_ms: 200,
            grace_ms: 1_500,
            restart_grace_ms: 35_000,
            receipt_every_s: 1,
            settle_every_s: 2,
            placement_every_ms: 300,
            resync_every_s: 60,
            // The smallest challenge (n = 64), once at connect: the simulated workers compute
            // it exactly on the CPU.
            challenge_every_s: 3_600,
            challenge_target_ms: 0,
            challenge_rows: 8,
            spot_check_every_s: 3_600,
            fee_budget_lamports_per_gpu_hour: 0,
            runway_floor_s: 600,
            stop_grace_ms: 1_000,
            confirm_poll_ms: 25,
            checkpoint_storage_price_per_gib_hour: 0,
            sequential_failover: false,
        }
    }

    pub fn store_url(&self, name: &str) -> String {
        format!("sqlite://{}?mode=rwc", self.dir.path().join(name).display())
    }

    pub fn buyer_tokens(&self) -> u64 {
        self.chain
            .token_balance(&token::ata(&self.buyer.pubkey(), &self.m.addrs.mint))
            .expect("balance")
    }

    pub fn market(&self) -> Market {
        self.chain.fetch(&self.m.addrs.market).expect("market")
    }
}

/// A running service: its address and the handle that stops it.
pub struct Service {
    pub addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), service::ServiceError>>>,
}

impl Service {
    pub async fn start(net: &Net, store: &str) -> Self {
        Self::start_with(net, net.config(store)).await
    }

    pub async fn start_with(net: &Net, cfg: Config) -> Self {
        let rpc = || {
            Box::new(RpcChain::with_config(net.url.clone(), cfg.rpc_config()))
                as Box<dyn gpumesh_client::Chain + Send>
        };
        let parts = Parts {
            chain: rpc(),
            keypair: net.m.orchestrator.insecure_clone(),
            failover_chain: Some(rpc()),
        };
        Self::start_parts(cfg, parts).await
    }

    /// Runs the service with the chain connections and key given.
    pub async fn start_parts(cfg: Config, parts: Parts) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("listen");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            service::run(cfg, parts, listener, async move {
                let _ = stopped.await;
            })
            .await
        });
        Self {
            addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stops the service the way Ctrl-C does and waits for it to finish.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await
                .expect("join")
                .expect("the service stopped cleanly");
        }
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/v1/worker", self.addr)
    }
}

/// A metric's value from the service's `/metrics` (0 when it is not there yet).
pub async fn metric(addr: std::net::SocketAddr, name: &str) -> f64 {
    let (_, text) = http(addr, "GET", "/metrics", &[], "").await;
    text.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(' ')?;
            (k == name).then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0.0)
}

/// A TCP relay in front of an address that can be cut (every connection dropped, new ones
/// closed at once) and restored: a websocket that fails the way a network does.
pub struct Relay {
    pub addr: std::net::SocketAddr,
    cut: Arc<std::sync::atomic::AtomicBool>,
    epoch: Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    pub async fn start(upstream: std::net::SocketAddr) -> Relay {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("listen");
        let addr = listener.local_addr().expect("addr");
        let cut = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let epoch = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (c, e) = (cut.clone(), epoch.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if c.load(Ordering::SeqCst) {
                    continue;
                }
                let (c, e) = (c.clone(), e.clone());
                let born = e.load(Ordering::SeqCst);
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let copy = tokio::io::copy_bidirectional(&mut inbound, &mut outbound);
                    let watch = async {
                        while !c.load(Ordering::SeqCst) && e.load(Ordering::SeqCst) == born {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    };
                    tokio::select! {
                        _ = copy => {}
                        _ = watch => {}
                    }
                });
            }
        });
        Relay {
            addr,
            cut,
            epoch,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    pub fn cut(&self) {
        self.epoch.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.cut.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn restore(&self) {
        self.cut.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
        self.cut();
    }
}

/// A minimal HTTP/1.1 request; the status and the body.
pub async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &str,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.expect("read");
    let text = String::from_utf8_lossy(&response).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, body)
}

/// Decodes an HTTP/1.1 chunked body.
fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

/// Uploads an order's job spec, signed by `signer`.
pub async fn upload_spec(
    addr: std::net::SocketAddr,
    order: &Pubkey,
    spec: &str,
    signer: &Keypair,
) -> (u16, String) {
    use ed25519_dalek::Signer as _;
    let message = gpumesh_protocol::jobspec::upload_message(&order.to_bytes(), spec.as_bytes());
    let sig = receipt::signing_key(signer).sign(&message);
    let sig = gpumesh_protocol::Signature(sig.to_bytes()).to_string();
    http(
        addr,
        "PUT",
        &format!("/v1/orders/{order}/spec"),
        &[("x-gpumesh-signature", sig)],
        spec,
    )
    .await
}

/// The buyer's signature over `logs_message(order, unix_ms)` (base58).
pub fn logs_signature(order: &Pubkey, unix_ms: u64, signer: &Keypair) -> String {
    use ed25519_dalek::Signer as _;
    let message = gpumesh_protocol::jobspec::logs_message(&order.to_bytes(), unix_ms);
    let sig = receipt::signing_key(signer).sign(&message);
    gpumesh_protocol::Signature(sig.to_bytes()).to_string()
}

/// An order's job output, asked with `signer`'s signature dated `unix_ms`.
pub async fn signed_logs(
    addr: std::net::SocketAddr,
    order: &Pubkey,
    signer: &Keypair,
    unix_ms: u64,
) -> (u16, String) {
    http(
        addr,
        "GET",
        &format!("/v1/orders/{order}/logs"),
        &[
            (
                "x-gpumesh-signature",
                logs_signature(order, unix_ms, signer),
            ),
            ("x-gpumesh-unix-ms", unix_ms.to_string()),
        ],
        "",
    )
    .await
}

/// A subscriber of the live feed: every event it received, as JSON, with when it arrived.
pub struct FeedClient {
    pub events: Arc<Mutex<Vec<serde_json::Value>>>,
    pub arrived: Arc<Mutex<Vec<Instant>>>,
    task: tokio::task::JoinHandle<()>,
}

impl FeedClient {
    pub async fn connect(addr: std::net::SocketAddr, query: &str) -> Result<FeedClient, String> {
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/v1/feed{query}"))
            .await
            .map_err(|e| e.to_string())?;
        let events = Arc::new(Mutex::new(vec![]));
        let arrived = Arc::new(Mutex::new(vec![]));
        let (sink, times) = (events.clone(), arrived.clone());
        let task = tokio::spawn(async move {
            while let Some(Ok(message)) = ws.next().await {
                if let Message::Text(text) = message
                    && let Ok(v) = serde_json::from_str(&text)
                {
                    let mut events = sink.lock().expect("events");
                    events.push(v);
                    times.lock().expect("times").push(Instant::now());
                }
            }
        });
        Ok(FeedClient {
            events,
            arrived,
            task,
        })
    }

    /// The events of a type with when each arrived, from the `from`-th event received on.
    pub fn of_type_since(&self, kind: &str, from: usize) -> Vec<(Instant, serde_json::Value)> {
        let events = self.events.lock().expect("events");
        let times = self.arrived.lock().expect("times");
        events
            .iter()
            .zip(times.iter())
            .skip(from)
            .filter(|(e, _)| e["type"] == kind)
            .map(|(e, t)| (*t, e.clone()))
            .collect()
    }

    /// How many events arrived so far.
    pub fn len(&self) -> usize {
        self.events.lock().expect("events").len()
    }

    /// The types of the events received so far, in order.
    pub fn types(&self) -> Vec<String> {
        self.events
            .lock()
            .expect("events")
            .iter()
            .filter_map(|e| e["type"].as_str().map(str::to_string))
            .collect()
    }

    pub fn of_type(&self, kind: &str) -> Vec<serde_json::Value> {
        self.events
            .lock()
            .expect("events")
            .iter()
            .filter(|e| e["type"] == kind)
            .cloned()
            .collect()
    }
}

impl Drop for FeedClient {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What a simulated worker saw and did, for the test to look at.
#[derive(Default)]
pub struct Seen {
    pub started: Vec<(LeaseId, Instant)>,
    pub stopped: Vec<(LeaseId, wire::StopReason)>,
    pub errors: Vec<(wire::ErrorCode, String)>,
    pub acks: Vec<(LeaseId, u64)>,
    pub last_heartbeat: Option<Instant>,
    pub ready: usize,
    pub challenges: usize,
}

/// A worker daemon simulated in process: it speaks the wire protocol, "runs" each job for
/// `job_seconds` of wall time (0: until stopped), heartbeats with real hash chains and signs
/// real receipts from them.
pub struct SimWorker {
    pub worker: Pubkey,
    pub node: Keypair,
    pub seen: Arc<Mutex<Seen>>,
    task: tokio::task::JoinHandle<()>,
}

/// How a simulated worker answers compute challenges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Computes the product and opens the rows asked.
    Honest,
    /// Commits to a product with one wrong value in every row (a card faking the work).
    WrongProduct,
    /// Never answers.
    Silent,
}

impl SimWorker {
    pub fn spawn(url: String, worker: Pubkey, node: Keypair, job_seconds: u64) -> Self {
        Self::spawn_answering(url, worker, node, job_seconds, Answer::Honest)
    }

    pub fn spawn_answering(
        url: String,
        worker: Pubkey,
        node: Keypair,
        job_seconds: u64,
        answer: Answer,
    ) -> Self {
        Self::spawn_full(url, worker, node, job_seconds, answer, 0)
    }

    /// A worker whose heartbeats carry `gpus` GPUs' telemetry, changing with every beat
    /// (see [`sim_telemetry`]).
    pub fn spawn_with_gpus(
        url: String,
        worker: Pubkey,
        node: Keypair,
        job_seconds: u64,
        gpus: u16,
    ) -> Self {
        Self::spawn_full(url, worker, node, job_seconds, Answer::Honest, gpus)
    }

    fn spawn_full(
        url: String,
        worker: Pubkey,
        node: Keypair,
        job_seconds: u64,
        answer: Answer,
        gpus: u16,
    ) -> Self {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let task = tokio::spawn(sim_loop(
            url,
            worker,
            node.insecure_clone(),
            job_seconds,
            answer,
            gpus,
            seen.clone(),
        ));
        Self {
            worker,
            node,
            seen,
            task,
        }
    }

    /// The machine dies: no goodbye, no more heartbeats.
    pub fn kill(&self) {
        self.task.abort();
    }
}

struct Job {
    service: LeaseService,
    started: Instant,
    exited: bool,
}

async fn sim_loop(
    url: String,
    worker: Pubkey,
    node: Keypair,
    job_seconds: u64,
    answer: Answer,
    gpus: u16,
    seen: Arc<Mutex<Seen>>,
) {
    let mut jobs: HashMap<LeaseId, Job> = HashMap::new();
    // Reconnect until aborted: a dropped connection resumes its leases.
    loop {
        if let Ok((mut ws, _)) = tokio_tungstenite::connect_async(&url).await {
            run_session(
                &mut ws,
                worker,
                &node,
                job_seconds,
                answer,
                gpus,
                &seen,
                &mut jobs,
            )
            .await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

async fn send(ws: &mut Ws, m: &ToOrchestrator) -> bool {
    ws.send(Message::Text(wire::encode(m).into())).await.is_ok()
}

#[allow(clippy::too_many_arguments)]
async fn run_session(
    ws: &mut Ws,
    worker: Pubkey,
    node: &Keypair,
    job_seconds: u64,
    answer: Answer,
    gpus: u16,
    seen: &Arc<Mutex<Seen>>,
    jobs: &mut HashMap<LeaseId, Job>,
) {
    let Some(Ok(Message::Text(text))) = ws.next().await else {
        return;
    };
    let Ok(ToWorker::Welcome {
        nonce,
        program_id,
        heartbeat_ms,
        worker_receipts,
        ..
    }) = wire::decode::<ToWorker>(&text)
    else {
        return;
    };
    let key = receipt::key(&worker);
    let signing = receipt::signing_key(node);
    let hello = ToOrchestrator::Hello {
        version: WIRE_VERSION,
        node_key: receipt::key(&node.pubkey()),
        worker: key,
        hardware: HardwareReport {
            class: GpuClass::H100,
            gpus: (0..gpus)
                .map(|index| wire::GpuReport {
                    index,
                    name: "NVIDIA H100 80GB HBM3 (simulated)".into(),
                    vram_mib: 81_920,
                    pci: String::new(),
                    driver: "simulated".into(),
                })
                .collect(),
            measured_bandwidth_gbps: 3_000.0,
            backend: "simulated".into(),
        },
        signature: wire::sign_auth(&signing, &program_id, &key, &nonce),
        agent: "simulated worker".into(),
    };
    if !send(ws, &hello).await {
        return;
    }
    let mut seq = 0u64;
    let mut proof: Option<(u64, Vec<i32>, MerkleTree, u32)> = None;
    let mut beat = tokio::time::interval(Duration::from_millis(u64::from(heartbeat_ms)));
    let mut receipt_tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            incoming = ws.next() => {
                let Some(Ok(Message::Text(text))) = incoming else { return };
                match wire::decode::<ToWorker>(&text) {
                    Ok(ToWorker::Ready { leases, .. }) => {
                        seen.lock().unwrap().ready += 1;
                        for a in leases {
                            jobs.entry(a.lease).or_insert_with(|| new_job(program_id, a.lease));
                        }
                    }
                    Ok(ToWorker::StartJob(a)) => {
                        jobs.entry(a.lease).or_insert_with(|| new_job(program_id, a.lease));
                        seen.lock().unwrap().started.push((a.lease, Instant::now()));
                        let m = ToOrchestrator::JobStarted { lease: a.lease, unix_ms: now_ms() };
                        if !send(ws, &m).await { return; }
                        let log = ToOrchestrator::JobLog { lease: a.lease, stream: wire::LogStream::Stdout, seq: 1, data: "hello from the job\n".into() };
                        if !send(ws, &log).await { return; }
                    }
                    Ok(ToWorker::StopJob { lease, reason, .. }) => {
                        jobs.remove(&lease);
                        seen.lock().unwrap().stopped.push((lease, reason));
                    }
                    Ok(ToWorker::Ping { id, .. }) if !send(ws, &ToOrchestrator::Pong { id }).await => return,
                    Ok(ToWorker::ReceiptAck { lease, served_seconds }) => {
                        seen.lock().unwrap().acks.push((lease, served_seconds));
                    }
                    Ok(ToWorker::Error { code, message }) => {
                        seen.lock().unwrap().errors.push((code, message));
                    }
                    Ok(ToWorker::Challenge(c)) if answer != Answer::Silent => {
                        seen.lock().unwrap().challenges += 1;
                        let n = c.n as usize;
                        let rows: Vec<u32> = (0..c.n).collect();
                        let mut product = gpumesh_protocol::exact::rows_of_product(&c.seed, n, &rows);
                        if answer == Answer::WrongProduct {
                            for row in product.chunks_exact_mut(n) {
                                row[0] = row[0].wrapping_add(1);
                            }
                        }
                        let tree = MerkleTree::from_leaves(product.chunks_exact(n).map(gpumesh_protocol::merkle::leaf_hash).collect());
                        let m = ToOrchestrator::Commitment(gpumesh_protocol::Commitment {
                            version: c.version,
                            challenge_id: c.id,
                            rows: c.n,
                            root: tree.root(),
                            timing: Default::default(),
                        });
                        proof = Some((c.id, product, tree, c.n));
                        if !send(ws, &m).await { return; }
                    }
                    Ok(ToWorker::OpenRequest(r)) => {
                        let Some((id, product, tree, n)) = proof.take() else { continue };
                        let n = n as usize;
                        let rows = r.rows.iter().map(|&i| gpumesh_protocol::OpenedRow {
                            index: i,
                            values: product[i as usize * n..(i as usize + 1) * n].to_vec(),
                            path: tree.path(i as usize).unwrap_or_default(),
                        }).collect();
                        let m = ToOrchestrator::Opening(gpumesh_protocol::Opening { version: r.version, challenge_id: id, rows });
                        if !send(ws, &m).await { return; }
                    }
                    _ => {}
                }
            }
            _ = beat.tick() => {
                seq += 1;
                let now = now_ms();
                let telemetry = sim_telemetry(gpus, seq);
                let digest = telemetry.digest_bytes();
                let mut leases = vec![];
                for (id, job) in jobs.iter_mut() {
                    if job.exited { continue; }
                    let served = job.started.elapsed().as_secs();
                    let served = if job_seconds > 0 { served.min(job_seconds) } else { served };
                    if let Ok(head) = job.service.heartbeat(now, served, &digest) {
                        leases.push(LeaseBeat { lease: *id, seq: job.service.seq(), served_seconds: served, head });
                    }
                }
                let hb = ToOrchestrator::Heartbeat(Heartbeat { seq, unix_ms: now, telemetry, leases, rtt_us: None });
                if !send(ws, &hb).await { return; }
                seen.lock().unwrap().last_heartbeat = Some(Instant::now());
            }
            _ = receipt_tick.tick() => {
                let mut out = vec![];
                // As the daemon does: the round's claims under one signature too.
                let entries: Vec<gpumesh_protocol::ReceiptEntry> = jobs
                    .values()
                    .filter(|job| !job.exited && job.service.seq() > 0)
                    .map(|job| job.service.entry())
                    .collect();
                if worker_receipts
                    && !entries.is_empty()
                    && let Ok(r) = gpumesh_protocol::SignedWorkerReceipt::sign(&signing, program_id, key, entries)
                {
                    out.push(ToOrchestrator::WorkerReceipt(r));
                }
                for (id, job) in jobs.iter_mut() {
                    if job.exited || job.service.seq() == 0 { continue; }
                    out.push(ToOrchestrator::Receipt(job.service.receipt(&signing)));
                    if job_seconds > 0 && job.service.served_seconds() >= job_seconds {
                        job.exited = true;
                        out.push(ToOrchestrator::JobExited {
                            lease: *id,
                            unix_ms: now_ms(),
                            exit_code: Some(0),
                            status: "exited".into(),
                            result_hash: Some(*blake3::hash(b"result").as_bytes()),
                        });
                    }
                }
                for m in out {
                    if !send(ws, &m).await { return; }
                }
            }
        }
    }
}

/// A simulated machine's telemetry at heartbeat `seq`: with no GPUs the host at half load (as
/// before); with GPUs, every figure moves with each beat (temperature 55 to 74 °C, load, memory
/// and power), so a chart of it changes with every heartbeat.
pub fn sim_telemetry(gpus: u16, seq: u64) -> Telemetry {
    Telemetry {
        gpus: (0..gpus)
            .map(|i| {
                let k = seq + u64::from(i) * 7;
                wire::GpuTelemetry {
                    index: i,
                    temperature_c: 55.0 + (k % 20) as f32,
                    utilization_pct: 40.0 + (k * 7 % 60) as f32,
                    memory_used_mib: 20_000 + (k * 997 % 40_000) as u32,
                    memory_total_mib: 81_920,
                    power_w: 250.0 + (k * 13 % 400) as f32,
                    sm_clock_mhz: 1_980,
                    memory_clock_mhz: 2_619,
                }
            })
            .collect(),
        cpu_pct: 50.0,
        memory_used_mib: 1_024,
        memory_total_mib: 8_192,
    }
}

fn new_job(program_id: gpumesh_protocol::Key, lease: LeaseId) -> Job {
    Job {
        service: LeaseService::new(program_id, lease.lease, lease.nonce),
        started: Instant::now(),
        exited: false,
    }
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Polls `check` until it is true or `timeout` passes.
pub async fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    check()
}
