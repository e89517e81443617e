//! The worker daemon: it runs on the supplier's machine, keeps one WebSocket to the
//! orchestrator, runs each lease's job in a container, proves the time it served with a
//! heartbeat hash chain and signed receipts, and answers compute challenges.
//!
//! [`run`] takes its configuration and the future that stops it (as mini-redis's server does),
//! so tests start and stop real daemons. Inside, one task (the core) owns the connection, every
//! lease's state and the state file; one task per job starts, watches and stops it and reports
//! back over a channel; job output flows through a bounded hub to the connection.
//!
//! Served time is the time a job really ran: its clock starts when the engine's start call has
//! returned; each heartbeat counts only up to the moment before the runtime last confirmed the
//! job running, and the clock stops at the engine's own finish time. Heartbeats carry it as
//! whole seconds, rounded down; a receipt signs exactly what the last heartbeat showed. Each heartbeat's links and each receipt are written to the state file
//! before they are sent, so a restart goes on from the same chain and never signs a second
//! version of a link. After a restart a container still running the same run (same engine start
//! time) is picked up again and the seconds it ran meanwhile count; one that ended meanwhile
//! counts up to the engine's finish time.

pub mod config;
pub mod hardware;
pub mod jobs;
pub mod logs;
pub mod results;
pub mod runtime;
pub mod s3;
pub mod session;
pub mod store;

pub use config::Config;

use crate::backend::ComputeBackend;
use config::RuntimeKind;
use gpumesh_protocol::wire::{
    ErrorCode, Heartbeat, LeaseAssignment, LeaseBeat, LeaseId, StopReason, Telemetry,
    ToOrchestrator, ToWorker,
};
use gpumesh_protocol::{Key, LeaseService, MAX_RECEIPT_LEASES, ReceiptEntry, SignedWorkerReceipt};
use hardware::{HardwareError, Machine, TelemetrySampler};
use jobs::{Control, JobContext, JobEvent, JobHandle, JobStart};
use logs::LogHub;
use results::LocalDirStore;
use runtime::{Runtime, RuntimeError, unix_ms};
use session::{Backoff, Incoming, Session, SessionError};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use store::{Phase, Store, StoreError, StoredLease};
use tokio::sync::mpsc;

/// How long the receipts of an ended lease are kept for the orchestrator's acknowledgement.
const ENDED_RETENTION: Duration = Duration::from_secs(3_600);
/// Log chunk numbers reserved in the state file at a time.
const LOG_SEQ_BLOCK: u64 = 1_024;
/// Log chunks sent per turn of the loop (heartbeats and messages go between turns).
const LOG_CHUNKS_PER_TURN: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Hardware(#[from] HardwareError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Session(SessionError),
    #[error("{0}")]
    Setup(String),
}

/// Why one session's loop ended.
enum Fail {
    /// The connection is gone: reconnect.
    Conn(SessionError),
    /// The daemon cannot go on (the state file failed).
    Fatal(DaemonError),
}

impl From<SessionError> for Fail {
    fn from(e: SessionError) -> Self {
        Fail::Conn(e)
    }
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Self {
        Fail::Fatal(DaemonError::Store(e))
    }
}

enum SessionEnd {
    Shutdown,
    Lost(SessionError),
}

/// The clock of one run of a job in this process.
#[derive(Debug, Clone, Copy)]
struct Run {
    start: Instant,
    /// `start` on the wall clock.
    start_unix_ms: u64,
    served_at_start_ms: u64,
    /// Started by this process (so the engine's run time bounds it).
    fresh: bool,
    /// The last moment the runtime said the job was running (and that moment on the wall
    /// clock): heartbeats count up to here, never further.
    confirmed: Instant,
    confirmed_unix_ms: u64,
}

impl Run {
    fn new(start: Instant, start_unix_ms: u64, served_at_start_ms: u64, fresh: bool) -> Self {
        Run {
            start,
            start_unix_ms,
            served_at_start_ms,
            fresh,
            confirmed: start,
            confirmed_unix_ms: start_unix_ms,
        }
    }

    fn served_ms(&self, at: Instant) -> u64 {
        self.served_at_start_ms + at.saturating_duration_since(self.start).as_millis() as u64
    }
}

/// A lease as the core holds it.
struct LeaseState {
    stored: StoredLease,
    service: LeaseService,
    run: Option<Run>,
    last_receipt_at: Instant,
    /// Sign a receipt at the next chance (the job ended: its last seconds).
    final_due: bool,
    /// The orchestrator no longer lists this lease: end it without a final receipt.
    unwanted: bool,
    handle: Option<JobHandle>,
    /// Checkpoint reports made while no orchestrator was connected, sent after the next Ready.
    unreported: Vec<ToOrchestrator>,
}

impl LeaseState {
    fn new(stored: StoredLease, program_id: Key) -> Self {
        let id = stored.id();
        let service = LeaseService::resume(program_id, id.lease, id.nonce, stored.chain.clone());
        LeaseState {
            stored,
            service,
            run: None,
            last_receipt_at: Instant::now(),
            final_due: false,
            unwanted: false,
            handle: None,
            unreported: Vec::new(),
        }
    }

    /// Milliseconds served as far as the runtime confirmed the job running.
    fn served_ms(&self) -> u64 {
        match self.run {
            Some(run) => run.served_ms(run.confirmed),
            None => self.stored.served_ms,
        }
    }

    /// Whole seconds served, never below what a heartbeat already showed.
    fn served_seconds(&self) -> u64 {
        (self.served_ms() / 1000).max(self.service.served_seconds())
    }

