//! What each page of the web console shows, one endpoint per page, assembled from the followed
//! copy of the market (the chain listed again when the websocket is down), the service's live
//! state and its store. Like the rest of the API: amounts are strings of base units, addresses
//! base58, and every endpoint is in the OpenAPI document (merged from [`ConsoleApi`]).
//!
//! - `GET /v1/console`: the market, its mint's decimals, the cluster and its explorer, the names
//!   of regions and classes (what every page needs first);
//! - `GET /v1/market/overview`: the network page (workers by region and class, utilisation,
//!   prices per class against the reference and the breaker, emission, fees, slashes, history);
//! - `GET /v1/workers/{worker}`: the worker page (chain account, connection, recent telemetry,
//!   leases now and before, yield, money over time);
//! - `GET /v1/suppliers/{owner}`: the supplier page (the owner's worker in this market);
//! - `GET /v1/orders/{order}/activity`: the order page (also after the order closed: every
//!   lease instance with its receipts and settlements, spend over time);
//! - `GET /v1/operator`: the operator page (RPC health, chain following, counters, recent
//!   events).

use super::api::{
    ApiError, ApiErrorBody, ReceiptInfo, account, class_name, internal, key, upstream,
};
use super::history::{
    MarketSample, Notable, OrderSample, TelemetrySample, Timed, WorkerSample, now_ms, timed,
};
use super::state::Shared;
use super::store::{JobRecord, LeaseTerms, Settlement};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use gpumesh_client::program::instructions::breaker_cap;
use gpumesh_client::program::state::{Lease, Market, Order, OrderMode, OrderStatus, Worker};
use gpumesh_client::stake_yield::{StakeYield, percent_of_ppm};
use gpumesh_client::{ChainExt, Pubkey, filters, receipt};
use gpumesh_protocol::hex;
use gpumesh_protocol::region::REGION_NAMES;
use gpumesh_protocol::wire::{HardwareReport, LeaseId, Telemetry};
use gpumesh_protocol::{GpuClass, Region};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use utoipa::{OpenApi, ToSchema};

/// Samples a page charts at most.
const SAMPLES_SHOWN: i64 = 500;
/// Receipts listed per lease instance on an order's page (the newest).
const RECEIPTS_SHOWN: i64 = 20;
/// Past lease instances listed on a worker's page (the newest).
const LEASES_SHOWN: i64 = 50;
/// Notable events on the operator's page (the newest).
const NOTABLE_SHOWN: usize = 50;
/// How long the operator page's RPC probe waits.
const RPC_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

fn region_name(code: u8) -> String {
    Region::from_code(code)
        .ok()
        .and_then(Region::known_name)
        .map(str::to_string)
        .unwrap_or_else(|| format!("region-{code}"))
}

/// The Solana cluster an RPC URL points at, by its well-known hosts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Cluster {
    /// `localnet`, `devnet`, `testnet`, `mainnet-beta`, or `custom`.
    pub name: String,
    /// A transaction's page on the cluster's explorer, `{signature}` to replace (none for a
    /// local or unknown cluster).
    pub explorer_tx: Option<String>,
    /// An account's page on the explorer, `{address}` to replace.
    pub explorer_address: Option<String>,
    /// What to pass the `gpumesh` CLI as `--url` (none where the URL is not public: it may carry
    /// a key, so the console never shows it).
    pub cli_url: Option<String>,
}

impl Cluster {
    pub fn of(rpc_url: &str) -> Self {
        let public = |name: &str, query: &str| Cluster {
            name: name.into(),
            explorer_tx: Some(format!(
                "https://explorer.solana.com/tx/{{signature}}{query}"
            )),
            explorer_address: Some(format!(
                "https://explorer.solana.com/address/{{address}}{query}"
            )),
            cli_url: Some(name.into()),
        };
        let host = rpc_url
            .split("://")
            .nth(1)
            .unwrap_or(rpc_url)
            .split(['/', '?'])
            .next()
            .unwrap_or_default();
        match host {
            "api.devnet.solana.com" => public("devnet", "?cluster=devnet"),
            "api.testnet.solana.com" => public("testnet", "?cluster=testnet"),
            "api.mainnet-beta.solana.com" => public("mainnet-beta", ""),
            _ if gpumesh_client::cluster::is_local(rpc_url) => Cluster {
                name: "localnet".into(),
                explorer_tx: None,
                explorer_address: None,
                cli_url: Some(
                    if rpc_url.trim_end_matches('/') == gpumesh_client::cluster::LOCALNET_URL {
                        "localnet".into()
                    } else {
                        rpc_url.to_string()
                    },
                ),
            },
            _ => Cluster {
                name: "custom".into(),
                explorer_tx: None,
                explorer_address: None,
                cli_url: None,
            },
        }
    }
}

/// What every page needs first.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConsoleInfo {
    pub market: String,
    pub mint: String,
    /// The mint's decimals: amounts are base units, shown as tokens.
    pub decimals: u8,
    pub orchestrator: String,
    pub cluster: Cluster,
    /// Region names by code (codes past the list have none yet).
    pub regions: Vec<String>,
    /// GPU class names by code.
    pub classes: Vec<String>,
    pub heartbeat_ms: u32,
    pub grace_ms: u64,
    /// Unix ms on the service's clock.
    pub now_ms: u64,
}

/// The mint's decimals, read from the chain once.
async fn decimals(shared: &Shared) -> Result<u8, ApiError> {
    if let Some(d) = shared.history.decimals.get() {
        return Ok(*d);
    }
    let mint = shared.addrs.mint;
    let d = shared
        .chain
        .call(move |c| gpumesh_client::token::mint_decimals(c, &mint))
        .await
        .map_err(upstream)?;
    Ok(*shared.history.decimals.get_or_init(|| d))
}

