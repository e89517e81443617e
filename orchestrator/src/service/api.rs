//! The HTTP API: what the market looks like from the service (workers with live telemetry,
//! orders with their leases, escrow runway and why they wait, job logs), the buyer's job-spec
//! upload (signed by the order's buyer, hash checked against the chain), and Prometheus metrics.

use super::state::Shared;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use gpumesh_client::program::state::{Order, Worker};
use gpumesh_client::{ChainExt, Pubkey, receipt};
use gpumesh_protocol::wire::JobSpec;
use gpumesh_protocol::{Key, Signature};
use serde_json::{Value, json};
use std::str::FromStr;
use std::sync::Arc;

/// Header carrying the buyer's base58 signature over `gpumesh_protocol::jobspec::upload_message`.
pub const SIGNATURE_HEADER: &str = "x-gpumesh-signature";

pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({"error": self.1}))).into_response()
    }
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, message.into())
}

fn key(text: &str) -> Result<Pubkey, ApiError> {
    Pubkey::from_str(text).map_err(|_| bad(format!("{text:?} is not a base58 address")))
}

pub async fn health(State(shared): State<Arc<Shared>>) -> Json<Value> {
    Json(json!({
        "ok": true,
        "market": shared.addrs.market.to_string(),
        "orchestrator": shared.orchestrator.pubkey().to_string(),
    }))
}

pub async fn metrics(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    (
        [("content-type", "text/plain; version=0.0.4")],
        shared.metrics.render(),
    )
}

/// Connected workers with their live telemetry and measured round trip.
pub async fn workers(State(shared): State<Arc<Shared>>) -> Json<Value> {
    let live = shared.live();
    let list: Vec<Value> = live
        .sessions
        .iter()
        .map(|(k, s)| {
            json!({
                "worker": k.to_string(),
                "node_key": s.node_key.to_string(),
                "rtt_us": s.rtt_us,
                "connected_s": s.connected_at.elapsed().as_secs(),
                "last_heartbeat_ms_ago": s.last_seen.elapsed().as_millis() as u64,
                "hardware": s.hardware,
                "telemetry": s.telemetry,
                "leases": live.leases.values().filter(|t| t.worker == *k).map(|t| t.lease.lease.to_string()).collect::<Vec<_>>(),
            })
        })
        .collect();
    Json(json!({ "workers": list }))
}

/// An order: its state on chain, the leases this service runs for it (seconds served and
/// settled), its escrow runway at the current spend, why it waits, and its jobs.
pub async fn order(
    State(shared): State<Arc<Shared>>,
    Path(order): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let key = key(&order)?;
    let o = shared
        .chain
        .call(move |c| c.fetch_opt::<Order>(&key))
        .await
        .map_err(|e| ApiError(StatusCode::BAD_GATEWAY, e.to_string()))?
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no order {order}")))?;
    let (leases, waiting) = {
        let live = shared.live();
        let leases: Vec<Value> = live
            .leases
            .values()
            .filter(|t| t.order == key)
            .map(|t| {
                json!({
                    "lease": t.lease.lease.to_string(),
                    "nonce": t.lease.nonce,
                    "worker": t.worker.to_string(),
                    "gpus": t.gpus,
                    "gpu_indices": t.gpu_indices,
                    "served_seconds": t.chain.served_seconds(),
                    "receipt_seconds": t.latest_receipt.as_ref().map(|r| r.served_seconds),
                    "settled_seconds": t.settled_seconds,
                    "job": format!("{:?}", t.job),
                })
            })
            .collect();
        (leases, live.waiting.get(&key).cloned())
    };
    // At most: every assigned GPU at the order's bid (leases are struck at or below it).
    let spend = u128::from(o.gpus_assigned) * u128::from(o.terms.max_price_per_gpu_second);
    let runway_s = u128::from(o.escrow_remaining).checked_div(spend);
    let jobs = shared
        .store
        .jobs_of(&order)
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(Json(json!({
        "order": order,
        "buyer": o.buyer.to_string(),
        "status": format!("{:?}", o.status),
        "gpus": o.terms.requirements.gpu_count,
        "gpus_assigned": o.gpus_assigned,
        "escrow_remaining": o.escrow_remaining,
        "total_paid": o.total_paid,
        "max_spend_per_second": spend as u64,
        "escrow_runway_s_at_most_spend": runway_s.map(|r| r as u64),
        "waiting": waiting,
        "leases": leases,
        "jobs": jobs.iter().map(|j| json!({
            "lease": j.lease.lease.to_string(),
            "nonce": j.lease.nonce,
            "worker": j.worker,
            "status": j.status,
            "exit_code": j.exit_code,
            "result_hash": j.result_hash,
        })).collect::<Vec<_>>(),
    })))
}

