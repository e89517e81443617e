//! The HTTP API: the market as the service sees it (its parameters and totals, workers with live
//! telemetry, orders with their leases, escrow runway and why they wait, leases with their
//! receipts and the transactions that settled them), the buyer's signed requests (uploading a
//! job spec, reading a job's output), the live feed, Prometheus metrics, and the OpenAPI
//! document of all of it (`GET /v1/openapi.json`).
//!
//! Amounts are strings of the mint's base units (JavaScript numbers lose precision past 2^53);
//! addresses are base58.

use super::feed::{self, FeedEvent, Filter};
use super::state::Shared;
use super::store::{ChallengeRecord, LogChunk, Settlement};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use gpumesh_client::program::state::{Lease, Market, Order, Worker};
use gpumesh_client::{ChainExt, Pubkey, receipt};
use gpumesh_protocol::hex;
use gpumesh_protocol::jobspec::{
    LOGS_SIGNATURE_WINDOW_MS, checkpoints_message, logs_message, upload_message,
};
use gpumesh_protocol::wire::{HardwareReport, JobSpec, LeaseId, Telemetry};
use gpumesh_protocol::{GpuClass, Key, Signature};
use serde::{Deserialize, Serialize};
use std::str::FromStr;
use std::sync::Arc;
use utoipa::{IntoParams, OpenApi, ToSchema};

/// Header carrying the buyer's base58 signature (over `upload_message` or `logs_message`).
pub const SIGNATURE_HEADER: &str = "x-gpumesh-signature";
/// Header carrying the Unix time in ms a logs request was signed at.
pub const TIMESTAMP_HEADER: &str = "x-gpumesh-unix-ms";
/// Receipts a lease's page lists (the newest).
const RECEIPTS_SHOWN: i64 = 50;

/// Every error: a status and what to do.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiErrorBody {
    pub error: String,
}

pub struct ApiError(StatusCode, String);

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self(status, message.into())
    }

    pub fn status(&self) -> StatusCode {
        self.0
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(ApiErrorBody { error: self.1 })).into_response()
    }
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, message.into())
}

pub(super) fn upstream(e: impl ToString) -> ApiError {
    ApiError(StatusCode::BAD_GATEWAY, e.to_string())
}

pub(super) fn internal(e: impl ToString) -> ApiError {
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

pub(super) fn key(text: &str) -> Result<Pubkey, ApiError> {
    Pubkey::from_str(text).map_err(|_| bad(format!("{text:?} is not a base58 address")))
}

fn amount(v: u64) -> String {
    v.to_string()
}

pub(super) fn class_name(code: u8) -> String {
    GpuClass::from_code(code)
        .map(|c| c.to_string())
        .unwrap_or_else(|_| format!("class-{code}"))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

async fn fetch<T>(shared: &Shared, key: Pubkey, what: &str) -> Result<T, ApiError>
where
    T: anchor_lang::AccountDeserialize + Send + 'static,
{
    account(shared, key)
        .await?
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no {what} {key}")))
}

/// An account as the chain has it now (None: closed or never created); an RPC failure is a 502
/// and counts in `rpc_errors`.
pub(super) async fn account<T>(shared: &Shared, key: Pubkey) -> Result<Option<T>, ApiError>
where
    T: anchor_lang::AccountDeserialize + Send + 'static,
{
    shared
        .chain
        .call(move |c| c.fetch_opt::<T>(&key))
        .await
        .map_err(|e| {
            shared.metrics.rpc_errors.inc();
            upstream(e)
        })
}

/// The signature header of a buyer's signed request.
fn signature_header(headers: &HeaderMap) -> Result<&str, ApiError> {
    headers
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            ApiError(
                StatusCode::UNAUTHORIZED,
                format!("sign the request with the order's buyer's wallet and send it in {SIGNATURE_HEADER}"),
            )
        })
}

/// Checks that `signature` is `buyer`'s over `message`.
fn verify_buyer(signature: &str, buyer: &Pubkey, message: &[u8]) -> Result<(), ApiError> {
    let signature = Signature::from_str(signature)
        .map_err(|e| ApiError(StatusCode::UNAUTHORIZED, e.to_string()))?;
    let buyer: Key = receipt::key(buyer);
    if !gpumesh_protocol::keys::verify(&buyer, message, &signature) {
        return Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "the signature is not the order's buyer's over this request".into(),
        ));
    }
    Ok(())
}

/// An order's buyer: on chain while the order exists, else as it was when the spec was
/// uploaded (a completed order's output stays its buyer's).
async fn buyer_of(shared: &Shared, order: Pubkey) -> Result<Pubkey, ApiError> {
    let on_chain: Option<Order> = account(shared, order).await?;
    if let Some(o) = on_chain {
        return Ok(o.buyer);
    }
    let stored = shared
        .store
        .buyer_of(&order.to_string())
        .await
        .map_err(internal)?;
    stored
        .and_then(|b| Pubkey::from_str(&b).ok())
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no order {order}")))
}

