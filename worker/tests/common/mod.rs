//! What the daemon's integration tests share: the container engine (Podman's Docker-compatible
//! socket, or Docker, at `DOCKER_HOST`), a test image made from busybox-static without any
//! registry, a CPU worker's config, and `OrchestratorSide`: the orchestrator's side of the wire
//! protocol as a real WebSocket server. It is a minimal stand-in for the orchestrator's gateway
//! that checks everything the daemon sends: the session signature, every heartbeat chain link
//! (replayed with `HeartbeatChain::verify`), every receipt (`SignedReceipt::verify`, and that it
//! signs a head the chain holds), log chunk numbers, and that no heartbeat claims more seconds
//! than have passed since the job started.

#![allow(dead_code)]

use bollard::Docker;
use bollard::query_parameters::CreateImageOptions;
use futures_util::{SinkExt, StreamExt};
use gpumesh_protocol::heartbeat::{HeartbeatChain, Link};
use gpumesh_protocol::wire::{
    self, ChainPosition, CheckpointRef, ErrorCode, HardwareReport, JobSpec, LeaseAssignment,
    LeaseId, LogStream, ToOrchestrator, ToWorker, WIRE_VERSION,
};
use gpumesh_protocol::{Key, SignedReceipt, SigningKey, job_spec_hash};
use gpumesh_worker::daemon::config::{
    BackendChoice, Claim, Config, ConnectionConfig, Floor, HardwareConfig, ResultsConfig,
    RuntimeConfig, RuntimeKind,
};
use gpumesh_worker::daemon::{self, DaemonError};
use rand::Rng;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

pub const TEST_IMAGE: &str = "localhost/gpumesh-test-busybox:latest";

/// The container engine; these tests fail (never skip) without one.
pub async fn engine() -> Docker {
    let host = std::env::var("DOCKER_HOST").unwrap_or_else(|_| {
        panic!(
            "DOCKER_HOST is not set: the worker daemon's tests run real containers. Start Podman's Docker-compatible socket with `eval \"$(scripts/podman-service.sh)\"` (or point DOCKER_HOST at Docker)"
        )
    });
    let docker = Docker::connect_with_host(&host)
        .unwrap_or_else(|e| panic!("DOCKER_HOST={host} cannot be used: {e}"));
    let docker = match docker.negotiate_version().await {
        Ok(d) => d,
        Err(e) => panic!(
            "the container engine at DOCKER_HOST={host} does not answer ({e}); start it with scripts/podman-service.sh"
        ),
    };
    if let Err(e) = docker.ping().await {
        panic!(
            "the container engine at DOCKER_HOST={host} does not answer ({e}); start it with scripts/podman-service.sh"
        );
    }
    docker
}

/// A root file system with busybox and its applets as links, as a tar archive.
fn busybox_rootfs() -> Vec<u8> {
    let busybox = std::fs::read("/bin/busybox").unwrap_or_else(|e| {
        panic!("/bin/busybox ({e}): install busybox-static (scripts/podman-service.sh does)")
    });
    let mut tar = tar::Builder::new(Vec::new());
    let mut dir = tar::Header::new_gnu();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o755);
    dir.set_size(0);
    for d in ["bin", "tmp", "scratch", "results"] {
        tar.append_data(&mut dir.clone(), d, std::io::empty())
            .expect("dir");
    }
    let mut file = tar::Header::new_gnu();
    file.set_mode(0o755);
    file.set_size(busybox.len() as u64);
    tar.append_data(&mut file, "bin/busybox", busybox.as_slice())
        .expect("busybox");
    for applet in [
        "sh", "echo", "cat", "sleep", "yes", "head", "tr", "dd", "true", "seq", "ls", "env", "wc",
    ] {
        let mut link = tar::Header::new_gnu();
        link.set_entry_type(tar::EntryType::Symlink);
        link.set_size(0);
        link.set_mode(0o777);
        tar.append_link(&mut link, format!("bin/{applet}"), "busybox")
            .expect("link");
    }
    tar.into_inner().expect("tar")
}

static IMAGE: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();