#[utoipa::path(
    get,
    path = "/v1/console",
    responses((status = 200, body = ConsoleInfo), (status = 502, body = ApiErrorBody))
)]
pub async fn console(State(shared): State<Arc<Shared>>) -> Result<Json<ConsoleInfo>, ApiError> {
    Ok(Json(ConsoleInfo {
        market: shared.addrs.market.to_string(),
        mint: shared.addrs.mint.to_string(),
        decimals: decimals(&shared).await?,
        orchestrator: shared.orchestrator.pubkey().to_string(),
        cluster: Cluster::of(&shared.cfg.rpc_url),
        regions: REGION_NAMES.iter().map(|r| r.to_string()).collect(),
        classes: GpuClass::ALL.iter().map(|c| c.to_string()).collect(),
        heartbeat_ms: shared.cfg.heartbeat_ms,
        grace_ms: shared.cfg.grace_ms,
        now_ms: now_ms(),
    }))
}

/// Runs `f` on the market's accounts: the followed copy while it is live, else a fresh listing.
async fn with_market<T: Send + 'static>(
    shared: &Shared,
    f: impl Fn(&Market, &HashMap<Pubkey, Worker>, &HashMap<Pubkey, Lease>) -> T + Send + 'static,
) -> Result<T, ApiError> {
    if let Some(m) = shared.mirror().as_ref().filter(|m| m.live) {
        return Ok(f(&m.market, &m.workers, &m.leases));
    }
    let market = shared.addrs.market;
    let accounts = shared
        .chain
        .call(move |c| crate::sync::MarketAccounts::load(c, &market))
        .await
        .map_err(|e| {
            shared.metrics.rpc_errors.inc();
            upstream(e)
        })?;
    let workers = accounts.workers.into_iter().collect();
    let leases = accounts.leases.into_iter().collect();
    Ok(f(&accounts.market, &workers, &leases))
}

/// Workers of one GPU class in one region.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct GridCell {
    pub region: u8,
    pub region_name: String,
    pub class: String,
    pub workers: u32,
    /// Connected to this service now.
    pub connected: u32,
    pub jailed: u32,
    pub gpus: u64,
    pub gpus_leased: u64,
}

/// One GPU class's prices: what workers ask and leases pay, against the reference price and the
/// circuit breaker's cap (per GPU-second).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ClassPrices {
    pub class: String,
    pub code: u8,
    pub workers: u32,
    pub gpus: u64,
    pub gpus_leased: u64,
    /// None while the class has no reference price yet.
    pub reference_price: Option<String>,
    /// reference × (1 + band): no lease is struck above it.
    pub breaker_cap: Option<String>,
    pub ask_min: Option<String>,
    pub ask_median: Option<String>,
    pub ask_max: Option<String>,
    /// Workers asking more than the cap (not matched until the reference catches up).
    pub asking_above_cap: u32,
    /// Prices of the live leases.
    pub lease_price_min: Option<String>,
    pub lease_price_max: Option<String>,
}