/// A logs request's time must be near the service's clock, so a captured signature stops working.
fn fresh(unix_ms: u64) -> Result<(), ApiError> {
    if now_ms().abs_diff(unix_ms) > LOGS_SIGNATURE_WINDOW_MS {
        return Err(ApiError(
            StatusCode::UNAUTHORIZED,
            format!(
                "the request is dated {unix_ms} ms, more than {} s from the service's clock: sign it again with the current time",
                LOGS_SIGNATURE_WINDOW_MS / 1000
            ),
        ));
    }
    Ok(())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    pub ok: bool,
    pub market: String,
    pub orchestrator: String,
    /// Whether the service follows the chain over the websocket right now.
    pub following_chain: bool,
}

#[utoipa::path(get, path = "/v1/health", responses((status = 200, body = Health)))]
pub async fn health(State(shared): State<Arc<Shared>>) -> Json<Health> {
    let following_chain = shared.mirror().as_ref().is_some_and(|m| m.live);
    Json(Health {
        ok: true,
        market: shared.addrs.market.to_string(),
        orchestrator: shared.orchestrator.pubkey().to_string(),
        following_chain,
    })
}

#[utoipa::path(
    get,
    path = "/metrics",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain"))
)]
pub async fn metrics(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    (
        [("content-type", "text/plain; version=0.0.4")],
        shared.metrics.render(),
    )
}

/// The market's rules that buyers and suppliers meet most.
#[derive(Debug, Serialize, ToSchema)]
pub struct MarketRules {
    pub protocol_fee_bps: u16,
    /// Share of the protocol fee burned.
    pub fee_burn_bps: u16,
    pub min_stake_per_gpu: String,
    /// Seconds a buyer waits after asking to close before its leases can be ended.
    pub buyer_exit_window: i64,
    pub heartbeat_grace: i64,
    pub offline_slash_bps: u16,
    pub fraud_slash_bps: u16,
    pub max_receipt_age: i64,
    pub breaker_band_bps: u32,
    pub preemption_notice: i64,
    pub min_worker_vram_mib: u32,
    pub min_worker_bandwidth_gbps: u32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MarketTotals {
    pub stake: String,
    pub escrow: String,
    pub claimable: String,
    pub treasury: String,
    pub burned: String,
    pub gpu_seconds_served: u64,
    pub leased_gpus: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MarketInfo {
    pub market: String,
    pub mint: String,
    pub authority: String,
    pub orchestrator: String,
    pub paused: bool,
    pub rules: MarketRules,
    pub totals: MarketTotals,
    pub workers_on_chain: u32,
    pub open_orders: u32,
    pub connected_workers: usize,
    pub leases_operated: usize,
    /// Reference price per GPU-second by class name (classes with one set).
    pub reference_prices: std::collections::BTreeMap<String, String>,
}

#[utoipa::path(
    get,
    path = "/v1/market",
    responses((status = 200, body = MarketInfo), (status = 502, body = ApiErrorBody))
)]
pub async fn market(State(shared): State<Arc<Shared>>) -> Result<Json<MarketInfo>, ApiError> {
    let m: Market = fetch(&shared, shared.addrs.market, "market").await?;
    let (connected_workers, leases_operated) = {
        let live = shared.live();
        (live.sessions.len(), live.leases.len())
    };
    let p = &m.params;
    Ok(Json(MarketInfo {
        market: shared.addrs.market.to_string(),
        mint: m.mint.to_string(),
        authority: m.authority.to_string(),
        orchestrator: m.orchestrator.to_string(),
        paused: m.paused,
        rules: MarketRules {
            protocol_fee_bps: p.protocol_fee_bps,
            fee_burn_bps: p.fee_burn_bps,
            min_stake_per_gpu: amount(p.min_stake_per_gpu),
            buyer_exit_window: p.buyer_exit_window,
            heartbeat_grace: p.heartbeat_grace,
            offline_slash_bps: p.offline_slash_bps,
            fraud_slash_bps: p.fraud_slash_bps,
            max_receipt_age: p.max_receipt_age,
            breaker_band_bps: p.breaker_band_bps,
            preemption_notice: p.preemption_notice,
            min_worker_vram_mib: p.min_worker_vram_mib,
            min_worker_bandwidth_gbps: p.min_worker_bandwidth_gbps,
        },
        totals: MarketTotals {
            stake: amount(m.total_stake),
            escrow: amount(m.total_escrow),
            claimable: amount(m.total_claimable),
            treasury: amount(m.treasury_balance),
            burned: amount(m.total_burned),
            gpu_seconds_served: m.total_gpu_seconds,
            leased_gpus: m.leased_gpus,
        },
        workers_on_chain: m.workers,
        open_orders: m.open_orders,
        connected_workers,
        leases_operated,
        reference_prices: m
            .reference_prices
            .iter()
            .enumerate()
            .filter(|(_, p)| **p > 0)
            .map(|(i, p)| (class_name(i as u8), amount(*p)))
            .collect(),
    }))
}

