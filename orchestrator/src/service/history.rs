//! What the console shows over time. In memory: each worker's recent telemetry (the feed's one
//! sample a second, the newest [`TELEMETRY_KEPT`]) and the recent events an operator looks for
//! (connections, failovers, settlements, challenges). In the store: the market's, each worker's
//! and each order's totals whenever they change on chain (read from the followed copy of the
//! market), and every lease instance's terms, which the chain forgets when the lease closes.

use super::feed::FeedEvent;
use super::state::Shared;
use super::store::LeaseTerms;
use gpumesh_client::Pubkey;
use gpumesh_client::program::state::{Lease, Market, Order, Worker};
use gpumesh_protocol::wire::Telemetry;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;
use tokio::sync::broadcast;
use utoipa::ToSchema;

/// Telemetry samples kept per worker: five minutes at the feed's one a second.
pub const TELEMETRY_KEPT: usize = 300;
/// Recent notable events kept for the operator.
pub const NOTABLE_KEPT: usize = 200;
/// How often the followed copy is compared with the last samples.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// Samples older than this are dropped (checked hourly).
const SAMPLES_KEPT_MS: u64 = 90 * 86_400 * 1_000;
const PRUNE_EVERY: Duration = Duration::from_secs(3_600);

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// One second of a worker's telemetry, summed up over its GPUs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, ToSchema)]
pub struct TelemetrySample {
    /// When the service received it (Unix ms).
    pub unix_ms: u64,
    /// The hottest GPU, °C (none without GPUs).
    pub temperature_c: Option<f32>,
    /// Mean GPU utilisation, % (the host's CPU for a worker without GPUs).
    pub utilization_pct: f32,
    /// Memory in use over all GPUs (the host's for a worker without GPUs), MiB.
    pub memory_used_mib: u64,
    pub memory_total_mib: u64,
    /// Power drawn by all GPUs, W (none without GPUs).
    pub power_w: Option<f32>,
    /// Round trip to the worker as the service last measured it, ms.
    pub rtt_ms: Option<f32>,
}

impl TelemetrySample {
    /// The console draws the same sums from the feed's telemetry events (`console/js/telemetry.js`).
    pub fn of(t: &Telemetry, rtt_us: Option<u32>, unix_ms: u64) -> Self {
        let rtt_ms = rtt_us.map(|us| us as f32 / 1_000.0);
        if t.gpus.is_empty() {
            return Self {
                unix_ms,
                temperature_c: None,
                utilization_pct: t.cpu_pct,
                memory_used_mib: t.memory_used_mib,
                memory_total_mib: t.memory_total_mib,
                power_w: None,
                rtt_ms,
            };
        }
        let n = t.gpus.len() as f32;
        Self {
            unix_ms,
            temperature_c: t.gpus.iter().map(|g| g.temperature_c).reduce(f32::max),
            utilization_pct: t.gpus.iter().map(|g| g.utilization_pct).sum::<f32>() / n,
            memory_used_mib: t.gpus.iter().map(|g| u64::from(g.memory_used_mib)).sum(),
            memory_total_mib: t.gpus.iter().map(|g| u64::from(g.memory_total_mib)).sum(),
            power_w: Some(t.gpus.iter().map(|g| g.power_w).sum()),
            rtt_ms,
        }
    }
}

/// A feed event worth an operator's look, with when the service sent it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Notable {
    pub unix_ms: u64,
    pub event: FeedEvent,
}

/// The market's totals at one moment (amounts in base units).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MarketSample {
    pub stake: String,
    pub unbonding: String,
    pub escrow: String,
    pub claimable: String,
    pub treasury: String,
    pub burned: String,
    pub leased_gpus: u64,
    pub gpu_seconds_served: u64,
    pub emission_distributed: String,
    pub emission_paid: String,
}