/// The job's output: the stored tail of every lease of the order.
pub async fn logs(
    State(shared): State<Arc<Shared>>,
    Path(order): Path<String>,
) -> Result<Json<Value>, ApiError> {
    key(&order)?;
    let jobs = shared
        .store
        .jobs_of(&order)
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let mut out = vec![];
    for j in jobs {
        let chunks = shared
            .store
            .logs(&j.lease)
            .await
            .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        out.push(json!({
            "lease": j.lease.lease.to_string(),
            "nonce": j.lease.nonce,
            "worker": j.worker,
            "chunks": chunks,
        }));
    }
    Ok(Json(json!({ "order": order, "jobs": out })))
}

/// The buyer uploads the job spec of an order: signed by the order's buyer over
/// `upload_message(order, spec)`, and only the spec whose hash the order carries on chain.
pub async fn put_spec(
    State(shared): State<Arc<Shared>>,
    Path(order): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let key_ = key(&order)?;
    let signature = headers
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            ApiError(
                StatusCode::UNAUTHORIZED,
                format!(
                    "sign the upload with the buyer's wallet and send it in {SIGNATURE_HEADER}"
                ),
            )
        })?;
    let signature = Signature::from_str(signature)
        .map_err(|e| ApiError(StatusCode::UNAUTHORIZED, e.to_string()))?;
    let text = std::str::from_utf8(&body)
        .map_err(|_| bad("the job spec must be UTF-8 TOML"))?
        .to_string();
    let spec = JobSpec::from_toml(&text).map_err(|e| bad(e.to_string()))?;
    let o = shared
        .chain
        .call(move |c| c.fetch_opt::<Order>(&key_))
        .await
        .map_err(|e| ApiError(StatusCode::BAD_GATEWAY, e.to_string()))?
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no order {order}")))?;
    let buyer: Key = receipt::key(&o.buyer);
    let message = gpumesh_protocol::jobspec::upload_message(&key_.to_bytes(), text.as_bytes());
    if !gpumesh_protocol::keys::verify(&buyer, &message, &signature) {
        return Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "the signature is not the order's buyer's over this spec".into(),
        ));
    }
    let hash = gpumesh_protocol::job_spec_hash(text.as_bytes());
    if hash != o.terms.job_spec_hash {
        return Err(bad(
            "this spec's hash is not the one on the order: upload the exact file the order was created with",
        ));
    }
    shared
        .store
        .put_spec(&order, &text, &hash)
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    shared.placement.notify_one();
    Ok(Json(
        json!({"order": order, "image": spec.image, "stored": true}),
    ))
}

/// Worker accounts the service knows on chain (for operators): every worker of the market.
pub async fn chain_workers(State(shared): State<Arc<Shared>>) -> Result<Json<Value>, ApiError> {
    let market = shared.addrs.market;
    let list = shared
        .chain
        .call(move |c| c.list_decoded::<Worker>(&gpumesh_client::filters::in_market(&market)))
        .await
        .map_err(|e| ApiError(StatusCode::BAD_GATEWAY, e.to_string()))?;
    let connected: std::collections::HashSet<Pubkey> =
        shared.live().sessions.keys().copied().collect();
    Ok(Json(json!({
        "workers": list.iter().map(|(k, w)| json!({
            "worker": k.to_string(),
            "gpus": w.hardware.gpu_count,
            "gpus_leased": w.gpus_leased,
            "price_per_gpu_second": w.price_per_gpu_second,
            "stake": w.stake,
            "jailed": w.jailed,
            "connected": connected.contains(k),
        })).collect::<Vec<_>>()
    })))
}