/// The suppliers' emission: released linearly over the schedule, shared by leased GPUs.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EmissionInfo {
    pub total: String,
    pub start_ts: i64,
    pub duration_s: i64,
    /// Released by the linear schedule at `as_of_ts`.
    pub unlocked: String,
    pub as_of_ts: i64,
    pub funded: String,
    pub distributed: String,
    pub undistributed: String,
    pub unfunded: String,
    pub accrued: String,
    pub paid: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SlashInfo {
    /// Slashes taken by the market's workers, and what they took.
    pub count: u64,
    pub total: String,
    /// Leases lost offline; proven frauds.
    pub failures: u64,
    pub frauds: u64,
    pub jailed_workers: u32,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FeeInfo {
    pub protocol_fee_bps: u16,
    pub fee_burn_bps: u16,
    /// Fees and slash shares held by the treasury.
    pub treasury: String,
    /// Fees burned so far.
    pub burned: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Overview {
    pub market: String,
    pub paused: bool,
    /// Whether the numbers come from the websocket copy (else from a fresh listing).
    pub following_chain: bool,
    pub workers_on_chain: u32,
    pub workers_connected: u32,
    pub gpus: u64,
    pub gpus_leased: u64,
    /// GPUs leased out of all, in basis points.
    pub utilisation_bps: u32,
    pub open_orders: u32,
    pub active_leases: u32,
    pub stake: String,
    pub escrow: String,
    pub claimable: String,
    pub gpu_seconds_served: u64,
    pub breaker_band_bps: u32,
    pub grid: Vec<GridCell>,
    pub classes: Vec<ClassPrices>,
    pub emission: EmissionInfo,
    pub fees: FeeInfo,
    pub slashes: SlashInfo,
    /// The market's totals whenever they changed (oldest first).
    pub history: Vec<Timed<MarketSample>>,
}

fn median(sorted: &[u64]) -> Option<u64> {
    (!sorted.is_empty()).then(|| sorted[sorted.len() / 2])
}

fn overview_of(
    m: &Market,
    workers: &HashMap<Pubkey, Worker>,
    leases: &HashMap<Pubkey, Lease>,
    connected: &std::collections::HashSet<Pubkey>,
    now_ts: i64,
) -> Overview {
    let mut grid: BTreeMap<(u8, u8), GridCell> = BTreeMap::new();
    let mut asks: BTreeMap<u8, Vec<u64>> = BTreeMap::new();
    let mut slashes = SlashInfo {
        count: 0,
        total: String::new(),
        failures: 0,
        frauds: 0,
        jailed_workers: 0,
    };
    let mut slashed_total: u128 = 0;
    let (mut gpus, mut gpus_leased, mut workers_connected) = (0u64, 0u64, 0u32);
    for (k, w) in workers {
        let h = &w.hardware;
        let cell = grid
            .entry((h.region, h.gpu_class))
            .or_insert_with(|| GridCell {
                region: h.region,
                region_name: region_name(h.region),
                class: class_name(h.gpu_class),
                ..GridCell::default()
            });
        let jailed = w.is_jailed(now_ts);
        let up = connected.contains(k);
        cell.workers += 1;
        cell.connected += u32::from(up);
        cell.jailed += u32::from(jailed);
        cell.gpus += u64::from(h.gpu_count);
        cell.gpus_leased += u64::from(w.gpus_leased);
        gpus += u64::from(h.gpu_count);
        gpus_leased += u64::from(w.gpus_leased);
        workers_connected += u32::from(up);
        asks.entry(h.gpu_class)
            .or_default()
            .push(w.price_per_gpu_second);
        slashes.count += u64::from(w.record.slashes);
        slashes.failures += u64::from(w.record.failures);
        slashes.frauds += u64::from(w.record.frauds);
        slashes.jailed_workers += u32::from(jailed);
        slashed_total += u128::from(w.record.slashed_total);
    }
    slashes.total = slashed_total.to_string();
    let mut lease_prices: BTreeMap<u8, (u64, u64)> = BTreeMap::new();
    for l in leases.values() {
        let Some(w) = workers.get(&l.worker) else {
            continue;
        };
        let e = lease_prices
            .entry(w.hardware.gpu_class)
            .or_insert((u64::MAX, 0));
        e.0 = e.0.min(l.price_per_gpu_second);
        e.1 = e.1.max(l.price_per_gpu_second);
    }
    let mut classes = vec![];
    for code in 0..GpuClass::CODE_LIMIT {
        let reference = m.reference_prices[code as usize];
        let class_asks = asks.get_mut(&code);
        if reference == 0 && class_asks.is_none() {
            continue;
        }
        let cap = breaker_cap(m, code).ok().flatten();
        let mut list = class_asks.map(std::mem::take).unwrap_or_default();
        list.sort_unstable();
        let cells = grid.values().filter(|c| c.class == class_name(code));
        let (cw, cg, cl) = cells.fold((0, 0, 0), |(w, g, l), c| {
            (w + c.workers, g + c.gpus, l + c.gpus_leased)
        });
        let leased = lease_prices.get(&code);
        classes.push(ClassPrices {
            class: class_name(code),
            code,
            workers: cw,
            gpus: cg,
            gpus_leased: cl,
            reference_price: (reference > 0).then(|| reference.to_string()),
            breaker_cap: cap.map(|c| c.to_string()),
            ask_min: list.first().map(u64::to_string),
            ask_median: median(&list).map(|v| v.to_string()),
            ask_max: list.last().map(u64::to_string),
            asking_above_cap: cap.map_or(0, |c| list.iter().filter(|a| **a > c).count() as u32),
            lease_price_min: leased.map(|p| p.0.to_string()),
            lease_price_max: leased.map(|p| p.1.to_string()),
        });
    }
    let e = &m.emission;
    let as_of_ts = now_ts.max(e.last_update_ts);
    let unlocked = gpumesh_client::program::emission::unlocked(e, as_of_ts).unwrap_or(0);
    Overview {
        market: String::new(),
        paused: m.paused,
        following_chain: false,
        workers_on_chain: workers.len() as u32,
        workers_connected,
        gpus,
        gpus_leased,
        utilisation_bps: if gpus == 0 {
            0
        } else {
            (u128::from(gpus_leased) * 10_000 / u128::from(gpus)) as u32
        },
        open_orders: m.open_orders,
        active_leases: m.active_leases,
        stake: m.total_stake.to_string(),
        escrow: m.total_escrow.to_string(),
        claimable: m.total_claimable.to_string(),
        gpu_seconds_served: m.total_gpu_seconds,
        breaker_band_bps: m.params.breaker_band_bps,
        grid: grid.into_values().collect(),
        classes,
        emission: EmissionInfo {
            total: e.total.to_string(),
            start_ts: e.start_ts,
            duration_s: e.duration,
            unlocked: unlocked.to_string(),
            as_of_ts,
            funded: e.funded.to_string(),
            distributed: e.distributed.to_string(),
            undistributed: e.undistributed.to_string(),
            unfunded: e.unfunded.to_string(),
            accrued: e.accrued.to_string(),
            paid: e.paid.to_string(),
        },
        fees: FeeInfo {
            protocol_fee_bps: m.params.protocol_fee_bps,
            fee_burn_bps: m.params.fee_burn_bps,
            treasury: m.treasury_balance.to_string(),
            burned: m.total_burned.to_string(),
        },
        slashes,
        history: vec![],
    }
}

fn now_ts() -> i64 {
    (now_ms() / 1_000) as i64
}

/// The network at a glance.
#[utoipa::path(
    get,
    path = "/v1/market/overview",
    responses((status = 200, body = Overview), (status = 502, body = ApiErrorBody))
)]
pub async fn overview(State(shared): State<Arc<Shared>>) -> Result<Json<Overview>, ApiError> {
    let connected: std::collections::HashSet<Pubkey> =
        shared.live().sessions.keys().copied().collect();
    let following_chain = shared.mirror().as_ref().is_some_and(|m| m.live);
    let now = now_ts();
    let mut view = with_market(&shared, move |m, w, l| {
        overview_of(m, w, l, &connected, now)
    })
    .await?;
    view.market = shared.addrs.market.to_string();
    view.following_chain = following_chain;
    view.history = timed(
        shared
            .store
            .samples("market", "", SAMPLES_SHOWN)
            .await
            .map_err(internal)?,
    );
    Ok(Json(view))
}

/// The yield a worker's stake earned, in percent a year (see `gpumesh_client::stake_yield`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct YieldInfo {
    /// Seconds from registration to `as_of_ts`.
    pub seconds: u64,
    pub as_of_ts: i64,
    pub fees_percent_per_year: String,
    pub emission_percent_per_year: String,
    pub total_percent_per_year: String,
    pub net_percent_per_year: String,
}

impl YieldInfo {
    fn of(w: &Worker, now: i64) -> Option<Self> {
        StakeYield::of(w, now).map(|y| Self {
            seconds: y.seconds,
            as_of_ts: now,
            fees_percent_per_year: percent_of_ppm(y.fees_ppm(), 4),
            emission_percent_per_year: percent_of_ppm(y.emission_ppm(), 4),
            total_percent_per_year: percent_of_ppm(y.total_ppm(), 4),
            net_percent_per_year: percent_of_ppm(y.net_ppm(), 4),
        })
    }
}