impl MarketSample {
    pub fn of(m: &Market) -> Self {
        Self {
            stake: m.total_stake.to_string(),
            unbonding: m.total_unbonding.to_string(),
            escrow: m.total_escrow.to_string(),
            claimable: m.total_claimable.to_string(),
            treasury: m.treasury_balance.to_string(),
            burned: m.total_burned.to_string(),
            leased_gpus: m.leased_gpus,
            gpu_seconds_served: m.total_gpu_seconds,
            emission_distributed: m.emission.distributed.to_string(),
            emission_paid: m.emission.paid.to_string(),
        }
    }
}

/// A worker's money at one moment (amounts in base units).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WorkerSample {
    pub stake: String,
    pub unbonding: String,
    pub earnings_total: String,
    pub earnings_claimable: String,
    pub rewards_total: String,
    pub rewards_claimable: String,
    pub slashed_total: String,
    pub served_gpu_seconds: u64,
    pub gpus_leased: u16,
}

impl WorkerSample {
    pub fn of(w: &Worker) -> Self {
        Self {
            stake: w.stake.to_string(),
            unbonding: w.unbonding.to_string(),
            earnings_total: w.earnings_total.to_string(),
            earnings_claimable: w.earnings_claimable.to_string(),
            rewards_total: w.rewards_total.to_string(),
            rewards_claimable: w.rewards_claimable.to_string(),
            slashed_total: w.record.slashed_total.to_string(),
            served_gpu_seconds: w.record.served_gpu_seconds,
            gpus_leased: w.gpus_leased,
        }
    }
}

/// An order's escrow at one moment (amounts in base units).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OrderSample {
    pub escrow_remaining: String,
    pub total_paid: String,
    pub gpus_assigned: u16,
}

impl OrderSample {
    pub fn of(o: &Order) -> Self {
        Self {
            escrow_remaining: o.escrow_remaining.to_string(),
            total_paid: o.total_paid.to_string(),
            gpus_assigned: o.gpus_assigned,
        }
    }
}

/// A sample with its time, as the API lists them.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Timed<T> {
    pub unix_ms: u64,
    #[serde(flatten)]
    pub sample: T,
}

/// Reads stored samples back (a body that no longer decodes is skipped).
pub fn timed<T: for<'de> Deserialize<'de>>(rows: Vec<(u64, String)>) -> Vec<Timed<T>> {
    rows.into_iter()
        .filter_map(|(unix_ms, body)| {
            serde_json::from_str(&body)
                .ok()
                .map(|sample| Timed { unix_ms, sample })
        })
        .collect()
}

pub fn lease_terms(key: &Pubkey, l: &Lease) -> LeaseTerms {
    LeaseTerms {
        lease: key.to_string(),
        nonce: l.nonce,
        order: l.order.to_string(),
        worker: l.worker.to_string(),
        gpus: l.gpus,
        price_per_gpu_second: l.price_per_gpu_second,
        fee_bps: l.fee_bps,
        start_ts: l.start_ts,
    }
}