/// Imports the test image into the engine once (no registry: a root file system from the host's
/// busybox-static).
pub async fn test_image(docker: &Docker) -> &'static str {
    IMAGE
        .get_or_init(|| async {
            if docker.inspect_image(TEST_IMAGE).await.is_ok() {
                return;
            }
            let (repo, tag) = TEST_IMAGE.rsplit_once(':').expect("tag");
            let mut import = docker.create_image(
                Some(CreateImageOptions {
                    from_src: Some("-".into()),
                    repo: Some(repo.into()),
                    tag: Some(tag.into()),
                    ..Default::default()
                }),
                Some(bollard::body_full(bytes::Bytes::from(busybox_rootfs()))),
                None,
            );
            while let Some(step) = import.next().await {
                step.expect("importing the test image");
            }
            docker
                .inspect_image(TEST_IMAGE)
                .await
                .expect("the imported test image");
        })
        .await;
    TEST_IMAGE
}

/// The names of a test market.
#[derive(Clone)]
pub struct Names {
    pub node: SigningKey,
    pub node_key: Key,
    pub worker: Key,
    pub program_id: Key,
    pub market: Key,
}

impl Names {
    pub fn new() -> Self {
        let mut rng = rand::rng();
        let node = SigningKey::from_bytes(&rng.random());
        Names {
            node_key: Key(node.verifying_key().to_bytes()),
            node,
            worker: Key(rng.random()),
            program_id: Key(rng.random()),
            market: Key(rng.random()),
        }
    }
}

/// A CPU worker with four slots, a test market's floor, fast reconnects.
pub fn cpu_config(dir: &Path, url: &str, names: &Names, kind: RuntimeKind) -> Config {
    Config {
        orchestrator: url.into(),
        node_key: names.node.clone(),
        worker: names.worker,
        program_id: names.program_id,
        state: dir.join("state.sqlite"),
        work_dir: dir.join("jobs"),
        hardware: HardwareConfig {
            backend: BackendChoice::Cpu,
        },
        floor: Floor {
            min_vram_mib: 256,
            min_bandwidth_gbps: 0.5,
        },
        claim: Some(Claim {
            class: gpumesh_protocol::GpuClass::Cpu,
            gpus: 4,
            vram_mib: 256,
            bandwidth_gbps: 1,
        }),
        runtime: RuntimeConfig {
            kind,
            pull_images: false,
            stop_grace_ms: 2_000,
            ..Default::default()
        },
        results: ResultsConfig::Local {
            dir: dir.join("results"),
        },
        connection: ConnectionConfig {
            backoff_initial_ms: 100,
            backoff_max_ms: 1_000,
        },
    }
}

/// A lease of `gpus` slots running `spec`.
pub fn assignment(
    n: u8,
    spec: &str,
    gpus: u16,
    indices: Vec<u16>,
    receipt_every_s: u32,
) -> LeaseAssignment {
    let mut lease = [n; 32];
    lease[..8].copy_from_slice(&rand::rng().random::<[u8; 8]>());
    LeaseAssignment {
        lease: LeaseId {
            lease: Key(lease),
            nonce: u64::from(n),
        },
        order: Key([n.wrapping_add(100); 32]),
        gpus,
        gpu_indices: indices,
        spec: JobSpec::from_toml(spec)
            .unwrap_or_else(|_| JobSpec::from_toml("image = \"x\"\n").expect("x")),
        spec_hash: job_spec_hash(spec.as_bytes()),
        receipt_every_s,
        spec_file: Some(spec.into()),
        chain: None,
        restore: vec![],
        checkpoints_off: false,
    }
}

/// A CPU daemon with Docker jobs (its config changed by `tweak`) on a directory of its own,
/// connected to an orchestrator side of its own.
pub async fn connected_daemon(
    names: &Names,
    tweak: impl FnOnce(&mut Config),
) -> (OrchestratorSide, InProcess, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("dir");
    let orch = OrchestratorSide::start(names.clone(), Behaviour::default()).await;
    let mut config = cpu_config(dir.path(), &orch.url, names, RuntimeKind::Docker);
    tweak(&mut config);
    let mut daemon = start_daemon(config);
    {
        let connected = orch.connected(1);
        tokio::pin!(connected);
        loop {
            tokio::select! {
                () = &mut connected => break,
                () = tokio::time::sleep(Duration::from_millis(100)) => {
                    if daemon.task.is_finished() {
                        let ended = (&mut daemon.task).await;
                        panic!("the daemon ended before it connected: {ended:?}");
                    }
                }
            }
        }
    }
    (orch, daemon, dir)
}

/// A daemon in this process.
pub struct InProcess {
    stop: Option<oneshot::Sender<()>>,
    pub task: JoinHandle<Result<(), DaemonError>>,
}

