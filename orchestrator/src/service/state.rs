//! What the running service knows beyond the chain: connected workers and their sessions, the
//! leases it operates with their heartbeat chains and newest receipts, and why orders wait. One
//! `std::sync::Mutex` guards it, another the follower's copy of the market; no lock is held
//! across an `.await`, and code that needs both takes `live` first.

use super::config::Config;
use super::feed::Feed;
use super::follow::Mirror;
use super::history::History;
use super::metrics::Metrics;
use super::store::Store;
use crate::actions::Orchestrator;
use gpumesh_client::ix::LeaseRef;
use gpumesh_client::{Chain, MarketAddresses, Pubkey};
use gpumesh_protocol::heartbeat::HeartbeatChain;
use gpumesh_protocol::wire::{
    CheckpointRef, HardwareReport, LeaseId, RESTORE_CANDIDATES, Telemetry, ToWorker,
};
use gpumesh_protocol::{Key, SignedReceipt};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use tokio::sync::{Notify, mpsc};

/// Heads kept per lease to check receipts against (a receipt signs a head the heartbeats showed).
const HEADS_KEPT: usize = 256;

/// The chain, shared by the service's tasks. Chain calls block (JSON-RPC), so they run on the
/// blocking pool, one at a time.
#[derive(Clone)]
pub struct ChainHandle(Arc<Mutex<Box<dyn Chain + Send>>>);

impl ChainHandle {
    pub fn new(chain: Box<dyn Chain + Send>) -> Self {
        Self(Arc::new(Mutex::new(chain)))
    }

    /// Runs `f` with the chain on the blocking pool.
    pub async fn call<R, F>(&self, f: F) -> R
    where
        R: Send + 'static,
        F: FnOnce(&mut dyn Chain) -> R + Send + 'static,
    {
        let chain = self.0.clone();
        let task = tokio::task::spawn_blocking(move || {
            let mut guard = chain.lock().unwrap_or_else(|e| e.into_inner());
            f(guard.as_mut())
        });
        match task.await {
            Ok(r) => r,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
}

/// A worker's live connection.
pub struct Session {
    /// Distinguishes a reconnect from the connection it replaced.
    pub id: u64,
    pub node_key: Key,
    pub tx: mpsc::Sender<ToWorker>,
    pub last_seen: Instant,
    pub heartbeat_seq: u64,
    pub rtt_us: Option<u32>,
    pub telemetry: Telemetry,
    pub hardware: HardwareReport,
    pub connected_at: Instant,
    /// When this worker's telemetry last went to the feed.
    pub telemetry_fed: Option<Instant>,
    /// Passed a compute challenge for its claimed class (or already serves leases): placement
    /// may offer it work.
    pub verified: bool,
    /// A challenge round is in progress: its GPUs are busy proving.
    pub challenging: bool,
}

/// Where a lease's job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobPhase {
    Assigned,
    Running,
    Exited,
}

/// A lease this service operates.
pub struct Tracked {
    pub lease: LeaseRef,
    pub id: LeaseId,
    pub worker: Pubkey,
    pub order: Pubkey,
    pub gpus: u16,
    pub gpu_indices: Vec<u16>,
    pub chain: HeartbeatChain,
    /// Served seconds → chain head, for the newest heartbeats.
    pub heads: BTreeMap<u64, [u8; 32]>,
    /// Whether the next beat may set a new base (after a restart of the service).
    pub resumed: bool,
    pub last_beat: Instant,
    pub latest_receipt: Option<SignedReceipt>,
    /// The newest receipts by the seconds they claim (at most [`RECEIPTS_KEPT`]): when the
    /// program caps what a lease may be paid (its order's close request, a preemption, the
    /// term), the newest one within the cap is what settles.
    pub receipts: BTreeMap<u64, SignedReceipt>,
    pub settled_seconds: u64,
    /// When this service last settled the lease (or took it on).
    pub settled_at: Instant,
    pub job: JobPhase,
    pub result_hash: Option<[u8; 32]>,
    pub assigned_at: Instant,
    /// When this lease replaced one declared down: the moment the old worker's last heartbeat
    /// arrived, for the failover latency.
    pub failover_from: Option<Instant>,
    /// When the worker reported the job's exit.
    pub exited_at: Option<Instant>,
    /// Not declared down before this moment: a failover of this lease failed, or the service
    /// restarted and its worker has the restart grace to reconnect.
    pub retry_at: Option<Instant>,
    /// When the job was last told to stop because its order can pay no more (term served or
    /// escrow spent), and why.
    pub limit_stop: Option<(Instant, &'static str)>,
}

/// Receipts kept per lease for a capped settlement (a minute's worth at one a second).
pub const RECEIPTS_KEPT: usize = 64;

impl Tracked {
    /// Keeps `r` as the newest receipt and among the recent ones.
    pub fn remember_receipt(&mut self, r: SignedReceipt) {
        self.receipts.insert(r.served_seconds, r.clone());
        while self.receipts.len() > RECEIPTS_KEPT {
            let Some(first) = self.receipts.keys().next().copied() else {
                break;
            };
            self.receipts.remove(&first);
        }
        self.latest_receipt = Some(r);
    }