    fn active(&self) -> bool {
        self.stored.phase != Phase::Ended
    }
}

/// Starts the daemon and runs it until `shutdown` completes. Container jobs keep running when
/// it stops and are picked up by the next start; command jobs are stopped with it.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), DaemonError> {
    let detect_config = config.clone();
    let (machine, backend) = tokio::task::spawn_blocking(move || hardware::detect(&detect_config))
        .await
        .map_err(|e| DaemonError::Setup(format!("hardware detection panicked: {e}")))??;
    run_detected(config, machine, backend, shutdown).await
}

/// [`run`] on a machine already detected and checked ([`hardware::detect`]), with `backend`
/// answering the service's compute challenges. The end-to-end tests use it to run a worker
/// whose backend skips the work, as a supplier's modified build would.
pub async fn run_detected(
    config: Config,
    machine: Machine,
    backend: Box<dyn ComputeBackend>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    let daemon = Daemon::start(config, machine, backend).await?;
    daemon.serve(shutdown).await
}

struct Daemon {
    config: Config,
    identity: session::Identity,
    machine: Machine,
    backend: Arc<Mutex<Box<dyn ComputeBackend>>>,
    store: Store,
    hub: Arc<LogHub>,
    jobs: JobContext,
    events: mpsc::UnboundedReceiver<JobEvent>,
    answers_tx: mpsc::UnboundedSender<ToOrchestrator>,
    answers: mpsc::UnboundedReceiver<ToOrchestrator>,
    leases: BTreeMap<LeaseId, LeaseState>,
    sampler: TelemetrySampler,
    last_unix_ms: u64,
}

impl Daemon {
    async fn start(
        config: Config,
        machine: Machine,
        backend: Box<dyn ComputeBackend>,
    ) -> Result<Self, DaemonError> {
        tracing::info!(
            class = %machine.report.class,
            backend = %machine.report.backend,
            gpus = machine.slots.len(),
            bandwidth_gbps = format!("{:.1}", machine.measurement.memory_bandwidth_gbs),
            "machine checked"
        );
        let node_key = Key(config.node_key.verifying_key().to_bytes());
        let store = Store::open(
            &config.state,
            &store::Identity {
                worker: config.worker,
                program_id: config.program_id,
                node_key,
            },
        )
        .await?;
        let runtime = Arc::new(Runtime::connect(&config.runtime, config.worker).await?);
        tracing::info!(runtime = runtime.name(), "job runtime ready");
        create_private_dir(&config.work_dir)?;
        let results: Arc<dyn results::ResultStore> = match &config.results {
            config::ResultsConfig::Local { dir } => {
                std::fs::create_dir_all(dir).map_err(|e| {
                    DaemonError::Setup(format!("results directory {}: {e}", dir.display()))
                })?;
                Arc::new(LocalDirStore::new(dir.clone()))
            }
            config::ResultsConfig::S3(s3) => Arc::new(
                s3::S3Store::connect(s3)
                    .await
                    .map_err(|e| DaemonError::Setup(e.to_string()))?,
            ),
        };
        let hub = Arc::new(LogHub::new(config.runtime.log_buffer_bytes));
        let (events_tx, events) = mpsc::unbounded_channel();
        let (answers_tx, answers) = mpsc::unbounded_channel();
        let jobs = JobContext {
            runtime: runtime.clone(),
            hub: hub.clone(),
            results,
            events: events_tx,
            work_dir: config.work_dir.clone(),
            default_grace: Duration::from_millis(config.runtime.stop_grace_ms.into()),
        };
        let identity = session::Identity {
            node_key: config.node_key.clone(),
            worker: config.worker,
            program_id: config.program_id,
            hardware: machine.report.clone(),
        };
        let sampler = TelemetrySampler::new(&machine);
        let mut daemon = Daemon {
            config,
            identity,
            machine,
            backend: Arc::new(Mutex::new(backend)),
            store,
            hub,
            jobs,
            events,
            answers_tx,
            answers,
            leases: BTreeMap::new(),
            sampler,
            last_unix_ms: 0,
        };
        daemon.resume().await?;
        Ok(daemon)
    }

    /// Picks up the leases of the state file: jobs found again, containers nobody wants removed.
    async fn resume(&mut self) -> Result<(), DaemonError> {
        for stored in self.store.leases().await? {
            let id = stored.id();
            let mut st = LeaseState::new(stored, self.config.program_id);
            if let Some(last) = st.service.chain().last() {
                self.last_unix_ms = self.last_unix_ms.max(last.unix_ms);
            }
            if st.active() {
                self.hub.open(id, st.stored.log_seq_reserved + 1);
                let plan = jobs::plan(
                    &st.stored.assignment,
                    &self.machine,
                    self.config.worker,
                    &self.config.work_dir,
                    self.config.runtime.kind,
                );
                match (st.stored.phase, plan, st.stored.job.clone()) {
                    (Phase::Running, Ok(plan), Some(job)) => {
                        tracing::info!(lease = %id.lease, "finding the job of lease again");
                        st.handle = Some(jobs::spawn(
                            self.jobs.clone(),
                            JobStart::Adopt { plan, job },
                        ));
                    }
                    (Phase::Exited, Ok(plan), Some(job)) if st.stored.exit.is_none() => {
                        // It stopped, but its results were not reported before the restart.
                        st.handle = Some(jobs::spawn(
                            self.jobs.clone(),
                            JobStart::Adopt { plan, job },
                        ));
                    }
                    (Phase::Starting, Ok(plan), _) => {
                        // It never ran: start it now.
                        st.handle = Some(jobs::spawn(self.jobs.clone(), JobStart::Fresh(plan)));
                    }
                    (Phase::Running | Phase::Starting, _, _) => {
                        st.stored.phase = Phase::Exited;
                        st.stored.checkpoint_unix_ms = None;
                        st.stored.exit = Some(store::ExitRecord {
                            unix_ms: unix_ms(),
                            exit_code: None,
                            status: "lost: the daemon restarted and could not find the job again"
                                .into(),
                            result_hash: None,
                        });
                        self.store.save_lease(&st.stored).await?;
                    }
                    _ => {}
                }
                if let (Some((_, grace)), Some(handle)) = (st.stored.stop, &st.handle) {
                    let _ = handle.control.send(Control::Stop {
                        grace: Duration::from_millis(grace.into()),
                        why: "its lease ended".into(),
                    });
                }
                if st.stored.phase == Phase::Exited && st.stored.exit.is_some() {
                    st.final_due = true;
                }
            }
            self.leases.insert(id, st);
        }
        let keep: Vec<LeaseId> = self
            .leases
            .values()
            .filter(|s| s.active())
            .map(|s| s.stored.id())
            .collect();
        let removed = self
            .jobs
            .runtime
            .reap(&|lease| keep.contains(&lease))
            .await?;
        for name in removed {
            tracing::info!("removed container {name}: no lease of this worker wants it");
        }
        tracing::info!(leases = self.leases.len(), "state picked up");
        Ok(())
    }