pub fn start_daemon(config: Config) -> InProcess {
    // RUST_LOG=info shows the daemons' logs.
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_default_env() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .try_init();
    }
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(daemon::run(config, async move {
        let _ = stopped.await;
    }));
    InProcess {
        stop: Some(stop),
        task,
    }
}

impl InProcess {
    pub async fn stop(mut self) -> Result<(), DaemonError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(30), &mut self.task)
            .await
            .expect("the daemon stops within 30 s")
            .expect("the daemon task")
    }
}

/// What the job of a lease did, as the orchestrator saw it.
#[derive(Debug, Clone)]
pub struct Exit {
    pub unix_ms: u64,
    pub exit_code: Option<i32>,
    pub status: String,
    pub result_hash: Option<[u8; 32]>,
    pub at: Instant,
}

/// Everything the orchestrator's side saw.
#[derive(Default)]
pub struct Seen {
    pub connections: u32,
    pub hellos: Vec<HardwareReport>,
    pub auth_failures: u32,
    /// Leases the next Ready lists.
    pub leases: BTreeMap<LeaseId, LeaseAssignment>,
    /// Each lease's chain: links with the head after each.
    pub links: BTreeMap<LeaseId, Vec<(Link, [u8; 32])>>,
    pub heartbeats: u64,
    /// Heartbeats resent after a reconnect (older than the connection they came on).
    pub replayed: u64,
    pub rtts: Vec<u32>,
    pub receipts: Vec<SignedReceipt>,
    /// The newest receipt that came after the lease's JobExited (its last seconds).
    pub final_receipt: BTreeMap<LeaseId, u64>,
    pub logs: BTreeMap<LeaseId, Vec<(u64, LogStream, String)>>,
    pub log_bytes: u64,
    pub first_log_at: BTreeMap<LeaseId, Instant>,
    pub started: BTreeMap<LeaseId, (u64, Instant)>,
    pub exited: BTreeMap<LeaseId, Exit>,
    pub errors: Vec<(ErrorCode, String)>,
    /// Checkpoints the daemon stored, restored and skipped.
    pub checkpoints: Vec<CheckpointRef>,
    pub restored: Vec<(LeaseId, [u8; 32])>,
    pub skipped: Vec<(LeaseId, [u8; 32], String)>,
    pub answers: Vec<ToOrchestrator>,
    pub pongs: Vec<u64>,
    /// Broken rules, each in words; a test ends by checking there are none.
    pub problems: Vec<String>,
    /// Reading stops until then (a slow orchestrator).
    pub stall_until: Option<Instant>,
}

impl Seen {
    pub fn log_text(&self, lease: LeaseId) -> String {
        self.logs
            .get(&lease)
            .map(|l| l.iter().map(|(_, _, d)| d.as_str()).collect())
            .unwrap_or_default()
    }

    pub fn max_receipt(&self, lease: LeaseId) -> Option<u64> {
        self.receipts
            .iter()
            .filter(|r| r.lease == lease.lease && r.lease_nonce == lease.nonce)
            .map(|r| r.served_seconds)
            .max()
    }

    pub fn last_served(&self, lease: LeaseId) -> Option<u64> {
        self.links
            .get(&lease)
            .and_then(|l| l.last())
            .map(|(l, _)| l.served_seconds)
    }
}

enum Cmd {
    Send(Box<ToWorker>),
    Drop,
}

/// The orchestrator's side of the protocol, for tests.
pub struct OrchestratorSide {
    pub url: String,
    pub names: Names,
    pub state: Arc<Mutex<Seen>>,
    conn: Arc<Mutex<Option<mpsc::UnboundedSender<Cmd>>>>,
    task: JoinHandle<()>,
}

#[derive(Clone, Copy)]
pub struct Behaviour {
    pub heartbeat_ms: u32,
    /// Acknowledge receipts.
    pub ack: bool,
    /// Say where its copy of each chain ends in Ready.
    pub report_chain: bool,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            heartbeat_ms: 300,
            ack: true,
            report_chain: true,
        }
    }
}