/// A worker account as the chain holds it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WorkerAccount {
    pub owner: String,
    pub node_key: String,
    pub class: String,
    pub gpus: u16,
    pub gpus_leased: u16,
    pub active_leases: u16,
    pub vram_mib: u32,
    pub bandwidth_gbps: u32,
    pub region: u8,
    pub region_name: String,
    pub price_per_gpu_second: String,
    pub stake: String,
    pub unbonding: String,
    pub unlock_ts: i64,
    pub jailed: bool,
    pub jailed_until: i64,
    pub earnings_claimable: String,
    pub earnings_total: String,
    pub rewards_claimable: String,
    pub rewards_total: String,
    pub served_gpu_seconds: u64,
    pub leases: u32,
    pub leases_completed: u32,
    pub failures: u32,
    pub frauds: u32,
    pub slashes: u32,
    pub slashed_total: String,
    pub registered_ts: i64,
    /// The scheduler's reliability score, basis points.
    pub reliability_bps: u16,
}

impl WorkerAccount {
    fn of(w: &Worker, now: i64) -> Self {
        Self {
            owner: w.owner.to_string(),
            node_key: w.node_key.to_string(),
            class: class_name(w.hardware.gpu_class),
            gpus: w.hardware.gpu_count,
            gpus_leased: w.gpus_leased,
            active_leases: w.active_leases,
            vram_mib: w.hardware.vram_mib,
            bandwidth_gbps: w.hardware.bandwidth_gbps,
            region: w.hardware.region,
            region_name: region_name(w.hardware.region),
            price_per_gpu_second: w.price_per_gpu_second.to_string(),
            stake: w.stake.to_string(),
            unbonding: w.unbonding.to_string(),
            unlock_ts: w.unlock_ts,
            jailed: w.is_jailed(now),
            jailed_until: w.jailed_until,
            earnings_claimable: w.earnings_claimable.to_string(),
            earnings_total: w.earnings_total.to_string(),
            rewards_claimable: w.rewards_claimable.to_string(),
            rewards_total: w.rewards_total.to_string(),
            served_gpu_seconds: w.record.served_gpu_seconds,
            leases: w.record.leases,
            leases_completed: w.record.leases_completed,
            failures: w.record.failures,
            frauds: w.record.frauds,
            slashes: w.record.slashes,
            slashed_total: w.record.slashed_total.to_string(),
            registered_ts: w.registered_ts,
            reliability_bps: crate::scheduler::reliability(&w.record),
        }
    }
}

/// A worker's connection to this service.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Connection {
    pub connected_s: u64,
    pub last_heartbeat_ms_ago: u64,
    pub rtt_us: Option<u32>,
    /// Passed a compute challenge for its class (placement offers it work).
    pub verified: bool,
    pub hardware: HardwareReport,
    pub telemetry: Telemetry,
}

/// A lease instance on a worker's or an order's page.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LeaseRow {
    pub lease: String,
    pub nonce: u64,
    pub order: String,
    pub worker: String,
    pub gpus: Option<u16>,
    pub price_per_gpu_second: Option<String>,
    pub fee_bps: Option<u16>,
    pub start_ts: Option<i64>,
    /// The lease account is open on chain now.
    pub open: bool,
    /// On chain while open: seconds paid and what they paid.
    pub seconds_settled: Option<u64>,
    pub amount_paid: Option<String>,
    /// This service runs it now: seconds served as the heartbeats show, the newest receipt's.
    pub served_seconds: Option<u64>,
    pub receipt_seconds: Option<u64>,
    /// `assigned`, `running`, `exited`, or the job's last state.
    pub job: Option<String>,
    pub exit_code: Option<i64>,
    pub result_hash: Option<String>,
    /// When the job's state last changed (Unix ms).
    pub updated_ms: Option<i64>,
}

impl LeaseRow {
    fn new(lease: String, nonce: u64, order: String, worker: String) -> Self {
        Self {
            lease,
            nonce,
            order,
            worker,
            gpus: None,
            price_per_gpu_second: None,
            fee_bps: None,
            start_ts: None,
            open: false,
            seconds_settled: None,
            amount_paid: None,
            served_seconds: None,
            receipt_seconds: None,
            job: None,
            exit_code: None,
            result_hash: None,
            updated_ms: None,
        }
    }

    fn terms(&mut self, t: &LeaseTerms) {
        self.gpus = Some(t.gpus);
        self.price_per_gpu_second = Some(t.price_per_gpu_second.to_string());
        self.fee_bps = Some(t.fee_bps);
        self.start_ts = Some(t.start_ts);
    }

    fn chain(&mut self, l: &Lease) {
        self.gpus = Some(l.gpus);
        self.price_per_gpu_second = Some(l.price_per_gpu_second.to_string());
        self.fee_bps = Some(l.fee_bps);
        self.start_ts = Some(l.start_ts);
        self.open = true;
        self.seconds_settled = Some(l.seconds_settled);
        self.amount_paid = Some(l.amount_paid.to_string());
    }

    fn job(&mut self, j: &JobRecord) {
        self.job = Some(j.status.clone());
        self.exit_code = j.exit_code;
        self.result_hash = j.result_hash.clone();
        self.updated_ms = Some(j.updated_ms);
    }
}

/// Lease instances by (address, nonce), newest first by start.
#[derive(Default)]
struct Rows(BTreeMap<(String, u64), LeaseRow>);

impl Rows {
    fn row(&mut self, lease: &str, nonce: u64, order: &str, worker: &str) -> &mut LeaseRow {
        self.0
            .entry((lease.to_string(), nonce))
            .or_insert_with(|| LeaseRow::new(lease.into(), nonce, order.into(), worker.into()))
    }

    /// What this service runs now.
    fn live(&mut self, shared: &Shared, keep: impl Fn(&Pubkey, &Pubkey) -> bool) {
        let live = shared.live();
        for t in live.leases.values().filter(|t| keep(&t.order, &t.worker)) {
            let row = self.row(
                &t.lease.lease.to_string(),
                t.lease.nonce,
                &t.order.to_string(),
                &t.worker.to_string(),
            );
            row.gpus.get_or_insert(t.gpus);
            row.served_seconds = Some(t.chain.served_seconds());
            row.receipt_seconds = t.latest_receipt.as_ref().map(|r| r.served_seconds);
            row.job = Some(format!("{:?}", t.job).to_lowercase());
        }
    }