/// The in-memory part, shared by the service's tasks and the API.
#[derive(Default)]
pub struct History {
    telemetry: Mutex<HashMap<String, VecDeque<TelemetrySample>>>,
    notable: Mutex<VecDeque<Notable>>,
    /// The market's mint's decimals, read once.
    pub decimals: OnceLock<u8>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl History {
    /// Takes in one feed event.
    pub fn record(&self, event: &FeedEvent, unix_ms: u64) {
        match event {
            FeedEvent::Telemetry {
                worker,
                rtt_us,
                telemetry,
            } => {
                let sample = TelemetrySample::of(telemetry, *rtt_us, unix_ms);
                let mut all = lock(&self.telemetry);
                let ring = all.entry(worker.clone()).or_default();
                if ring.len() == TELEMETRY_KEPT {
                    ring.pop_front();
                }
                ring.push_back(sample);
            }
            FeedEvent::WorkerConnected { .. }
            | FeedEvent::WorkerDisconnected { .. }
            | FeedEvent::WorkerDown { .. }
            | FeedEvent::LeaseStarted { .. }
            | FeedEvent::LeaseEnded { .. }
            | FeedEvent::Settled { .. }
            | FeedEvent::OrderCompleted { .. }
            | FeedEvent::CheckpointRestored { .. }
            | FeedEvent::CheckpointSkipped { .. }
            | FeedEvent::Challenge { .. } => {
                let mut notable = lock(&self.notable);
                if notable.len() == NOTABLE_KEPT {
                    notable.pop_front();
                }
                notable.push_back(Notable {
                    unix_ms,
                    event: event.clone(),
                });
            }
            FeedEvent::ReceiptStored { .. }
            | FeedEvent::OrderWaiting { .. }
            | FeedEvent::Job { .. }
            | FeedEvent::Checkpoint { .. }
            | FeedEvent::JobLog { .. }
            | FeedEvent::Lagged { .. } => {}
        }
    }

    /// A worker's kept telemetry, oldest first.
    pub fn telemetry(&self, worker: &str) -> Vec<TelemetrySample> {
        lock(&self.telemetry)
            .get(worker)
            .map(|r| r.iter().copied().collect())
            .unwrap_or_default()
    }

    /// The newest `limit` notable events, newest first.
    pub fn notable(&self, limit: usize) -> Vec<Notable> {
        lock(&self.notable)
            .iter()
            .rev()
            .take(limit)
            .cloned()
            .collect()
    }
}

/// Runs the recorder and the sampler until the service stops.
pub async fn run(shared: Arc<Shared>, stop: tokio::sync::watch::Receiver<bool>) {
    tokio::join!(listen(shared.clone(), stop.clone()), sample(shared, stop));
}

/// Feeds every event to the in-memory history.
async fn listen(shared: Arc<Shared>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut rx = shared.feed.subscribe();
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            event = rx.recv() => match event {
                Ok(e) => shared.history.record(&e, now_ms()),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => break,
            },
        }
    }
}

/// What changed in the followed copy since the last samples.
#[derive(Default)]
struct Changes {
    samples: Vec<(&'static str, String, String)>,
    terms: Vec<LeaseTerms>,
}

/// Every second: a sample of each subject whose totals changed, and the terms of new leases.
async fn sample(shared: Arc<Shared>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut last: HashMap<(&'static str, String), String> = HashMap::new();
    for kind in ["market", "worker", "order"] {
        match shared.store.latest_samples(kind).await {
            Ok(rows) => last.extend(rows.into_iter().map(|(s, b)| ((kind, s), b))),
            Err(e) => tracing::warn!(%e, "cannot read the newest samples"),
        }
    }
    let mut known: HashSet<(Pubkey, u64)> = HashSet::new();
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut pruned = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = tick.tick() => {}
        }
        let changes = {
            let mirror = shared.mirror();
            let Some(m) = mirror.as_ref() else { continue };
            changes(&m.market, &m.workers, &m.orders, &m.leases, &last, &known)
        };
        let at = now_ms();
        for (kind, subject, body) in changes.samples {
            match shared.store.put_sample(kind, &subject, at, &body).await {
                Ok(()) => {
                    last.insert((kind, subject), body);
                }
                Err(e) => tracing::warn!(%e, "cannot store a sample"),
            }
        }
        for t in changes.terms {
            let id = t.lease.parse().map(|k: Pubkey| (k, t.nonce));
            match shared.store.put_lease_terms(&t).await {
                Ok(()) => {
                    if let Ok(id) = id {
                        known.insert(id);
                    }
                }
                Err(e) => tracing::warn!(%e, "cannot store a lease's terms"),
            }
        }
        if pruned.elapsed() >= PRUNE_EVERY {
            pruned = tokio::time::Instant::now();
            if let Err(e) = shared
                .store
                .prune_samples(at.saturating_sub(SAMPLES_KEPT_MS))
                .await
            {
                tracing::warn!(%e, "cannot prune old samples");
            }
        }
    }
}