/// A worker connected to this service right now.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectedWorker {
    pub worker: String,
    pub node_key: String,
    pub rtt_us: Option<u32>,
    pub connected_s: u64,
    pub last_heartbeat_ms_ago: u64,
    pub hardware: HardwareReport,
    pub telemetry: Telemetry,
    /// Leases it serves (addresses).
    pub leases: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectedWorkers {
    pub workers: Vec<ConnectedWorker>,
}

/// Connected workers with their live telemetry and measured round trip.
#[utoipa::path(get, path = "/v1/workers", responses((status = 200, body = ConnectedWorkers)))]
pub async fn workers(State(shared): State<Arc<Shared>>) -> Json<ConnectedWorkers> {
    let live = shared.live();
    let workers = live
        .sessions
        .iter()
        .map(|(k, s)| ConnectedWorker {
            worker: k.to_string(),
            node_key: s.node_key.to_string(),
            rtt_us: s.rtt_us,
            connected_s: s.connected_at.elapsed().as_secs(),
            last_heartbeat_ms_ago: s.last_seen.elapsed().as_millis() as u64,
            hardware: s.hardware.clone(),
            telemetry: s.telemetry.clone(),
            leases: live
                .leases
                .values()
                .filter(|t| t.worker == *k)
                .map(|t| t.lease.lease.to_string())
                .collect(),
        })
        .collect();
    Json(ConnectedWorkers { workers })
}

/// A worker account of this market, as the chain holds it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChainWorker {
    pub worker: String,
    pub owner: String,
    pub class: String,
    pub gpus: u16,
    pub gpus_leased: u16,
    pub vram_mib: u32,
    pub region: u8,
    pub price_per_gpu_second: String,
    pub stake: String,
    pub jailed: bool,
    pub served_gpu_seconds: u64,
    pub failures: u32,
    pub frauds: u32,
    /// Connected to this service now.
    pub connected: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ChainWorkers {
    pub workers: Vec<ChainWorker>,
}