    /// The newest receipt that pays something and claims no more than `cap` seconds (none: the
    /// newest that pays).
    pub fn payable(&self, cap: Option<u64>) -> Option<SignedReceipt> {
        let cap = cap.unwrap_or(u64::MAX);
        let newest = self
            .latest_receipt
            .as_ref()
            .filter(|r| r.served_seconds <= cap)
            .or_else(|| self.receipts.range(..=cap).next_back().map(|(_, r)| r))?;
        (newest.served_seconds > self.settled_seconds).then(|| newest.clone())
    }

    /// Seconds served as the newest heartbeat showed them.
    pub fn shown_seconds(&self) -> u64 {
        self.heads.keys().next_back().copied().unwrap_or(0)
    }

    pub fn remember_head(&mut self, served: u64, head: [u8; 32]) {
        self.heads.insert(served, head);
        while self.heads.len() > HEADS_KEPT {
            let Some(first) = self.heads.keys().next().copied() else {
                break;
            };
            self.heads.remove(&first);
        }
    }
}

#[derive(Default)]
pub struct Live {
    pub sessions: HashMap<Pubkey, Session>,
    pub leases: HashMap<LeaseId, Tracked>,
    /// Why each waiting order has no (full) placement yet, in words.
    pub waiting: HashMap<Pubkey, String>,
    /// Orders whose lease was closed because its worker went down: when its last heartbeat came.
    pub failed_over: HashMap<Pubkey, Instant>,
    pub next_session: u64,
    /// Workers that passed a compute challenge in this service's life.
    pub verified: std::collections::HashSet<Pubkey>,
    /// Each order's restorable checkpoints, newest first (the store has them all).
    pub checkpoints: HashMap<Pubkey, Vec<CheckpointRef>>,
    /// Orders whose buyer turned checkpoints off.
    pub checkpoints_off: std::collections::HashSet<Pubkey>,
    /// Orders whose job ended (exited, or stopped because the order can pay no more): never
    /// placed again, even in the moment between their lease's close and their completion.
    pub finished: std::collections::HashSet<Pubkey>,
    /// Each connected worker's newest worker receipt (one signature over all its leases).
    pub worker_receipts: HashMap<Pubkey, gpumesh_protocol::SignedWorkerReceipt>,
}

impl Live {
    /// Records a stored checkpoint of `order` in its place (newest first).
    pub fn add_checkpoint(&mut self, order: Pubkey, c: CheckpointRef) {
        let list = self.checkpoints.entry(order).or_default();
        if list.iter().any(|k| k.hash == c.hash) {
            return;
        }
        let at = list
            .iter()
            .position(|k| k.unix_ms < c.unix_ms)
            .unwrap_or(list.len());
        list.insert(at, c);
    }

    /// Forgets a checkpoint a daemon could not restore.
    pub fn drop_checkpoint(&mut self, order: &Pubkey, hash: &[u8; 32]) {
        if let Some(list) = self.checkpoints.get_mut(order) {
            list.retain(|k| k.hash != *hash);
        }
    }

    /// What a new lease of `order` restores: the newest checkpoints, the ones before as
    /// fallbacks.
    pub fn restore_for(&self, order: &Pubkey) -> Vec<CheckpointRef> {
        if self.checkpoints_off.contains(order) {
            return vec![];
        }
        self.checkpoints
            .get(order)
            .map(|l| l.iter().take(RESTORE_CANDIDATES).copied().collect())
            .unwrap_or_default()
    }
}

/// Everything the service's tasks share.
pub struct Shared {
    pub cfg: Config,
    pub program_id: Key,
    pub addrs: MarketAddresses,
    pub orchestrator: Arc<Orchestrator>,
    pub chain: ChainHandle,
    /// The connection failover sends through, so that closing a down worker's lease never waits
    /// behind a settlement's or an assignment's confirmation (the same as `chain` when the
    /// service was given one connection).
    pub failover_chain: ChainHandle,
    pub store: Store,
    pub live: Mutex<Live>,
    /// The market as the websocket follower keeps it (`None` until its first listing).
    pub mirror: Mutex<Option<Mirror>>,
    /// Wakes the placement task (a new order or spec, a worker joined, a lease ended).
    pub placement: Notify,
    /// Wakes the settlement task early (a lease ended, an order's escrow runs low).
    pub settlement: Notify,
    pub metrics: Metrics,
    pub feed: Feed,
    /// Recent telemetry and notable events, for the console.
    pub history: History,
    /// Turns true when the service stops (long-lived connections end with it).
    pub stopping: tokio::sync::watch::Receiver<bool>,
}

impl Shared {
    pub fn live(&self) -> MutexGuard<'_, Live> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn mirror(&self) -> MutexGuard<'_, Option<Mirror>> {
        self.mirror.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends to a connected worker; `false` when it is not connected (or its queue is full).
    pub fn send_to(&self, worker: &Pubkey, message: ToWorker) -> bool {
        let live = self.live();
        match live.sessions.get(worker) {
            Some(s) => s.tx.try_send(message).is_ok(),
            None => false,
        }
    }
}