    async fn serve(mut self, shutdown: impl Future<Output = ()>) -> Result<(), DaemonError> {
        tokio::pin!(shutdown);
        let mut backoff = Backoff::new(
            self.config.connection.backoff_initial(),
            self.config.connection.backoff_max(),
        );
        loop {
            let url = self.config.orchestrator.clone();
            let identity = self.identity.clone();
            let result = {
                let connecting = session::connect(&url, &identity);
                tokio::pin!(connecting);
                loop {
                    tokio::select! {
                        _ = &mut shutdown => {
                            self.shutdown().await;
                            return Ok(());
                        }
                        r = &mut connecting => break r,
                        Some(ev) = self.events.recv() => {
                            if let Err(Fail::Fatal(e)) = self.on_job_event(ev, None).await {
                                return Err(e);
                            }
                        }
                        // Answers to a challenge of a connection that is gone go nowhere.
                        Some(_) = self.answers.recv() => {}
                    }
                }
            };
            match result {
                Ok((mut session, ready)) => {
                    tracing::info!(orchestrator = %url, market = %session.market, heartbeat_ms = session.heartbeat.as_millis() as u64, "connected");
                    let began = Instant::now();
                    let end = self.session(&mut session, ready, shutdown.as_mut()).await;
                    match end {
                        Ok(SessionEnd::Shutdown) => {
                            session.close().await;
                            self.shutdown().await;
                            return Ok(());
                        }
                        Ok(SessionEnd::Lost(e)) => {
                            tracing::warn!("{e}; reconnecting");
                        }
                        Err(e) => {
                            session.close().await;
                            self.shutdown().await;
                            return Err(e);
                        }
                    }
                    if began.elapsed() > Duration::from_secs(10) {
                        backoff.reset();
                    }
                }
                Err(e) if e.is_fatal() => {
                    self.shutdown().await;
                    return Err(DaemonError::Session(e));
                }
                Err(e) => tracing::warn!("{e}"),
            }
            let delay = backoff.next_delay();
            tracing::info!("reconnecting in {} ms", delay.as_millis());
            let sleep = tokio::time::sleep(delay);
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    _ = &mut shutdown => {
                        self.shutdown().await;
                        return Ok(());
                    }
                    _ = &mut sleep => break,
                    Some(ev) = self.events.recv() => {
                        if let Err(Fail::Fatal(e)) = self.on_job_event(ev, None).await {
                            return Err(e);
                        }
                    }
                    Some(_) = self.answers.recv() => {}
                }
            }
        }
    }

    /// One connected session, until it drops, the daemon stops, or the state file fails.
    async fn session(
        &mut self,
        s: &mut Session,
        ready: Vec<LeaseAssignment>,
        mut shutdown: Pin<&mut impl Future<Output = ()>>,
    ) -> Result<SessionEnd, DaemonError> {
        let run = async {
            self.reconcile(s, ready).await?;
            let period = s.heartbeat;
            let start = tokio::time::Instant::now();
            let mut beat = tokio::time::interval_at(start + period, period);
            beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut ping = tokio::time::interval_at(
                start + period / 2,
                period.max(Duration::from_millis(500)),
            );
            ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    biased;
                    _ = &mut shutdown => return Ok::<_, Fail>(true),
                    frame = s.recv() => match frame? {
                        Incoming::Message(m) => self.on_message(s, *m).await?,
                        Incoming::Bad(e) => {
                            s.send(&ToOrchestrator::Error { code: e.code(), message: e.to_string() }).await?;
                        }
                        Incoming::Nothing => {}
                    },
                    Some(ev) = self.events.recv() => self.on_job_event(ev, Some(s)).await?,
                    Some(answer) = self.answers.recv() => s.send(&answer).await?,
                    _ = beat.tick() => {
                        self.heartbeat(s).await?;
                        self.receipts(s).await?;
                    }
                    _ = ping.tick() => s.ping().await?,
                    _ = self.hub.ready.notified() => self.send_logs(s, None, LOG_CHUNKS_PER_TURN).await?,
                }
            }
        };
        match run.await {
            Ok(_) => Ok(SessionEnd::Shutdown),
            Err(Fail::Conn(e)) => Ok(SessionEnd::Lost(e)),
            Err(Fail::Fatal(e)) => Err(e),
        }
    }

    /// After Ready: resend the chain links the orchestrator missed, take new leases, end the
    /// ones it no longer lists, restate each job's state and resend unacknowledged receipts.
    async fn reconcile(
        &mut self,
        s: &mut Session,
        ready: Vec<LeaseAssignment>,
    ) -> Result<(), Fail> {
        let wanted: BTreeMap<LeaseId, LeaseAssignment> =
            ready.into_iter().map(|a| (a.lease, a)).collect();

        // Links the orchestrator lacks, grouped by the heartbeat they went out in.
        let mut replays: BTreeMap<i64, (u64, String, Vec<LeaseBeat>)> = BTreeMap::new();
        for (id, a) in &wanted {
            let (Some(st), Some(theirs)) = (self.leases.get(id), a.chain) else {
                continue;
            };
            let chain = st.service.chain();
            let ours = chain.last().map_or(0, |l| l.seq);
            if theirs.seq < ours {
                let links = self.store.links_after(*id, theirs.seq).await?;
                if links.first().map(|l| l.seq) != Some(theirs.seq + 1) {
                    s.send(&ToOrchestrator::Error {
                        code: ErrorCode::OutOfOrder,
                        message: format!(
                            "lease {}: the links after {} were acknowledged and forgotten here; the chain cannot be resent",
                            id.lease, theirs.seq
                        ),
                    })
                    .await?;
                    continue;
                }
                for link in links {
                    replays
                        .entry(link.heartbeat)
                        .or_insert_with(|| (link.unix_ms, link.telemetry.clone(), Vec::new()))
                        .2
                        .push(LeaseBeat {
                            lease: *id,
                            seq: link.seq,
                            served_seconds: link.served_seconds,
                            head: link.head,
                        });
                }
            } else if theirs.seq > ours || (theirs.seq == ours && theirs.head != chain.head()) {
                tracing::error!(lease = %id.lease, theirs = theirs.seq, ours, "the orchestrator's copy of the heartbeat chain differs from this worker's");
                s.send(&ToOrchestrator::Error {
                    code: ErrorCode::OutOfOrder,
                    message: format!(
                        "lease {}: your chain ends at link {} and this worker's at {}{}",
                        id.lease,
                        theirs.seq,
                        ours,
                        if theirs.seq == ours {
                            " with another head"
                        } else {
                            ""
                        }
                    ),
                })
                .await?;
            }
        }
        for (_, (unix_ms, telemetry, beats)) in replays {
            let telemetry: Telemetry = serde_json::from_str(&telemetry).map_err(|e| {
                Fail::Fatal(DaemonError::Setup(format!(
                    "a stored heartbeat does not parse: {e}"
                )))
            })?;
            s.heartbeats += 1;
            tracing::info!(
                links = beats.len(),
                "resending heartbeat links the orchestrator missed"
            );
            s.send(&ToOrchestrator::Heartbeat(Heartbeat {
                seq: s.heartbeats,
                unix_ms,
                telemetry,
                leases: beats,
                rtt_us: s.rtt_us,
            }))
            .await?;
        }

        // Leases this worker serves that the orchestrator no longer lists.
        let unwanted: Vec<LeaseId> = self
            .leases
            .iter()
            .filter(|(id, st)| st.active() && !wanted.contains_key(id))
            .map(|(id, _)| *id)
            .collect();
        for id in unwanted {
            tracing::info!(lease = %id.lease, "the orchestrator no longer lists this lease; ending it");
            let grace = self.config.runtime.stop_grace_ms;
            if let Some(st) = self.leases.get_mut(&id) {
                st.unwanted = true;
                st.stored.stop = Some((StopReason::LeaseEnded, grace));
            }
            self.stop_job(id, grace, "its lease ended").await?;
            self.maybe_end(id).await?;
        }

        // Receipts not yet acknowledged (their links are all there now), before any job's exit is
        // restated: an exit tells the orchestrator that nothing more will be signed.
        let now = unix_ms();
        for receipt in self.store.unacked_receipts().await? {
            let id = LeaseId {
                lease: receipt.lease,
                nonce: receipt.lease_nonce,
            };
            let recent = self.leases.get(&id).is_some_and(|st| {
                st.stored
                    .ended_unix_ms
                    .is_some_and(|t| now.saturating_sub(t) < ENDED_RETENTION.as_millis() as u64)
            });
            if wanted.contains_key(&id) || recent {
                s.send(&ToOrchestrator::Receipt(receipt)).await?;
            }
        }

        // New leases, then what the others' jobs did.
        for (id, a) in &wanted {
            if !self.leases.contains_key(id) {
                self.accept(a.clone(), Some(s)).await?;
                continue;
            }
            let Some(st) = self.leases.get(id) else {
                continue;
            };
            if let Some(at) = st.stored.started_unix_ms {
                s.send(&ToOrchestrator::JobStarted {
                    lease: *id,
                    unix_ms: at,
                })
                .await?;
            }
            let unreported = self
                .leases
                .get_mut(id)
                .map(|st| std::mem::take(&mut st.unreported))
                .unwrap_or_default();
            for message in unreported {
                s.send(&message).await?;
            }
            let Some(st) = self.leases.get(id) else {
                continue;
            };
            if let Some(exit) = st.stored.exit.clone() {
                let final_due = st.final_due;
                self.send_logs(s, Some(*id), usize::MAX).await?;
                if final_due {
                    // It ended while the daemon was away: its last seconds are signed first.
                    self.heartbeat(s).await?;
                    self.receipts(s).await?;
                }
                s.send(&exited(*id, &exit)).await?;
            }
        }

        // Ended leases past their retention are forgotten.
        let old: Vec<LeaseId> = self
            .leases
            .iter()
            .filter(|(_, st)| {
                st.stored
                    .ended_unix_ms
                    .is_some_and(|t| now.saturating_sub(t) >= ENDED_RETENTION.as_millis() as u64)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in old {
            self.forget(id).await?;
        }
        self.hub.ready.notify_one();
        Ok(())
    }

    async fn on_message(&mut self, s: &mut Session, message: ToWorker) -> Result<(), Fail> {
        match message {
            ToWorker::StartJob(a) => {
                if self.leases.contains_key(&a.lease) {
                    tracing::debug!(lease = %a.lease.lease, "start_job for a lease already served");
                } else {
                    self.accept(a, Some(s)).await?;
                }
            }
            ToWorker::StopJob {
                lease,
                reason,
                grace_ms,
            } => {
                let Some(st) = self.leases.get_mut(&lease) else {
                    return Ok(s
                        .send(&ToOrchestrator::Error {
                            code: ErrorCode::UnknownLease,
                            message: format!(
                                "no lease {} (nonce {}) on this worker",
                                lease.lease, lease.nonce
                            ),
                        })
                        .await?);
                };
                if !st.active() {
                    return Ok(());
                }
                if st.stored.stop.is_none() {
                    st.stored.stop = Some((reason, grace_ms));
                    self.store.save_lease(&st.stored).await?;
                }
                let why = match reason {
                    StopReason::LeaseEnded => "its lease ended",
                    StopReason::DeclaredDown => "the orchestrator declared this worker down",
                    StopReason::Refused => "the orchestrator refused the job",
                };
                self.stop_job(lease, grace_ms, why).await?;
                if let Some(st) = self.leases.get_mut(&lease)
                    && st.stored.exit.is_some()
                {
                    st.final_due = true;
                    self.heartbeat(s).await?;
                    self.receipts(s).await?;
                }
                self.maybe_end(lease).await?;
            }
            ToWorker::Checkpoints { lease, enabled } => {
                if let Some(handle) = self.leases.get(&lease).and_then(|st| st.handle.as_ref()) {
                    let _ = handle.control.send(Control::Checkpoints(enabled));
                }
            }
            ToWorker::ReceiptAck {
                lease,
                served_seconds,
            } => {
                self.store.ack(lease, served_seconds).await?;
                if self.leases.get(&lease).is_some_and(|st| !st.active()) {
                    let left = self
                        .store
                        .unacked_receipts()
                        .await?
                        .iter()
                        .any(|r| r.lease == lease.lease && r.lease_nonce == lease.nonce);
                    if !left {
                        self.forget(lease).await?;
                    }
                }
            }
            ToWorker::Ping { id, .. } => s.send(&ToOrchestrator::Pong { id }).await?,
            ToWorker::Challenge(challenge) => {
                let (backend, answers) = (self.backend.clone(), self.answers_tx.clone());
                tokio::task::spawn_blocking(move || {
                    let id = challenge.id;
                    let answer = match backend
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .commit(&challenge)
                    {
                        Ok(c) => ToOrchestrator::Commitment(c),
                        Err(e) => ToOrchestrator::Error {
                            code: ErrorCode::Malformed,
                            message: format!("challenge {id}: {e}"),
                        },
                    };
                    let _ = answers.send(answer);
                });
            }
            ToWorker::OpenRequest(request) => {
                let (backend, answers) = (self.backend.clone(), self.answers_tx.clone());
                tokio::task::spawn_blocking(move || {
                    let id = request.challenge_id;
                    let answer = match backend
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .open(&request)
                    {
                        Ok(o) => ToOrchestrator::Opening(o),
                        Err(e) => ToOrchestrator::Error {
                            code: ErrorCode::Malformed,
                            message: format!("open request for challenge {id}: {e}"),
                        },
                    };
                    let _ = answers.send(answer);
                });
            }
            ToWorker::Error { code, message } => {
                tracing::warn!(?code, "the orchestrator reports: {message}");
            }
            other @ (ToWorker::Welcome { .. } | ToWorker::Ready { .. }) => {
                s.send(&ToOrchestrator::Error {
                    code: ErrorCode::OutOfOrder,
                    message: format!("{} only opens a session", session::kind(&other)),
                })
                .await?;
            }
        }
        Ok(())
    }

    /// Takes a new lease: refuses its job with the reason, or starts it.
    async fn accept(&mut self, a: LeaseAssignment, s: Option<&mut Session>) -> Result<(), Fail> {
        let id = a.lease;
        // A GPU serves one lease at a time.
        let busy = self.leases.iter().find_map(|(other, st)| {
            let holds = matches!(st.stored.phase, Phase::Starting | Phase::Running);
            let index = a
                .gpu_indices
                .iter()
                .find(|i| holds && st.stored.assignment.gpu_indices.contains(i))?;
            Some(format!("GPU {index} is serving lease {}", other.lease))
        });
        let plan = match busy {
            Some(why) => Err(why),
            None => jobs::plan(
                &a,
                &self.machine,
                self.config.worker,
                &self.config.work_dir,
                self.config.runtime.kind,
            ),
        };
        let mut stored = StoredLease::new(a);
        stored.log_seq_reserved = LOG_SEQ_BLOCK;
        match plan {
            Err(why) => {
                tracing::warn!(lease = %id.lease, "refusing the job: {why}");
                stored.phase = Phase::Exited;
                stored.exit = Some(store::ExitRecord {
                    unix_ms: unix_ms(),
                    exit_code: None,
                    status: format!("refused: {why}"),
                    result_hash: None,
                });
                self.store.save_lease(&stored).await?;
                let exit = stored.exit.clone();
                self.leases
                    .insert(id, LeaseState::new(stored, self.config.program_id));
                if let (Some(s), Some(exit)) = (s, exit) {
                    s.send(&exited(id, &exit)).await?;
                }
            }
            Ok(plan) => {
                tracing::info!(lease = %id.lease, image = %plan.spec.image, gpus = plan.gpus.len(), "starting the job");
                self.store.save_lease(&stored).await?;
                self.hub.open(id, 1);
                let mut st = LeaseState::new(stored, self.config.program_id);
                st.handle = Some(jobs::spawn(self.jobs.clone(), JobStart::Fresh(plan)));
                self.leases.insert(id, st);
            }
        }
        Ok(())
    }

    async fn stop_job(&mut self, id: LeaseId, grace_ms: u32, why: &str) -> Result<(), Fail> {
        if let Some(st) = self.leases.get(&id)
            && let Some(handle) = &st.handle
            && st.stored.exit.is_none()
        {
            let _ = handle.control.send(Control::Stop {
                grace: Duration::from_millis(grace_ms.into()),
                why: why.into(),
            });
        }
        Ok(())
    }

    async fn on_job_event(&mut self, ev: JobEvent, s: Option<&mut Session>) -> Result<(), Fail> {
        let now = Instant::now();
        match ev {
            JobEvent::Started { lease, started } => {
                let Some(st) = self.leases.get_mut(&lease) else {
                    return Ok(());
                };
                st.run = Some(Run::new(
                    started.at,
                    started.unix_ms,
                    st.stored.served_ms,
                    true,
                ));
                st.stored.phase = Phase::Running;
                st.stored.job = Some(started.job);
                st.stored.started_unix_ms = Some(started.unix_ms);
                st.stored.checkpoint_unix_ms = Some(started.unix_ms);
                st.last_receipt_at = now;
                self.store.save_lease(&st.stored).await?;
                tracing::info!(lease = %lease.lease, "job started");
                if let Some(s) = s {
                    s.send(&ToOrchestrator::JobStarted {
                        lease,
                        unix_ms: started.unix_ms,
                    })
                    .await?;
                }
            }
            JobEvent::Resumed { lease, at, unix_ms } => {
                let Some(st) = self.leases.get_mut(&lease) else {
                    return Ok(());
                };
                let unix = unix_ms;
                if let Some(checkpoint) = st.stored.checkpoint_unix_ms {
                    // The same run went on while the daemon was away, up to the moment it was
                    // found again; from there the clock below counts.
                    st.stored.served_ms += unix.saturating_sub(checkpoint);
                }
                st.run = Some(Run::new(at, unix, st.stored.served_ms, false));
                st.stored.checkpoint_unix_ms = Some(unix);
                self.store.save_lease(&st.stored).await?;
                tracing::info!(lease = %lease.lease, served_s = st.stored.served_ms / 1000, "job found running again");
            }
            JobEvent::Stopped { lease, at, exit } => {
                let Some(st) = self.leases.get_mut(&lease) else {
                    return Ok(());
                };
                if let Some(run) = st.run.take() {
                    let mut elapsed = at
                        .unwrap_or(now)
                        .saturating_duration_since(run.start)
                        .as_millis() as u64;
                    // Never past the engine's own account: its finish time, and for a run
                    // started here its run time. Without either, only as far as confirmed.
                    let finished = exit.as_ref().and_then(|e| e.finished_unix_ms);
                    let engine = exit.as_ref().and_then(|e| e.run_ms).filter(|_| run.fresh);
                    if let Some(finished) = finished {
                        elapsed = elapsed.min(finished.saturating_sub(run.start_unix_ms));
                    }
                    if let Some(engine) = engine {
                        elapsed = elapsed.min(engine);
                    }
                    if finished.is_none() && engine.is_none() {
                        elapsed = elapsed.min(
                            run.confirmed
                                .saturating_duration_since(run.start)
                                .as_millis() as u64,
                        );
                    }
                    st.stored.served_ms = run.served_at_start_ms + elapsed;
                } else if let (Some(checkpoint), Some(finished)) = (
                    st.stored.checkpoint_unix_ms,
                    exit.as_ref().and_then(|e| e.finished_unix_ms),
                ) {
                    // It ended while the daemon was away: count up to the engine's finish.
                    let unix = unix_ms();
                    st.stored.served_ms += finished.min(unix).saturating_sub(checkpoint);
                }
                st.stored.served_ms = st.stored.served_ms.max(st.service.served_seconds() * 1000);
                st.stored.checkpoint_unix_ms = None;
                st.stored.phase = Phase::Exited;
                self.store.save_lease(&st.stored).await?;
            }
            JobEvent::Checkpoint(checkpoint) => {
                tracing::info!(lease = %checkpoint.lease.lease, hash = %gpumesh_protocol::hex(&checkpoint.hash[..8]), bytes = checkpoint.size, "checkpoint stored");
                self.report(
                    checkpoint.lease,
                    vec![ToOrchestrator::Checkpoint(checkpoint)],
                    s,
                )
                .await?;
            }
            JobEvent::Restore {
                lease,
                restored,
                skipped,
            } => {
                let mut messages: Vec<ToOrchestrator> = skipped
                    .into_iter()
                    .map(|(hash, reason)| ToOrchestrator::CheckpointSkipped {
                        lease,
                        hash,
                        reason,
                    })
                    .collect();
                if let Some(hash) = restored {
                    messages.push(ToOrchestrator::CheckpointRestored { lease, hash });
                }
                self.report(lease, messages, s).await?;
            }
            JobEvent::Exited { lease, exit } => {
                let Some(st) = self.leases.get_mut(&lease) else {
                    return Ok(());
                };
                tracing::info!(lease = %lease.lease, status = %exit.status, "job exited");
                st.stored.phase = Phase::Exited;
                st.stored.exit = Some(exit.clone());
                st.run = None;
                st.handle = None;
                st.final_due = true;
                self.store.save_lease(&st.stored).await?;
                if let Some(s) = s {
                    self.send_logs(s, Some(lease), usize::MAX).await?;
                    // The job's last seconds: a heartbeat that shows them, then their receipt,
                    // and only then the exit, which tells the orchestrator that nothing more
                    // will be signed for this lease (it closes the lease on the newest receipt).
                    self.heartbeat(s).await?;
                    self.receipts(s).await?;
                    s.send(&exited(lease, &exit)).await?;
                }
                self.maybe_end(lease).await?;
            }
        }
        Ok(())
    }

    /// Sends a lease's checkpoint reports now, or after the next Ready when not connected.
    async fn report(
        &mut self,
        lease: LeaseId,
        messages: Vec<ToOrchestrator>,
        s: Option<&mut Session>,
    ) -> Result<(), Fail> {
        match s {
            Some(s) => {
                for message in &messages {
                    s.send(message).await?;
                }
            }
            None => {
                if let Some(st) = self.leases.get_mut(&lease) {
                    st.unreported.extend(messages);
                }
            }
        }
        Ok(())
    }

    /// Ends a lease whose job is over once nothing is left to sign for it.
    async fn maybe_end(&mut self, id: LeaseId) -> Result<(), Fail> {
        let Some(st) = self.leases.get_mut(&id) else {
            return Ok(());
        };
        let done = st.active()
            && st.stored.stop.is_some()
            && st.stored.exit.is_some()
            && (st.unwanted
                || st.stored.last_receipt_seconds >= st.service.served_seconds() && !st.final_due);
        if !done {
            return Ok(());
        }
        st.stored.phase = Phase::Ended;
        st.stored.ended_unix_ms = Some(unix_ms());
        self.store.save_lease(&st.stored).await?;
        self.hub.close(id);
        tracing::info!(lease = %id.lease, served_s = st.service.served_seconds(), "lease ended");
        let dir = jobs::lease_dir(&self.config.work_dir, id);
        if dir.exists() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        let unacked = self
            .store
            .unacked_receipts()
            .await?
            .iter()
            .any(|r| r.lease == id.lease && r.lease_nonce == id.nonce);
        if !unacked {
            self.forget(id).await?;
        }
        Ok(())
    }

    async fn forget(&mut self, id: LeaseId) -> Result<(), Fail> {
        self.store.forget(id).await?;
        self.leases.remove(&id);
        self.hub.close(id);
        Ok(())
    }

    /// One heartbeat: a link on every active lease's chain, written down, then sent.
    async fn heartbeat(&mut self, s: &mut Session) -> Result<(), Fail> {
        // Ask the runtime first whether each running job still runs: a heartbeat shows time up
        // to the last moment it did (taken before asking), never beyond, however late the
        // engine reports an exit.
        let (checked_at, checked_unix) = (Instant::now(), unix_ms());
        let runtime = self.jobs.runtime.clone();
        let checks = self.leases.iter().filter_map(|(id, st)| {
            st.run?;
            let (id, job, runtime) = (*id, st.stored.job.clone()?, runtime.clone());
            Some(async move { (id, runtime.is_running(&job).await) })
        });
        for (id, running) in futures_util::future::join_all(checks).await {
            if let Some(run) = self.leases.get_mut(&id).and_then(|st| st.run.as_mut())
                && running
            {
                run.confirmed = checked_at;
                run.confirmed_unix_ms = checked_unix;
            }
        }
        let unix = unix_ms().max(self.last_unix_ms);
        self.last_unix_ms = unix;
        let telemetry = self.sampler.sample();
        let digest = telemetry.digest_bytes();
        let mut beats = Vec::new();
        let mut links = Vec::new();
        for (id, st) in self.leases.iter_mut().filter(|(_, st)| st.active()) {
            let served = st.served_seconds();
            let head = match st.service.heartbeat(unix, served, &digest) {
                Ok(head) => head,
                Err(e) => {
                    tracing::error!(lease = %id.lease, "heartbeat refused by the chain: {e}");
                    continue;
                }
            };
            let seq = st.service.chain().last().map_or(0, |l| l.seq);
            if let Some(run) = st.run {
                st.stored.served_ms = st.served_ms();
                st.stored.checkpoint_unix_ms = Some(run.confirmed_unix_ms);
            }
            st.stored.chain = st.service.chain().clone();
            beats.push(LeaseBeat {
                lease: *id,
                seq,
                served_seconds: served,
                head,
            });
            links.push(store::NewLink {
                lease: *id,
                seq,
                served_seconds: served,
                head,
            });
        }
        let touched: Vec<&StoredLease> = self
            .leases
            .values()
            .filter(|st| st.active())
            .map(|st| &st.stored)
            .collect();
        let telemetry_json = String::from_utf8_lossy(&digest).into_owned();
        self.store
            .record_heartbeat(unix, &telemetry_json, &links, &touched)
            .await?;
        s.heartbeats += 1;
        s.send(&ToOrchestrator::Heartbeat(Heartbeat {
            seq: s.heartbeats,
            unix_ms: unix,
            telemetry,
            leases: beats,
            rtt_us: s.rtt_us,
        }))
        .await?;
        Ok(())
    }

    /// Receipts that are due: every `receipt_every_s` per lease, and a job's last seconds.
    async fn receipts(&mut self, s: &mut Session) -> Result<(), Fail> {
        let now = Instant::now();
        let mut ended = Vec::new();
        let mut signed_any = false;
        for (id, st) in self.leases.iter_mut().filter(|(_, st)| st.active()) {
            let served = st.service.served_seconds();
            let every = Duration::from_secs(st.stored.assignment.receipt_every_s.max(1).into());
            let due = st.final_due || now.saturating_duration_since(st.last_receipt_at) >= every;
            if due && served > st.stored.last_receipt_seconds {
                let receipt = st.service.receipt(&self.config.node_key);
                let seq = st.service.chain().last().map_or(0, |l| l.seq);
                st.stored.last_receipt_seconds = receipt.served_seconds;
                self.store.save_receipt(&receipt, seq, &st.stored).await?;
                s.send(&ToOrchestrator::Receipt(receipt)).await?;
                st.last_receipt_at = now;
                signed_any = true;
            }
            if st.final_due && st.stored.exit.is_some() && st.stored.last_receipt_seconds >= served
            {
                st.final_due = false;
                ended.push(*id);
            }
        }
        if signed_any && s.worker_receipts {
            self.worker_receipts(s).await?;
        }
        for id in ended {
            self.maybe_end(id).await?;
        }
        Ok(())
    }

    /// One signature over what every active lease has served (the claims its lease receipts
    /// make), for a service that settles worker receipts: one Ed25519 verification on chain
    /// pays all of them. Split by the format's limit on leases per receipt.
    async fn worker_receipts(&mut self, s: &mut Session) -> Result<(), Fail> {
        let entries: Vec<ReceiptEntry> = self
            .leases
            .values()
            .filter(|st| st.active() && st.service.served_seconds() > 0)
            .map(|st| st.service.entry())
            .collect();
        for chunk in entries.chunks(MAX_RECEIPT_LEASES) {
            match SignedWorkerReceipt::sign(
                &self.config.node_key,
                self.config.program_id,
                self.config.worker,
                chunk.to_vec(),
            ) {
                Ok(r) => s.send(&ToOrchestrator::WorkerReceipt(r)).await?,
                Err(e) => tracing::warn!(%e, "cannot sign a worker receipt"),
            }
        }
        Ok(())
    }

    /// Sends waiting output: of one lease (all of it, before its JobExited) or of any.
    async fn send_logs(
        &mut self,
        s: &mut Session,
        lease: Option<LeaseId>,
        max: usize,
    ) -> Result<(), Fail> {
        let mut sent = 0;
        while sent < max {
            let Some(chunk) = self.hub.take(lease) else {
                break;
            };
            if let Some(st) = self.leases.get_mut(&chunk.lease)
                && chunk.seq > st.stored.log_seq_reserved
            {
                st.stored.log_seq_reserved = chunk.seq + LOG_SEQ_BLOCK;
                self.store.save_lease(&st.stored).await?;
            }
            s.send(&ToOrchestrator::JobLog {
                lease: chunk.lease,
                stream: chunk.stream,
                seq: chunk.seq,
                data: chunk.data,
            })
            .await?;
            sent += 1;
        }
        if !self.hub.is_empty() {
            self.hub.ready.notify_one();
        }
        Ok(())
    }

    /// Writes down where every running job's clock stands; command jobs are stopped (they
    /// cannot be picked up again), container jobs keep running.
    async fn shutdown(&mut self) {
        if self.config.runtime.kind == RuntimeKind::Command {
            let grace = self.config.runtime.stop_grace_ms.min(5_000);
            let ids: Vec<LeaseId> = self.leases.keys().copied().collect();
            for id in ids {
                let _ = self.stop_job(id, grace, "the worker daemon stopped").await;
            }
        }
        // Let jobs that are finishing (results being stored) or stopping report, briefly.
        let deadline = tokio::time::Instant::now()
            + Duration::from_millis(
                u64::from(self.config.runtime.stop_grace_ms.min(5_000)) + 2_000,
            );
        while self.leases.values().any(|st| {
            st.handle.is_some()
                && (st.stored.phase == Phase::Exited
                    || self.config.runtime.kind == RuntimeKind::Command)
        }) {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(ev)) => {
                    let _ = self.on_job_event(ev, None).await;
                }
                _ => break,
            }
        }
        for st in self.leases.values_mut() {
            if let Some(handle) = st.handle.take() {
                handle.task.abort();
            }
            // As far as the job was last seen running; the next start adds what it ran since.
            if let Some(run) = st.run {
                st.stored.served_ms = st.served_ms();
                st.stored.checkpoint_unix_ms = Some(run.confirmed_unix_ms);
                if let Err(e) = self.store.save_lease(&st.stored).await {
                    tracing::error!("writing the state file at shutdown: {e}");
                }
            }
        }
        self.store.close().await;
        tracing::info!("stopped");
    }
}

fn exited(lease: LeaseId, exit: &store::ExitRecord) -> ToOrchestrator {
    ToOrchestrator::JobExited {
        lease,
        unix_ms: exit.unix_ms,
        exit_code: exit.exit_code,
        status: exit.status.clone(),
        result_hash: exit.result_hash,
    }
}

fn create_private_dir(dir: &std::path::Path) -> Result<(), DaemonError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711)))
        .map_err(|e| DaemonError::Setup(format!("work directory {}: {e}", dir.display())))
}