impl Drop for OrchestratorSide {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl OrchestratorSide {
    pub async fn start(names: Names, behaviour: Behaviour) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("ws://{}/worker", listener.local_addr().expect("addr"));
        let state = Arc::new(Mutex::new(Seen::default()));
        let conn = Arc::new(Mutex::new(None));
        let task = tokio::spawn({
            let (names, state, conn) = (names.clone(), state.clone(), conn.clone());
            async move {
                while let Ok((tcp, _)) = listener.accept().await {
                    let (names, state, conn) = (names.clone(), state.clone(), conn.clone());
                    tokio::spawn(async move {
                        serve(tcp, names, behaviour, state, conn).await;
                    });
                }
            }
        });
        OrchestratorSide {
            url,
            names,
            state,
            conn,
            task,
        }
    }

    pub fn seen<T>(&self, f: impl FnOnce(&mut Seen) -> T) -> T {
        f(&mut self.state.lock().expect("state"))
    }

    /// Lists a lease in Ready from now on and sends StartJob on the open connection.
    pub fn start_job(&self, a: LeaseAssignment) {
        self.seen(|s| s.leases.insert(a.lease, a.clone()));
        self.send(ToWorker::StartJob(a));
    }

    pub fn send(&self, m: ToWorker) -> bool {
        self.conn
            .lock()
            .expect("conn")
            .as_ref()
            .is_some_and(|c| c.send(Cmd::Send(Box::new(m))).is_ok())
    }

    /// Drops the socket without a close frame.
    pub fn drop_connection(&self) {
        if let Some(c) = self.conn.lock().expect("conn").take() {
            let _ = c.send(Cmd::Drop);
        }
    }