    fn into_sorted(self) -> Vec<LeaseRow> {
        let mut rows: Vec<LeaseRow> = self.0.into_values().collect();
        rows.sort_by(|a, b| {
            (b.start_ts, b.updated_ms, b.nonce).cmp(&(a.start_ts, a.updated_ms, a.nonce))
        });
        rows
    }
}

/// The live lease accounts that `filter` picks: from the followed copy while it is live, else
/// listed from the chain.
async fn open_leases(
    shared: &Shared,
    filter: Vec<gpumesh_client::AccountFilter>,
    keep: impl Fn(&Lease) -> bool,
) -> Result<Vec<(Pubkey, Lease)>, ApiError> {
    if let Some(m) = shared.mirror().as_ref().filter(|m| m.live) {
        return Ok(m
            .leases
            .iter()
            .filter(|(_, l)| keep(l))
            .map(|(k, l)| (*k, l.clone()))
            .collect());
    }
    let listed = shared
        .chain
        .call(move |c| c.list_decoded::<Lease>(&filter))
        .await
        .map_err(upstream)?;
    Ok(listed.into_iter().filter(|(_, l)| keep(l)).collect())
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WorkerDetail {
    pub worker: String,
    pub account: WorkerAccount,
    /// None while it is not connected to this service.
    pub connection: Option<Connection>,
    /// The newest seconds of telemetry (one sample a second, oldest first).
    pub telemetry: Vec<TelemetrySample>,
    /// Lease instances: the open ones, then the newest before them.
    pub leases: Vec<LeaseRow>,
    pub stake_yield: Option<YieldInfo>,
    /// Its money whenever it changed on chain (oldest first).
    pub history: Vec<Timed<WorkerSample>>,
}

async fn worker_detail(shared: &Shared, worker: Pubkey) -> Result<WorkerDetail, ApiError> {
    let copied = shared
        .mirror()
        .as_ref()
        .filter(|m| m.live)
        .and_then(|m| m.workers.get(&worker).cloned());
    let w: Worker = match copied {
        Some(w) => w,
        None => account::<Worker>(shared, worker)
            .await?
            .filter(|w| w.market == shared.addrs.market)
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    format!("no worker {worker} in this market"),
                )
            })?,
    };
    let now = now_ts();
    let connection = {
        let live = shared.live();
        live.sessions.get(&worker).map(|s| Connection {
            connected_s: s.connected_at.elapsed().as_secs(),
            last_heartbeat_ms_ago: s.last_seen.elapsed().as_millis() as u64,
            rtt_us: s.rtt_us,
            verified: s.verified || live.verified.contains(&worker),
            hardware: s.hardware.clone(),
            telemetry: s.telemetry.clone(),
        })
    };
    let text = worker.to_string();
    let mut rows = Rows::default();
    for t in shared
        .store
        .lease_terms_of_worker(&text, LEASES_SHOWN)
        .await
        .map_err(internal)?
    {
        rows.row(&t.lease, t.nonce, &t.order, &t.worker).terms(&t);
    }
    for j in shared
        .store
        .jobs_of_worker(&text, LEASES_SHOWN)
        .await
        .map_err(internal)?
    {
        rows.row(
            &j.lease.lease.to_string(),
            j.lease.nonce,
            &j.order,
            &j.worker,
        )
        .job(&j);
    }
    for (k, l) in open_leases(shared, filters::leases_of_worker(&worker), |l| {
        l.worker == worker
    })
    .await?
    {
        rows.row(&k.to_string(), l.nonce, &l.order.to_string(), &text)
            .chain(&l);
    }
    rows.live(shared, |_, w| *w == worker);
    let mut leases = rows.into_sorted();
    leases.sort_by_key(|r| !r.open);
    Ok(WorkerDetail {
        worker: text.clone(),
        account: WorkerAccount::of(&w, now),
        connection,
        telemetry: shared.history.telemetry(&text),
        leases,
        stake_yield: YieldInfo::of(&w, now),
        history: timed(
            shared
                .store
                .samples("worker", &text, SAMPLES_SHOWN)
                .await
                .map_err(internal)?,
        ),
    })
}

/// One worker: its account, connection, recent telemetry, leases, yield and money over time.
#[utoipa::path(
    get,
    path = "/v1/workers/{worker}",
    params(("worker" = String, Path, description = "The worker account's address")),
    responses(
        (status = 200, body = WorkerDetail),
        (status = 400, body = ApiErrorBody),
        (status = 404, body = ApiErrorBody),
        (status = 502, body = ApiErrorBody)
    )
)]
pub async fn worker(
    State(shared): State<Arc<Shared>>,
    Path(worker): Path<String>,
) -> Result<Json<WorkerDetail>, ApiError> {
    let k = key(&worker)?;
    Ok(Json(worker_detail(&shared, k).await?))
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Supplier {
    pub owner: String,
    /// The owner's worker in this market (its address derives from the market and the owner).
    pub worker: String,
    /// None when the owner has no worker registered in this market.
    pub detail: Option<WorkerDetail>,
}

/// A supplier (an owner wallet): its worker in this market, with earnings, rewards and yield.
#[utoipa::path(
    get,
    path = "/v1/suppliers/{owner}",
    params(("owner" = String, Path, description = "The owner wallet's address")),
    responses(
        (status = 200, body = Supplier),
        (status = 400, body = ApiErrorBody),
        (status = 502, body = ApiErrorBody)
    )
)]
pub async fn supplier(
    State(shared): State<Arc<Shared>>,
    Path(owner): Path<String>,
) -> Result<Json<Supplier>, ApiError> {
    let o = key(&owner)?;
    let worker = shared.addrs.worker(&o);
    let detail = match worker_detail(&shared, worker).await {
        Ok(d) => Some(d),
        Err(e) if e.status() == StatusCode::NOT_FOUND => None,
        Err(e) => return Err(e),
    };
    Ok(Json(Supplier {
        owner,
        worker: worker.to_string(),
        detail,
    }))
}