fn changes(
    market_account: &Market,
    workers: &HashMap<Pubkey, Worker>,
    orders: &HashMap<Pubkey, Order>,
    leases: &HashMap<Pubkey, Lease>,
    last: &HashMap<(&'static str, String), String>,
    known: &HashSet<(Pubkey, u64)>,
) -> Changes {
    let mut out = Changes::default();
    let mut add = |kind: &'static str, subject: String, body: Option<String>| {
        if let Some(body) = body
            && last.get(&(kind, subject.clone())) != Some(&body)
        {
            out.samples.push((kind, subject, body));
        }
    };
    add(
        "market",
        String::new(),
        serde_json::to_string(&MarketSample::of(market_account)).ok(),
    );
    for (k, w) in workers {
        add(
            "worker",
            k.to_string(),
            serde_json::to_string(&WorkerSample::of(w)).ok(),
        );
    }
    for (k, o) in orders {
        add(
            "order",
            k.to_string(),
            serde_json::to_string(&OrderSample::of(o)).ok(),
        );
    }
    out.terms = leases
        .iter()
        .filter(|(k, l)| !known.contains(&(**k, l.nonce)))
        .map(|(k, l)| lease_terms(k, l))
        .collect();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use gpumesh_protocol::wire::GpuTelemetry;

    fn gpu(index: u16, temperature_c: f32, utilization_pct: f32, power_w: f32) -> GpuTelemetry {
        GpuTelemetry {
            index,
            temperature_c,
            utilization_pct,
            memory_used_mib: 1_000,
            memory_total_mib: 80_000,
            power_w,
            sm_clock_mhz: 1_980,
            memory_clock_mhz: 2_619,
        }
    }

    #[test]
    fn a_sample_sums_the_gpus_and_falls_back_to_the_host() {
        let t = Telemetry {
            gpus: vec![gpu(0, 61.0, 90.0, 300.0), gpu(1, 70.0, 50.0, 250.0)],
            cpu_pct: 12.0,
            memory_used_mib: 4_096,
            memory_total_mib: 65_536,
        };
        let s = TelemetrySample::of(&t, Some(1_500), 7);
        assert_eq!(s.temperature_c, Some(70.0));
        assert_eq!(s.utilization_pct, 70.0);
        assert_eq!((s.memory_used_mib, s.memory_total_mib), (2_000, 160_000));
        assert_eq!(s.power_w, Some(550.0));
        assert_eq!(s.rtt_ms, Some(1.5));
        let host = TelemetrySample::of(&Telemetry { gpus: vec![], ..t }, None, 7);
        assert_eq!(host.temperature_c, None);
        assert_eq!(host.utilization_pct, 12.0);
        assert_eq!(host.memory_used_mib, 4_096);
        assert_eq!(host.power_w, None);
    }

    #[test]
    fn telemetry_and_notable_events_are_bounded() {
        let h = History::default();
        for i in 0..(TELEMETRY_KEPT as u64 + 5) {
            h.record(
                &FeedEvent::Telemetry {
                    worker: "w".into(),
                    rtt_us: None,
                    telemetry: Telemetry::default(),
                },
                i,
            );
        }
        let kept = h.telemetry("w");
        assert_eq!(kept.len(), TELEMETRY_KEPT);
        assert_eq!(kept[0].unix_ms, 5, "the oldest go first");
        for i in 0..(NOTABLE_KEPT as u64 + 1) {
            h.record(&FeedEvent::WorkerDisconnected { worker: "w".into() }, i);
        }
        h.record(
            &FeedEvent::ReceiptStored {
                order: "o".into(),
                worker: "w".into(),
                lease: "l".into(),
                nonce: 1,
                served_seconds: 1,
            },
            1_000,
        );
        let notable = h.notable(NOTABLE_KEPT * 2);
        assert_eq!(notable.len(), NOTABLE_KEPT);
        assert_eq!(notable[0].unix_ms, NOTABLE_KEPT as u64, "newest first");
    }
}