/// Every worker account of the market (from the followed copy while it is live).
#[utoipa::path(
    get,
    path = "/v1/market/workers",
    responses((status = 200, body = ChainWorkers), (status = 502, body = ApiErrorBody))
)]
pub async fn chain_workers(
    State(shared): State<Arc<Shared>>,
) -> Result<Json<ChainWorkers>, ApiError> {
    let copied: Option<Vec<(Pubkey, Worker)>> = shared
        .mirror()
        .as_ref()
        .filter(|m| m.live)
        .map(|m| m.workers.iter().map(|(k, w)| (*k, w.clone())).collect());
    let mut list = match copied {
        Some(list) => list,
        None => {
            let market = shared.addrs.market;
            shared
                .chain
                .call(move |c| {
                    c.list_decoded::<Worker>(&gpumesh_client::filters::in_market(&market))
                })
                .await
                .map_err(upstream)?
        }
    };
    list.sort_by_key(|(k, _)| *k);
    let connected: std::collections::HashSet<Pubkey> =
        shared.live().sessions.keys().copied().collect();
    Ok(Json(ChainWorkers {
        workers: list
            .iter()
            .map(|(k, w)| ChainWorker {
                worker: k.to_string(),
                owner: w.owner.to_string(),
                class: class_name(w.hardware.gpu_class),
                gpus: w.hardware.gpu_count,
                gpus_leased: w.gpus_leased,
                vram_mib: w.hardware.vram_mib,
                region: w.hardware.region,
                price_per_gpu_second: amount(w.price_per_gpu_second),
                stake: amount(w.stake),
                jailed: w.jailed,
                served_gpu_seconds: w.record.served_gpu_seconds,
                failures: w.record.failures,
                frauds: w.record.frauds,
                connected: connected.contains(k),
            })
            .collect(),
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Challenges {
    pub worker: String,
    pub challenges: Vec<ChallengeRecord>,
}

/// A worker's compute challenges, newest first, with their transcripts (a failed one's evidence
/// hash is what its fraud slash recorded on chain).
#[utoipa::path(
    get,
    path = "/v1/workers/{worker}/challenges",
    params(("worker" = String, Path, description = "The worker account's address")),
    responses((status = 200, body = Challenges), (status = 400, body = ApiErrorBody))
)]
pub async fn challenges(
    State(shared): State<Arc<Shared>>,
    Path(worker): Path<String>,
) -> Result<Json<Challenges>, ApiError> {
    key(&worker)?;
    let challenges = shared
        .store
        .challenges_of(&worker)
        .await
        .map_err(internal)?;
    Ok(Json(Challenges { worker, challenges }))
}

/// A lease this service operates, in an order's page.
#[derive(Debug, Serialize, ToSchema)]
pub struct LeaseSummary {
    pub lease: String,
    pub nonce: u64,
    pub worker: String,
    pub gpus: u16,
    pub gpu_indices: Vec<u16>,
    /// Seconds served as the heartbeats show.
    pub served_seconds: u64,
    /// Seconds the newest stored receipt claims.
    pub receipt_seconds: Option<u64>,
    /// Seconds paid on chain.
    pub settled_seconds: u64,
    pub job: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct JobInfo {
    pub lease: String,
    pub nonce: u64,
    pub worker: String,
    pub status: String,
    pub exit_code: Option<i64>,
    pub result_hash: Option<String>,
}

impl From<crate::service::store::JobRecord> for JobInfo {
    fn from(j: crate::service::store::JobRecord) -> Self {
        JobInfo {
            lease: j.lease.lease.to_string(),
            nonce: j.lease.nonce,
            worker: j.worker,
            status: j.status,
            exit_code: j.exit_code,
            result_hash: j.result_hash,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OrderInfo {
    pub order: String,
    pub buyer: String,
    pub status: String,
    pub class: String,
    pub gpus: u16,
    pub gpus_assigned: u16,
    pub max_price_per_gpu_second: String,
    pub escrow_remaining: String,
    pub total_paid: String,
    /// At most what the order spends per second now: every assigned GPU at its bid.
    pub max_spend_per_second: String,
    /// Seconds the escrow lasts at that spend (none while nothing is assigned).
    pub escrow_runway_s: Option<u64>,
    /// Why the order has no (full) placement yet, in words.
    pub waiting: Option<String>,
    pub job_spec_uploaded: bool,
    pub leases: Vec<LeaseSummary>,
    pub jobs: Vec<JobInfo>,
    pub checkpoints: CheckpointsInfo,
}

/// An order's checkpoints: whether its job spec asks for them, the latest the job can resume
/// from (with its age), and what is kept for it in the results store.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct CheckpointsInfo {
    /// Checkpoints are taken and restored: the job spec has a `[checkpoint]` section and the
    /// buyer has not turned them off.
    pub enabled: bool,
    /// The buyer turned them off (`PUT /v1/orders/{order}/checkpoints`, `gpumesh order
    /// checkpoints ID off`).
    pub turned_off: bool,
    /// Seconds between the daemon's snapshots, as the spec asks.
    pub interval_s: Option<u32>,
    /// The newest checkpoint a new worker would restore.
    pub latest: Option<CheckpointInfo>,
    /// Checkpoints kept for the order and their bytes.
    pub stored: u64,
    pub stored_bytes: u64,
    /// What keeping them costs, base units per hour at the store's price (the service's
    /// `checkpoint_storage_price_per_gib_hour`, also given here; rounded up; not settled on
    /// chain).
    pub storage_cost_per_hour: String,
    pub storage_price_per_gib_hour: String,
    /// Every checkpoint recorded, newest first, with the skipped ones and why.
    pub all: Vec<CheckpointInfo>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CheckpointInfo {
    /// Content hash (hex) it is stored under.
    pub hash: String,
    pub size: u64,
    pub files: u64,
    /// When it was taken (Unix ms) and how long ago, seconds.
    pub unix_ms: u64,
    pub age_s: u64,
    pub worker: String,
    pub lease: String,
    pub nonce: u64,
    /// `stored`, or `skipped` (missing or failing its hash check on restore: never offered
    /// again), with the reason.
    pub status: String,
    pub reason: Option<String>,
}

/// The buyer's switch for an order's checkpoints.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CheckpointsSwitch {
    pub enabled: bool,
}

/// Turns an order's checkpoints off (no snapshot is taken or recorded any more, and a new lease
/// starts from nothing) or on again (as the job spec says). Only for the order's buyer: its
/// wallet's signature over `checkpoints_message(order, enabled, unix_ms)`.
#[utoipa::path(
    put,
    path = "/v1/orders/{order}/checkpoints",
    params(
        ("order" = String, Path, description = "The order's address"),
        ("x-gpumesh-signature" = String, Header, description = "The buyer's signature over checkpoints_message(order, enabled, unix_ms), base58"),
        ("x-gpumesh-unix-ms" = u64, Header, description = "When it was signed (within 300 s of the service's clock)")
    ),
    request_body = CheckpointsSwitch,
    responses(
        (status = 200, body = CheckpointsInfo),
        (status = 401, body = ApiErrorBody),
        (status = 404, body = ApiErrorBody)
    )
)]
pub async fn put_checkpoints(
    State(shared): State<Arc<Shared>>,
    Path(order): Path<String>,
    headers: HeaderMap,
    Json(switch): Json<CheckpointsSwitch>,
) -> Result<Json<CheckpointsInfo>, ApiError> {
    let k = key(&order)?;
    let unix_ms = header_ms(&headers)?;
    fresh(unix_ms)?;
    let signature = signature_header(&headers)?;
    let buyer = buyer_of(&shared, k).await?;
    verify_buyer(
        signature,
        &buyer,
        &checkpoints_message(&k.to_bytes(), switch.enabled, unix_ms),
    )?;
    shared
        .store
        .set_checkpoints(&order, switch.enabled, unix_ms)
        .await
        .map_err(internal)?;
    let leases: Vec<(Pubkey, LeaseId)> = {
        let mut live = shared.live();
        if switch.enabled {
            live.checkpoints_off.remove(&k);
        } else {
            live.checkpoints_off.insert(k);
        }
        live.leases
            .values()
            .filter(|t| t.order == k)
            .map(|t| (t.worker, t.id))
            .collect()
    };
    for (worker, lease) in leases {
        shared.send_to(
            &worker,
            gpumesh_protocol::wire::ToWorker::Checkpoints {
                lease,
                enabled: switch.enabled,
            },
        );
    }
    tracing::info!(%order, enabled = switch.enabled, "the buyer switched the order's checkpoints");
    let spec = shared.store.spec(&order).await.map_err(internal)?;
    Ok(Json(
        checkpoints_info(&shared, &order, spec.as_deref()).await?,
    ))
}

/// The checkpoints part of an order's page.
async fn checkpoints_info(
    shared: &Shared,
    order: &str,
    spec: Option<&str>,
) -> Result<CheckpointsInfo, ApiError> {
    let spec = spec.and_then(|t| gpumesh_protocol::wire::JobSpec::from_toml(t).ok());
    let records = shared.store.checkpoints_of(order).await.map_err(internal)?;
    let turned_off = order
        .parse::<Pubkey>()
        .is_ok_and(|k| shared.live().checkpoints_off.contains(&k));
    let now = crate::service::history::now_ms();
    let all: Vec<CheckpointInfo> = records
        .into_iter()
        .map(|r| CheckpointInfo {
            hash: gpumesh_protocol::hex(&r.checkpoint.hash),
            size: r.checkpoint.size,
            files: r.checkpoint.files,
            unix_ms: r.checkpoint.unix_ms,
            age_s: now.saturating_sub(r.checkpoint.unix_ms) / 1000,
            worker: r.worker,
            lease: r.checkpoint.lease.lease.to_string(),
            nonce: r.checkpoint.lease.nonce,
            status: r.status,
            reason: r.reason,
        })
        .collect();
    let kept = all.iter().filter(|c| c.status == "stored");
    let (stored, stored_bytes) =
        kept.fold((0, 0u64), |(n, b), c| (n + 1, b.saturating_add(c.size)));
    let latest = all.iter().find(|c| c.status == "stored").cloned();
    let price = shared.cfg.checkpoint_storage_price_per_gib_hour;
    let cost = (u128::from(stored_bytes) * u128::from(price)).div_ceil(1 << 30);
    Ok(CheckpointsInfo {
        storage_cost_per_hour: cost.to_string(),
        storage_price_per_gib_hour: price.to_string(),
        enabled: !turned_off && spec.as_ref().is_some_and(|s| s.checkpoint.is_some()),
        turned_off,
        interval_s: spec.and_then(|s| s.checkpoint.map(|c| c.interval_s)),
        latest,
        stored,
        stored_bytes,
        all,
    })
}

/// An order: its state on chain, the leases this service runs for it (seconds served, claimed
/// and settled), its escrow runway at the current spend, why it waits, and its jobs. Once its
/// account is closed (completed or cancelled): status `Closed` with its jobs (exits, result
/// hashes) from the service's store.
#[utoipa::path(
    get,
    path = "/v1/orders/{order}",
    params(("order" = String, Path, description = "The order's address")),
    responses(
        (status = 200, body = OrderInfo),
        (status = 400, body = ApiErrorBody),
        (status = 404, body = ApiErrorBody),
        (status = 502, body = ApiErrorBody)
    )
)]
pub async fn order(
    State(shared): State<Arc<Shared>>,
    Path(order): Path<String>,
) -> Result<Json<OrderInfo>, ApiError> {
    let key = key(&order)?;
    let o: Option<Order> = account(&shared, key).await?;
    let Some(o) = o else {
        return closed_order(&shared, order).await.map(Json);
    };
    let (leases, waiting) = {
        let live = shared.live();
        let leases: Vec<LeaseSummary> = live
            .leases
            .values()
            .filter(|t| t.order == key)
            .map(|t| LeaseSummary {
                lease: t.lease.lease.to_string(),
                nonce: t.lease.nonce,
                worker: t.worker.to_string(),
                gpus: t.gpus,
                gpu_indices: t.gpu_indices.clone(),
                served_seconds: t.chain.served_seconds(),
                receipt_seconds: t.latest_receipt.as_ref().map(|r| r.served_seconds),
                settled_seconds: t.settled_seconds,
                job: format!("{:?}", t.job).to_lowercase(),
            })
            .collect();
        (leases, live.waiting.get(&key).cloned())
    };
    // At most: every assigned GPU at the order's bid (leases are struck at or below it).
    let spend = u128::from(o.gpus_assigned) * u128::from(o.terms.max_price_per_gpu_second);
    let runway = u128::from(o.escrow_remaining).checked_div(spend);
    let jobs = shared.store.jobs_of(&order).await.map_err(internal)?;
    let spec = shared.store.spec(&order).await.map_err(internal)?;
    let job_spec_uploaded = spec.is_some();
    let checkpoints = checkpoints_info(&shared, &order, spec.as_deref()).await?;
    Ok(Json(OrderInfo {
        order: order.clone(),
        buyer: o.buyer.to_string(),
        status: format!("{:?}", o.status),
        class: class_name(o.terms.requirements.gpu_class),
        gpus: o.terms.requirements.gpu_count,
        gpus_assigned: o.gpus_assigned,
        max_price_per_gpu_second: amount(o.terms.max_price_per_gpu_second),
        escrow_remaining: amount(o.escrow_remaining),
        total_paid: amount(o.total_paid),
        max_spend_per_second: spend.to_string(),
        escrow_runway_s: runway.map(|r| u64::try_from(r).unwrap_or(u64::MAX)),
        waiting,
        job_spec_uploaded,
        leases,
        jobs: jobs.into_iter().map(JobInfo::from).collect(),
        checkpoints,
    }))
}

/// The page of an order the chain no longer has (completed or cancelled, its account closed):
/// what this service kept of it, its jobs with their exits and result hashes. 404 for an order
/// this service never ran.
async fn closed_order(shared: &Shared, order: String) -> Result<OrderInfo, ApiError> {
    let buyer = shared.store.buyer_of(&order).await.map_err(internal)?;
    let jobs = shared.store.jobs_of(&order).await.map_err(internal)?;
    if buyer.is_none() && jobs.is_empty() {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no order {order}, and this service never ran one by that address"),
        ));
    }
    let last = shared
        .store
        .samples("order", &order, 1)
        .await
        .map_err(internal)?
        .into_iter()
        .next()
        .and_then(|(_, body)| {
            serde_json::from_str::<crate::service::history::OrderSample>(&body).ok()
        });
    let spec = shared.store.spec(&order).await.map_err(internal)?;
    let checkpoints = checkpoints_info(shared, &order, spec.as_deref()).await?;
    Ok(closed_info(
        order,
        buyer.unwrap_or_default(),
        jobs,
        last,
        checkpoints,
    ))
}