/// An order as the chain holds it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OrderAccount {
    pub order_id: u64,
    pub buyer: String,
    /// `open`, `active` or `closing`.
    pub status: String,
    /// `spot` or `reserved`.
    pub mode: String,
    pub class: String,
    pub gpus: u16,
    pub gpus_assigned: u16,
    pub min_vram_mib: u32,
    pub min_bandwidth_gbps: u32,
    pub regions: Vec<String>,
    pub max_price_per_gpu_second: String,
    pub duration_s: u64,
    pub escrow_deposited: String,
    pub escrow_remaining: String,
    pub total_paid: String,
    pub created_ts: i64,
    pub close_requested_ts: i64,
    pub buyer_exit_ts: i64,
    pub job_spec_hash: String,
}

impl OrderAccount {
    fn of(o: &Order) -> Self {
        let r = &o.terms.requirements;
        Self {
            order_id: o.order_id,
            buyer: o.buyer.to_string(),
            status: match o.status {
                OrderStatus::Open => "open",
                OrderStatus::Active => "active",
                OrderStatus::Closing => "closing",
            }
            .into(),
            mode: match o.terms.mode {
                OrderMode::Spot => "spot",
                OrderMode::Reserved => "reserved",
            }
            .into(),
            class: class_name(r.gpu_class),
            gpus: r.gpu_count,
            gpus_assigned: o.gpus_assigned,
            min_vram_mib: r.min_vram_mib,
            min_bandwidth_gbps: r.min_bandwidth_gbps,
            regions: Region::from_set(r.regions)
                .into_iter()
                .map(|g| region_name(g.code()))
                .collect(),
            max_price_per_gpu_second: o.terms.max_price_per_gpu_second.to_string(),
            duration_s: o.terms.duration,
            escrow_deposited: o.escrow_deposited.to_string(),
            escrow_remaining: o.escrow_remaining.to_string(),
            total_paid: o.total_paid.to_string(),
            created_ts: o.created_ts,
            close_requested_ts: o.close_requested_ts,
            buyer_exit_ts: o.buyer_exit_ts,
            job_spec_hash: hex(&o.terms.job_spec_hash),
        }
    }
}

/// A lease instance with what proves and pays its seconds.
#[derive(Debug, Serialize, ToSchema)]
pub struct LeaseActivity {
    #[serde(flatten)]
    pub lease: LeaseRow,
    /// The newest stored receipts (oldest first).
    pub receipts: Vec<ReceiptInfo>,
    /// Every settlement, with its transaction's signature.
    pub settlements: Vec<Settlement>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OrderActivity {
    pub order: String,
    /// None once the order account closed (completed or cancelled).
    pub account: Option<OrderAccount>,
    /// The buyer: on chain, or as it uploaded the spec.
    pub buyer: Option<String>,
    /// `waiting`, `placed`, `partly placed`, `closing`, or `closed`.
    pub placement: String,
    /// Why it has no (full) placement yet, in words.
    pub waiting: Option<String>,
    pub job_spec_uploaded: bool,
    /// What the open leases cost per second now: Σ GPUs × their price.
    pub spend_per_second: String,
    /// Seconds the escrow lasts at that spend (none while nothing is leased).
    pub escrow_runway_s: Option<u64>,
    /// A lease of this order ended on a worker declared down (waiting to be placed again), or
    /// an earlier lease ended and a new one serves it now (placed again).
    pub failed_over: bool,
    /// The result hash the worker reported when the job finished (hex).
    pub result_hash: Option<String>,
    pub leases: Vec<LeaseActivity>,
    /// Its escrow whenever it changed on chain (oldest first).
    pub history: Vec<Timed<OrderSample>>,
}

/// An order's whole story: placement or why it waits, every lease instance with its receipts
/// and settlements, spend and escrow runway, escrow over time; also after the order closed.
#[utoipa::path(
    get,
    path = "/v1/orders/{order}/activity",
    params(("order" = String, Path, description = "The order's address")),
    responses(
        (status = 200, body = OrderActivity),
        (status = 400, body = ApiErrorBody),
        (status = 404, body = ApiErrorBody),
        (status = 502, body = ApiErrorBody)
    )
)]
pub async fn order_activity(
    State(shared): State<Arc<Shared>>,
    Path(order): Path<String>,
) -> Result<Json<OrderActivity>, ApiError> {
    let k = key(&order)?;
    let account: Option<Order> = account::<Order>(&shared, k)
        .await?
        .filter(|o| o.market == shared.addrs.market);
    let stored_buyer = shared.store.buyer_of(&order).await.map_err(internal)?;
    let job_spec_uploaded = shared.store.spec(&order).await.map_err(internal)?.is_some();
    let mut rows = Rows::default();
    for t in shared
        .store
        .lease_terms_of_order(&order)
        .await
        .map_err(internal)?
    {
        rows.row(&t.lease, t.nonce, &t.order, &t.worker).terms(&t);
    }
    let jobs = shared.store.jobs_of(&order).await.map_err(internal)?;
    for j in &jobs {
        rows.row(
            &j.lease.lease.to_string(),
            j.lease.nonce,
            &j.order,
            &j.worker,
        )
        .job(j);
    }
    let open = open_leases(&shared, filters::leases_of_order(&k), |l| l.order == k).await?;
    for (lk, l) in &open {
        rows.row(&lk.to_string(), l.nonce, &order, &l.worker.to_string())
            .chain(l);
    }
    rows.live(&shared, |o, _| *o == k);
    let history = timed(
        shared
            .store
            .samples("order", &order, SAMPLES_SHOWN)
            .await
            .map_err(internal)?,
    );
    if account.is_none() && stored_buyer.is_none() && rows.0.is_empty() && history.is_empty() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("nothing is known of order {order} in this market"),
        ));
    }
    let (waiting, failed_over) = {
        let live = shared.live();
        (
            live.waiting.get(&k).cloned(),
            live.failed_over.contains_key(&k),
        )
    };
    let spend: u128 = open
        .iter()
        .map(|(_, l)| u128::from(l.gpus) * u128::from(l.price_per_gpu_second))
        .sum();
    let runway = account
        .as_ref()
        .and_then(|o| u128::from(o.escrow_remaining).checked_div(spend))
        .map(|r| u64::try_from(r).unwrap_or(u64::MAX));
    let placement = match &account {
        None => "closed",
        Some(o) if o.status == OrderStatus::Closing => "closing",
        Some(o) if o.gpus_assigned >= o.terms.requirements.gpu_count => "placed",
        Some(o) if o.gpus_assigned > 0 => "partly placed",
        Some(_) => "waiting",
    };
    let rows = rows.into_sorted();
    // Placed again: an open lease that started after one of this order's leases ended.
    let failed_over = failed_over
        || rows.iter().any(|open| {
            open.open
                && rows
                    .iter()
                    .any(|ended| !ended.open && ended.start_ts <= open.start_ts)
        });
    let mut leases = vec![];
    for row in rows {
        let Ok(lease_key) = Pubkey::from_str(&row.lease) else {
            continue;
        };
        let id = LeaseId {
            lease: receipt::key(&lease_key),
            nonce: row.nonce,
        };
        let receipts = shared
            .store
            .receipts(&id, RECEIPTS_SHOWN)
            .await
            .map_err(internal)?
            .into_iter()
            .map(|(r, settled)| ReceiptInfo {
                served_seconds: r.served_seconds,
                chain_head: hex(&r.chain_head),
                signature: r.signature.to_string(),
                settled,
            })
            .collect();
        let settlements = shared.store.settlements(&id).await.map_err(internal)?;
        leases.push(LeaseActivity {
            lease: row,
            receipts,
            settlements,
        });
    }
    Ok(Json(OrderActivity {
        order,
        buyer: account
            .as_ref()
            .map(|o| o.buyer.to_string())
            .or(stored_buyer),
        account: account.as_ref().map(OrderAccount::of),
        placement: placement.into(),
        waiting,
        job_spec_uploaded,
        spend_per_second: spend.to_string(),
        escrow_runway_s: runway,
        failed_over,
        result_hash: jobs.iter().find_map(|j| j.result_hash.clone()),
        leases,
        history,
    }))
}