    /// Waits until `f` gives a value; on time out, fails with what was awaited and what was seen.
    pub async fn wait<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut f: impl FnMut(&Seen) -> Option<T>,
    ) -> T {
        let until = Instant::now() + timeout;
        loop {
            if let Some(v) = f(&self.state.lock().expect("state")) {
                return v;
            }
            if Instant::now() > until {
                let s = self.state.lock().expect("state");
                panic!(
                    "timed out after {timeout:?} waiting for {what}; seen: {} connections, {} heartbeats, {} receipts, exits {:?}, errors {:?}, problems {:?}",
                    s.connections,
                    s.heartbeats,
                    s.receipts.len(),
                    s.exited.values().map(|e| &e.status).collect::<Vec<_>>(),
                    s.errors,
                    s.problems
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The seconds a lease's job was paid for in the end: the receipt sent after its exit (or,
    /// when its last seconds were already signed, the newest receipt).
    pub async fn final_served(&self, lease: LeaseId) -> u64 {
        self.wait("the job's exit", Duration::from_secs(120), |s| {
            s.exited.get(&lease).map(|_| ())
        })
        .await;
        let until = Instant::now() + Duration::from_secs(3);
        loop {
            let (last, newest) =
                self.seen(|s| (s.final_receipt.get(&lease).copied(), s.max_receipt(lease)));
            if let Some(last) = last {
                return last;
            }
            if Instant::now() > until {
                return newest.unwrap_or(0);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Starts `a`'s job and waits (up to `limit`) for its exit.
    pub async fn run_to_exit(
        &self,
        a: LeaseAssignment,
        what: &str,
        limit: Duration,
    ) -> (LeaseId, Exit) {
        let lease = a.lease;
        self.start_job(a);
        let exit = self
            .wait(what, limit, |s| s.exited.get(&lease).cloned())
            .await;
        (lease, exit)
    }

    pub async fn connected(&self, n: u32) {
        self.wait(&format!("connection {n}"), Duration::from_secs(60), |s| {
            (s.connections >= n).then_some(())
        })
        .await;
    }

    pub fn problems(&self) -> Vec<String> {
        self.seen(|s| s.problems.clone())
    }
}

async fn serve(
    tcp: tokio::net::TcpStream,
    names: Names,
    behaviour: Behaviour,
    state: Arc<Mutex<Seen>>,
    conn: Arc<Mutex<Option<mpsc::UnboundedSender<Cmd>>>>,
) {
    let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else {
        return;
    };
    let (mut tx, mut rx) = ws.split();
    let nonce: [u8; 32] = rand::rng().random();
    let welcome = ToWorker::Welcome {
        version: WIRE_VERSION,
        nonce,
        program_id: names.program_id,
        market: names.market,
        heartbeat_ms: behaviour.heartbeat_ms,
        worker_receipts: false,
    };
    if tx
        .send(Message::text(wire::encode(&welcome)))
        .await
        .is_err()
    {
        return;
    }
    let hello = loop {
        match rx.next().await {
            Some(Ok(Message::Text(t))) => break wire::decode::<ToOrchestrator>(&t),
            Some(Ok(_)) => continue,
            _ => return,
        }
    };
    let Ok(ToOrchestrator::Hello {
        version,
        node_key,
        worker,
        hardware,
        signature,
        ..
    }) = hello
    else {
        state
            .lock()
            .expect("state")
            .problems
            .push("the first message was not a hello".into());
        return;
    };
    let signed = wire::verify_auth(&node_key, &names.program_id, &worker, &nonce, &signature);
    if version != WIRE_VERSION || !signed || node_key != names.node_key || worker != names.worker {
        state.lock().expect("state").auth_failures += 1;
        let _ = tx
            .send(Message::text(wire::encode(&ToWorker::Error {
                code: ErrorCode::AuthFailed,
                message: "the session signature does not verify against the worker's node key"
                    .into(),
            })))
            .await;
        let _ = tx.close().await;
        return;
    }
    let (cmd_tx, mut cmds) = mpsc::unbounded_channel();
    let ready = {
        let mut s = state.lock().expect("state");
        s.connections += 1;
        s.hellos.push(hardware);
        let leases = s
            .leases
            .values()
            .map(|a| {
                let mut a = a.clone();
                if behaviour.report_chain {
                    let links = s.links.get(&a.lease).cloned().unwrap_or_default();
                    a.chain = Some(match links.last() {
                        Some((l, head)) => ChainPosition {
                            seq: l.seq,
                            head: *head,
                        },
                        None => ChainPosition {
                            seq: 0,
                            head: gpumesh_protocol::heartbeat::genesis(
                                &a.lease.lease.0,
                                a.lease.nonce,
                            ),
                        },
                    });
                }
                a
            })
            .collect();
        *conn.lock().expect("conn") = Some(cmd_tx);
        ToWorker::Ready { worker, leases }
    };
    let opened_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    if tx.send(Message::text(wire::encode(&ready))).await.is_err() {
        return;
    }
    loop {
        let stall = state.lock().expect("state").stall_until;
        let stalled = stall.is_some_and(|t| t > Instant::now());
        tokio::select! {
            cmd = cmds.recv() => match cmd {
                Some(Cmd::Send(m)) => {
                    if tx.send(Message::text(wire::encode(&*m))).await.is_err() {
                        return;
                    }
                }
                Some(Cmd::Drop) | None => return,
            },
            _ = tokio::time::sleep(Duration::from_millis(20)), if stalled => {}
            frame = rx.next(), if !stalled => {
                let text = match frame {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(_)) => continue,
                    _ => return,
                };
                let message = match wire::decode::<ToOrchestrator>(&text) {
                    Ok(m) => m,
                    Err(e) => {
                        state.lock().expect("state").problems.push(format!("undecodable frame: {e}"));
                        continue;
                    }
                };
                let reply = handle(&names, behaviour, &state, message, opened_ms);
                if let Some(reply) = reply
                    && tx.send(Message::text(wire::encode(&reply))).await.is_err()
                {
                    return;
                }
            }
        }
    }
}

/// Checks and records one message; returns the answer to send, if any.
fn handle(
    names: &Names,
    behaviour: Behaviour,
    state: &Arc<Mutex<Seen>>,
    message: ToOrchestrator,
    opened_ms: u64,
) -> Option<ToWorker> {
    let mut guard = state.lock().expect("state");
    let s = &mut *guard;
    match message {
        ToOrchestrator::Heartbeat(hb) => {
            s.heartbeats += 1;
            if hb.unix_ms < opened_ms {
                s.replayed += 1;
            }
            if let Some(rtt) = hb.rtt_us {
                s.rtts.push(rtt);
            }
            let digest = *blake3::hash(&hb.telemetry.digest_bytes()).as_bytes();
            for beat in hb.leases {
                let link = Link {
                    seq: beat.seq,
                    unix_ms: hb.unix_ms,
                    served_seconds: beat.served_seconds,
                    payload_digest: digest,
                };
                let chain = s.links.entry(beat.lease).or_default();
                let last = chain.last().map_or(0, |(l, _)| l.seq);
                if beat.seq <= last {
                    let held = chain[(beat.seq - 1) as usize];
                    if held.1 != beat.head || held.0 != link {
                        s.problems.push(format!(
                            "link {} of a lease came again, different",
                            beat.seq
                        ));
                    }
                    continue;
                }
                if beat.seq != last + 1 {
                    s.problems.push(format!(
                        "link {} came after link {last}: links are missing",
                        beat.seq
                    ));
                    continue;
                }
                let mut links: Vec<Link> = chain.iter().map(|(l, _)| *l).collect();
                links.push(link);
                if let Err(e) = HeartbeatChain::verify(
                    &beat.lease.lease.0,
                    beat.lease.nonce,
                    &links,
                    &beat.head,
                ) {
                    s.problems.push(format!("link {}: {e}", beat.seq));
                    continue;
                }
                chain.push((link, beat.head));
                // No heartbeat claims more than has passed since the job started: by the
                // daemon's own clock (its JobStarted time against the heartbeat's), and grossly
                // by this side's clock.
                let claimed_ms = beat.served_seconds * 1000;
                let ok = match s.started.get(&beat.lease) {
                    Some((started_ms, seen_at)) => {
                        claimed_ms <= hb.unix_ms.saturating_sub(*started_ms) + 100
                            && Duration::from_millis(claimed_ms)
                                <= seen_at.elapsed() + Duration::from_secs(2)
                    }
                    None => beat.served_seconds == 0,
                };
                if !ok {
                    s.problems.push(format!(
                        "link {} claims {} s, more than has passed since the job started",
                        beat.seq, beat.served_seconds
                    ));
                }
            }
            None
        }
        ToOrchestrator::Receipt(r) => {
            let lease = LeaseId {
                lease: r.lease,
                nonce: r.lease_nonce,
            };
            if let Err(e) = r.verify(Some(&names.node_key)) {
                s.problems.push(format!("receipt: {e}"));
            }
            if r.program_id != names.program_id {
                s.problems.push("receipt for another program".into());
            }
            let held = s.links.get(&lease).and_then(|links| {
                links
                    .iter()
                    .find(|(_, head)| *head == r.chain_head)
                    .map(|(l, _)| l.served_seconds)
            });
            if held != Some(r.served_seconds) {
                s.problems.push(format!(
                    "a receipt for {} s signs a head the chain does not hold with those seconds ({held:?})",
                    r.served_seconds
                ));
            }
            let served = r.served_seconds;
            if s.exited.contains_key(&lease) {
                s.final_receipt.insert(lease, served);
            }
            s.receipts.push(r);
            behaviour.ack.then_some(ToWorker::ReceiptAck {
                lease,
                served_seconds: served,
            })
        }
        ToOrchestrator::JobLog {
            lease,
            stream,
            seq,
            data,
        } => {
            s.log_bytes += data.len() as u64;
            s.first_log_at.entry(lease).or_insert_with(Instant::now);
            if data.len() > wire::MAX_LOG_CHUNK_BYTES {
                s.problems
                    .push(format!("a log chunk of {} bytes", data.len()));
            }
            let logs = s.logs.entry(lease).or_default();
            if logs.last().is_some_and(|(last, _, _)| *last >= seq) {
                s.problems.push(format!("log chunk {seq} repeats a number"));
            }
            logs.push((seq, stream, data));
            None
        }
        ToOrchestrator::JobStarted { lease, unix_ms } => {
            s.started.entry(lease).or_insert((unix_ms, Instant::now()));
            None
        }
        ToOrchestrator::JobExited {
            lease,
            unix_ms,
            exit_code,
            status,
            result_hash,
        } => {
            s.exited.entry(lease).or_insert(Exit {
                unix_ms,
                exit_code,
                status,
                result_hash,
                at: Instant::now(),
            });
            None
        }
        ToOrchestrator::Pong { id } => {
            s.pongs.push(id);
            None
        }
        ToOrchestrator::Error { code, message } => {
            s.errors.push((code, message));
            None
        }
        m @ (ToOrchestrator::Commitment(_) | ToOrchestrator::Opening(_)) => {
            s.answers.push(m);
            None
        }
        ToOrchestrator::Checkpoint(c) => {
            s.checkpoints.push(c);
            None
        }
        ToOrchestrator::CheckpointRestored { lease, hash } => {
            s.restored.push((lease, hash));
            None
        }
        ToOrchestrator::CheckpointSkipped {
            lease,
            hash,
            reason,
        } => {
            s.skipped.push((lease, hash, reason));
            None
        }
        ToOrchestrator::Hello { .. } => {
            s.problems.push("a second hello".into());
            None
        }
        ToOrchestrator::WorkerReceipt(_) => {
            s.problems
                .push("a worker receipt, which this orchestrator's welcome did not ask for".into());
            None
        }
    }
}