fn closed_info(
    order: String,
    buyer: String,
    jobs: Vec<crate::service::store::JobRecord>,
    last: Option<crate::service::history::OrderSample>,
    checkpoints: CheckpointsInfo,
) -> OrderInfo {
    OrderInfo {
        order,
        buyer,
        status: "Closed".into(),
        class: String::new(),
        gpus: 0,
        gpus_assigned: 0,
        max_price_per_gpu_second: "0".into(),
        escrow_remaining: "0".into(),
        // As the service last followed it before the account closed.
        total_paid: last.map_or_else(|| "0".into(), |s| s.total_paid),
        max_spend_per_second: "0".into(),
        escrow_runway_s: None,
        waiting: None,
        job_spec_uploaded: true,
        leases: vec![],
        jobs: jobs.into_iter().map(JobInfo::from).collect(),
        checkpoints,
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReceiptInfo {
    pub served_seconds: u64,
    /// The heartbeat chain head the worker signed over (hex).
    pub chain_head: String,
    /// The worker's node key's signature (base58).
    pub signature: String,
    pub settled: bool,
}

/// A lease instance: its terms on chain, what this service knows of it, the newest stored
/// receipts and every settlement with its transaction.
#[derive(Debug, Serialize, ToSchema)]
pub struct LeaseInfo {
    pub lease: String,
    pub nonce: u64,
    pub order: String,
    pub worker: String,
    pub gpus: u16,
    pub price_per_gpu_second: String,
    /// Seconds paid on chain.
    pub seconds_settled: u64,
    /// Whether this service operates it now.
    pub operated: bool,
    pub served_seconds: Option<u64>,
    pub receipts: Vec<ReceiptInfo>,
    pub settlements: Vec<Settlement>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct LeaseQuery {
    /// The lease instance (default: the live one).
    pub nonce: Option<u64>,
}

#[utoipa::path(
    get,
    path = "/v1/leases/{lease}",
    params(("lease" = String, Path, description = "The lease's address"), LeaseQuery),
    responses(
        (status = 200, body = LeaseInfo),
        (status = 400, body = ApiErrorBody),
        (status = 404, body = ApiErrorBody),
        (status = 502, body = ApiErrorBody)
    )
)]
pub async fn lease(
    State(shared): State<Arc<Shared>>,
    Path(lease): Path<String>,
    Query(q): Query<LeaseQuery>,
) -> Result<Json<LeaseInfo>, ApiError> {
    let k = key(&lease)?;
    let on_chain: Option<Lease> = account(&shared, k).await?;
    let nonce = match (q.nonce, &on_chain) {
        (Some(n), _) => n,
        (None, Some(l)) => l.nonce,
        (None, None) => {
            return Err(ApiError(
                StatusCode::NOT_FOUND,
                format!("no live lease at {lease}: name an ended one with ?nonce="),
            ));
        }
    };
    let id = LeaseId {
        lease: receipt::key(&k),
        nonce,
    };
    let live_view = {
        let live = shared.live();
        live.leases.get(&id).map(|t| {
            (
                t.order,
                t.worker,
                t.gpus,
                t.chain.served_seconds(),
                t.settled_seconds,
            )
        })
    };
    let receipts = shared
        .store
        .receipts(&id, RECEIPTS_SHOWN)
        .await
        .map_err(internal)?;
    let settlements = shared.store.settlements(&id).await.map_err(internal)?;
    let chain_now = on_chain.filter(|l| l.nonce == nonce);
    if chain_now.is_none() && live_view.is_none() && receipts.is_empty() {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("nothing is known of lease {lease} instance {nonce}"),
        ));
    }
    let (order, worker, gpus, price, seconds_settled) = match (&chain_now, &live_view) {
        (Some(l), _) => (
            l.order.to_string(),
            l.worker.to_string(),
            l.gpus,
            amount(l.price_per_gpu_second),
            l.seconds_settled,
        ),
        (None, Some((o, w, g, _, settled))) => {
            (o.to_string(), w.to_string(), *g, String::new(), *settled)
        }
        (None, None) => (
            String::new(),
            String::new(),
            0,
            String::new(),
            settlements.last().map(|s| s.served_seconds).unwrap_or(0),
        ),
    };
    Ok(Json(LeaseInfo {
        lease,
        nonce,
        order,
        worker,
        gpus,
        price_per_gpu_second: price,
        seconds_settled,
        operated: live_view.is_some(),
        served_seconds: live_view.map(|v| v.3),
        receipts: receipts
            .into_iter()
            .map(|(r, settled)| ReceiptInfo {
                served_seconds: r.served_seconds,
                chain_head: hex(&r.chain_head),
                signature: r.signature.to_string(),
                settled,
            })
            .collect(),
        settlements,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct JobLogs {
    pub lease: String,
    pub nonce: u64,
    pub worker: String,
    pub chunks: Vec<LogChunk>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Logs {
    pub order: String,
    pub jobs: Vec<JobLogs>,
}

fn header_ms(headers: &HeaderMap) -> Result<u64, ApiError> {
    headers
        .get(TIMESTAMP_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| {
            ApiError(
                StatusCode::UNAUTHORIZED,
                format!("send the Unix time in ms you signed at in {TIMESTAMP_HEADER}"),
            )
        })
}

/// The job's output: the stored tail of every lease of the order. Only for the order's buyer:
/// its wallet's signature over `logs_message(order, unix_ms)`.
#[utoipa::path(
    get,
    path = "/v1/orders/{order}/logs",
    params(
        ("order" = String, Path, description = "The order's address"),
        ("x-gpumesh-signature" = String, Header, description = "The buyer's signature over logs_message(order, unix_ms), base58"),
        ("x-gpumesh-unix-ms" = u64, Header, description = "When it was signed (within 300 s of the service's clock)")
    ),
    responses(
        (status = 200, body = Logs),
        (status = 401, body = ApiErrorBody),
        (status = 404, body = ApiErrorBody)
    )
)]
pub async fn logs(
    State(shared): State<Arc<Shared>>,
    Path(order): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Logs>, ApiError> {
    let k = key(&order)?;
    let unix_ms = header_ms(&headers)?;
    fresh(unix_ms)?;
    let signature = signature_header(&headers)?;
    let buyer = buyer_of(&shared, k).await?;
    verify_buyer(signature, &buyer, &logs_message(&k.to_bytes(), unix_ms))?;
    let jobs = shared.store.jobs_of(&order).await.map_err(internal)?;
    let mut out = vec![];
    for j in jobs {
        let chunks = shared.store.logs(&j.lease).await.map_err(internal)?;
        out.push(JobLogs {
            lease: j.lease.lease.to_string(),
            nonce: j.lease.nonce,
            worker: j.worker,
            chunks,
        });
    }
    Ok(Json(Logs { order, jobs: out }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SpecStored {
    pub order: String,
    pub image: String,
    pub stored: bool,
}

/// The buyer uploads the job spec of an order: signed by the order's buyer over
/// `upload_message(order, spec)`, and only the spec whose hash the order carries on chain.
#[utoipa::path(
    put,
    path = "/v1/orders/{order}/spec",
    params(
        ("order" = String, Path, description = "The order's address"),
        ("x-gpumesh-signature" = String, Header, description = "The buyer's signature over upload_message(order, spec), base58")
    ),
    request_body(content = String, content_type = "application/toml", description = "The job-spec file, byte for byte"),
    responses(
        (status = 200, body = SpecStored),
        (status = 400, body = ApiErrorBody),
        (status = 401, body = ApiErrorBody),
        (status = 404, body = ApiErrorBody)
    )
)]
pub async fn put_spec(
    State(shared): State<Arc<Shared>>,
    Path(order): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<SpecStored>, ApiError> {
    let k = key(&order)?;
    let text = std::str::from_utf8(&body)
        .map_err(|_| bad("the job spec must be UTF-8 TOML"))?
        .to_string();
    let spec = JobSpec::from_toml(&text).map_err(|e| bad(e.to_string()))?;
    let o: Order = fetch(&shared, k, "order").await?;
    verify_buyer(
        signature_header(&headers)?,
        &o.buyer,
        &upload_message(&k.to_bytes(), text.as_bytes()),
    )?;
    let hash = gpumesh_protocol::job_spec_hash(text.as_bytes());
    if hash != o.terms.job_spec_hash {
        return Err(bad(
            "this spec's hash is not the one on the order: upload the exact file the order was created with",
        ));
    }
    shared
        .store
        .put_spec(&order, &o.buyer.to_string(), &text, &hash)
        .await
        .map_err(internal)?;
    shared.placement.notify_one();
    Ok(Json(SpecStored {
        order,
        image: spec.image,
        stored: true,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct FeedQuery {
    /// Only events about this order.
    pub order: Option<String>,
    /// Only events about this worker.
    pub worker: Option<String>,
    /// Also this order's job output (with `unix_ms` and `signature`, as for the logs endpoint).
    pub logs: Option<String>,
    pub unix_ms: Option<u64>,
    pub signature: Option<String>,
}

/// The live feed: a WebSocket of JSON events (see `FeedEvent`).
#[utoipa::path(
    get,
    path = "/v1/feed",
    params(FeedQuery),
    responses(
        (status = 101, description = "WebSocket of FeedEvent JSON text frames", body = FeedEvent),
        (status = 400, body = ApiErrorBody),
        (status = 401, body = ApiErrorBody)
    )
)]
pub async fn feed(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<FeedQuery>,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    for k in [&q.order, &q.worker, &q.logs].into_iter().flatten() {
        key(k)?;
    }
    let logs_of = match &q.logs {
        None => None,
        Some(order) => {
            let (Some(unix_ms), Some(signature)) = (q.unix_ms, q.signature.as_deref()) else {
                return Err(ApiError(
                    StatusCode::UNAUTHORIZED,
                    "a job's output needs the buyer's signature: add unix_ms and signature".into(),
                ));
            };
            fresh(unix_ms)?;
            let k = key(order)?;
            let buyer = buyer_of(&shared, k).await?;
            verify_buyer(signature, &buyer, &logs_message(&k.to_bytes(), unix_ms))?;
            Some(order.clone())
        }
    };
    let filter = Filter {
        order: q.order,
        worker: q.worker,
        logs_of,
    };
    let stop = shared.stopping.clone();
    Ok(upgrade.on_upgrade(move |socket| feed::serve(shared, socket, filter, stop)))
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "gpumesh orchestrator API",
        description = "One market as its orchestrator service sees it. Amounts are strings of the mint's base units; addresses are base58. Workers connect on /v1/worker (WebSocket, gpumesh_protocol::wire), which is not part of this document."
    ),
    paths(
        health,
        market,
        workers,
        chain_workers,
        order,
        lease,
        logs,
        put_spec,
        put_checkpoints,
        feed,
        metrics
    ),
    components(schemas(FeedEvent, GpuTelemetryRef))
)]
pub struct ApiDoc;

/// Makes the telemetry's per-GPU schema part of the document.
type GpuTelemetryRef = gpumesh_protocol::wire::GpuTelemetry;

/// The OpenAPI 3.1 document of this API.
#[utoipa::path(get, path = "/v1/openapi.json", responses((status = 200, description = "This document")))]
pub async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    let mut doc = ApiDoc::openapi();
    doc.merge(super::views::ConsoleApi::openapi());
    Json(doc)
}