/// The RPC node as the service sees it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RpcHealth {
    pub ok: bool,
    /// How long reading the cluster's clock took, through the service's chain connection.
    pub latency_ms: Option<f64>,
    pub error: Option<String>,
    /// The cluster's clock, and how far it is from the service's.
    pub chain_time: Option<i64>,
    pub clock_skew_s: Option<i64>,
}

/// The service's counters since it started (as `/metrics` exports them).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Counters {
    pub heartbeats: u64,
    pub receipts: u64,
    pub settlements: u64,
    pub failovers: u64,
    pub failed_transactions: u64,
    pub protocol_errors: u64,
    pub rpc_errors: u64,
    pub challenges_passed: u64,
    pub challenges_failed: u64,
    pub chain_updates: u64,
    pub chain_loads: u64,
    pub chain_reconnects: u64,
    pub placement_rounds: u64,
    pub placement_seconds_sum: f64,
    pub failover_count: u64,
    pub failover_seconds_sum: f64,
}

/// An order waiting for placement, and why.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Waiting {
    pub order: String,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OperatorInfo {
    pub market: String,
    pub orchestrator: String,
    pub cluster: Cluster,
    pub rpc: RpcHealth,
    /// Whether the service follows the chain over the websocket right now.
    pub following_chain: bool,
    pub connected_workers: u64,
    pub leases_operated: u64,
    /// Leases with receipts not yet settled.
    pub settlement_backlog: u64,
    pub counters: Counters,
    pub waiting: Vec<Waiting>,
    /// The newest notable events (connections, failovers, settlements, challenges), newest first.
    pub recent: Vec<Notable>,
    pub now_ms: u64,
}

/// The service's health for its operator: RPC, chain following, connections, settlement backlog,
/// failovers and failed transactions, and the newest notable events.
#[utoipa::path(get, path = "/v1/operator", responses((status = 200, body = OperatorInfo)))]
pub async fn operator(State(shared): State<Arc<Shared>>) -> Json<OperatorInfo> {
    let started = std::time::Instant::now();
    let probe = tokio::time::timeout(RPC_PROBE_TIMEOUT, shared.chain.call(|c| c.unix_time())).await;
    let latency_ms = started.elapsed().as_secs_f64() * 1_000.0;
    let now = now_ts();
    let rpc = match probe {
        Ok(Ok(t)) => RpcHealth {
            ok: true,
            latency_ms: Some(latency_ms),
            error: None,
            chain_time: Some(t),
            clock_skew_s: Some(t - now),
        },
        Ok(Err(e)) => {
            shared.metrics.rpc_errors.inc();
            RpcHealth {
                ok: false,
                latency_ms: Some(latency_ms),
                error: Some(e.to_string()),
                chain_time: None,
                clock_skew_s: None,
            }
        }
        Err(_) => RpcHealth {
            ok: false,
            latency_ms: None,
            error: Some(format!(
                "no answer within {} s",
                RPC_PROBE_TIMEOUT.as_secs()
            )),
            chain_time: None,
            clock_skew_s: None,
        },
    };
    let m = &shared.metrics;
    let (connected, leases, mut waiting) = {
        let live = shared.live();
        (
            live.sessions.len() as u64,
            live.leases.len() as u64,
            live.waiting
                .iter()
                .map(|(o, r)| Waiting {
                    order: o.to_string(),
                    reason: r.clone(),
                })
                .collect::<Vec<_>>(),
        )
    };
    waiting.sort_by(|a, b| a.order.cmp(&b.order));
    // Histograms give their sums and counts only in the exposition text.
    let text = m.render();
    let exported =
        |name: &str| metric(&text, &format!("gpumesh_orchestrator_{name}")).unwrap_or(0.0);
    Json(OperatorInfo {
        market: shared.addrs.market.to_string(),
        orchestrator: shared.orchestrator.pubkey().to_string(),
        cluster: Cluster::of(&shared.cfg.rpc_url),
        rpc,
        following_chain: shared.mirror().as_ref().is_some_and(|m| m.live),
        connected_workers: connected,
        leases_operated: leases,
        settlement_backlog: u64::try_from(m.settlement_backlog.get()).unwrap_or(0),
        counters: Counters {
            heartbeats: m.heartbeats.get(),
            receipts: m.receipts.get(),
            settlements: m.settlements.get(),
            failovers: m.failovers.get(),
            failed_transactions: m.failed_transactions.get(),
            protocol_errors: m.protocol_errors.get(),
            rpc_errors: m.rpc_errors.get(),
            challenges_passed: m.challenges_passed.get(),
            challenges_failed: m.challenges_failed.get(),
            chain_updates: m.chain_updates.get(),
            chain_loads: m.chain_loads.get(),
            chain_reconnects: m.chain_reconnects.get(),
            placement_rounds: exported("placement_seconds_count") as u64,
            placement_seconds_sum: exported("placement_seconds_sum"),
            failover_count: exported("failover_seconds_count") as u64,
            failover_seconds_sum: exported("failover_seconds_sum"),
        },
        waiting,
        recent: shared.history.notable(NOTABLE_SHOWN),
        now_ms: now_ms(),
    })
}

/// A sample's value in Prometheus text (`name value` on a line of its own).
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == name).then(|| v.trim().parse().ok())?
    })
}

/// What an address is in this market, and the console page that shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Lookup {
    pub address: String,
    /// `worker`, `order`, `lease`, `supplier` (a worker's owner wallet) or `unknown`.
    pub kind: String,
    /// The page: `worker`, `order` or `supplier` (none when unknown).
    pub page: Option<String>,
    /// The address that page takes (a lease's order, an owner's wallet).
    pub target: Option<String>,
}

/// What an address is in this market: a worker, an order (open, or closed with a history here),
/// a lease (shown on its order's page) or a supplier's wallet.
#[utoipa::path(
    get,
    path = "/v1/lookup/{address}",
    params(("address" = String, Path, description = "Any base58 address")),
    responses(
        (status = 200, body = Lookup),
        (status = 400, body = ApiErrorBody),
        (status = 502, body = ApiErrorBody)
    )
)]
pub async fn lookup(
    State(shared): State<Arc<Shared>>,
    Path(address): Path<String>,
) -> Result<Json<Lookup>, ApiError> {
    use anchor_lang::{AccountDeserialize, Discriminator};
    let k = key(&address)?;
    let found = |kind: &str, page: &str, target: String| Lookup {
        address: address.clone(),
        kind: kind.into(),
        page: Some(page.into()),
        target: Some(target),
    };
    let owners_worker = shared.addrs.worker(&k);
    let raw = shared
        .chain
        .call(move |c| -> Result<_, gpumesh_client::ChainError> {
            Ok((c.account(&k)?, c.account(&owners_worker)?))
        })
        .await
        .map_err(upstream)?;
    let of_market = |data: &[u8]| data.get(10..42) == Some(shared.addrs.market.as_ref());
    if let Some(a) = &raw.0
        && a.owner == gpumesh_client::program::ID
        && of_market(&a.data)
    {
        let tag = a.data.get(..8).unwrap_or_default();
        if tag == Worker::DISCRIMINATOR {
            return Ok(Json(found("worker", "worker", address.clone())));
        }
        if tag == Order::DISCRIMINATOR {
            return Ok(Json(found("order", "order", address.clone())));
        }
        if tag == Lease::DISCRIMINATOR
            && let Ok(l) = Lease::try_deserialize(&mut a.data.as_slice())
        {
            return Ok(Json(found("lease", "order", l.order.to_string())));
        }
    }
    if raw.1.is_some() {
        return Ok(Json(found("supplier", "supplier", address.clone())));
    }
    let known_order = shared
        .store
        .buyer_of(&address)
        .await
        .map_err(internal)?
        .is_some()
        || !shared
            .store
            .jobs_of(&address)
            .await
            .map_err(internal)?
            .is_empty();
    if known_order {
        return Ok(Json(found("order", "order", address.clone())));
    }
    Ok(Json(Lookup {
        address: address.clone(),
        kind: "unknown".into(),
        page: None,
        target: None,
    }))
}

/// The console's part of the OpenAPI document.
#[derive(OpenApi)]
#[openapi(paths(console, overview, worker, supplier, order_activity, operator, lookup))]
pub struct ConsoleApi;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explorer_links_only_for_public_clusters() {
        let devnet = Cluster::of("https://api.devnet.solana.com");
        assert_eq!(devnet.name, "devnet");
        assert_eq!(
            devnet.explorer_tx.as_deref(),
            Some("https://explorer.solana.com/tx/{signature}?cluster=devnet")
        );
        assert_eq!(devnet.cli_url.as_deref(), Some("devnet"));
        let main = Cluster::of("https://api.mainnet-beta.solana.com/");
        assert_eq!(
            main.explorer_address.as_deref(),
            Some("https://explorer.solana.com/address/{address}")
        );
        let local = Cluster::of("http://127.0.0.1:8899");
        assert_eq!(
            (
                local.name.as_str(),
                local.explorer_tx,
                local.cli_url.as_deref()
            ),
            ("localnet", None, Some("localnet"))
        );
        let other_port = Cluster::of("http://127.0.0.1:18899");
        assert_eq!(
            other_port.cli_url.as_deref(),
            Some("http://127.0.0.1:18899")
        );
        // A provider's URL may carry a key: never shown.
        let private = Cluster::of("https://rpc.example.com/?api-key=secret");
        assert_eq!(
            (private.name.as_str(), private.explorer_tx, private.cli_url),
            ("custom", None, None)
        );
    }
}
