//! `gpumesh order watch` and `gpumesh order logs`: an order as the market's orchestrator service
//! and the chain show it, live. Watch prints what changes (placement, leases, the job's state,
//! seconds served and settled, escrow runway and spend per second) and ends when the order is
//! closed, with what the program recorded in its `OrderClosed` event: paid, refunded, the
//! result's hash. Logs reads the job's output with a request signed by the buyer's wallet.
//!
//! The service's URL: `--orchestrator` (or `GPUMESH_ORCHESTRATOR`), else on the local chain the
//! one `gpumesh up` recorded in its state directory (`up.json`).

use crate::context::{Ctx, MarketView};
use crate::error::CliError;
use crate::output;
use anchor_lang::prelude::Pubkey;
use gpumesh_client::chain::ChainExt;
use gpumesh_client::program::state::{Lease, Order};
use gpumesh_client::{GpumeshEvent, Keypair, Signer, cluster, filters};
use gpumesh_protocol::hex;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::time::{Duration, Instant};

/// How often watch and `logs --follow` look again.
const POLL: Duration = Duration::from_millis(500);

/// The orchestrator service's URL: the flag (or its variable), else the one a running
/// `gpumesh up` recorded for the local chain.
pub fn orchestrator_url(ctx: &Ctx, flag: Option<&str>) -> Result<String, CliError> {
    if let Some(url) = known_orchestrator(ctx, flag) {
        return Ok(url);
    }
    Err(CliError::Input(
        "which orchestrator? pass --orchestrator URL (or set GPUMESH_ORCHESTRATOR), e.g. http://127.0.0.1:8910; on this machine `gpumesh up` records its own and later commands find it".into(),
    ))
}

/// The URL when one is known, else None.
pub fn known_orchestrator(ctx: &Ctx, flag: Option<&str>) -> Option<String> {
    if let Some(url) = flag.map(str::trim).filter(|u| !u.is_empty()) {
        return Some(url.trim_end_matches('/').to_string());
    }
    if !cluster::is_local(&ctx.url) {
        return None;
    }
    let dir = cluster::expand_home(&ctx.localnet_dir().ok()?);
    let text = std::fs::read_to_string(dir.join(crate::up::STATE_FILE)).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    // Only the `up` that serves this chain.
    if v["rpc_url"].as_str() != Some(ctx.url.trim_end_matches('/')) {
        return None;
    }
    v["api_url"].as_str().map(str::to_string)
}

fn http() -> Result<reqwest::blocking::Client, CliError> {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| CliError::Input(format!("cannot start an HTTP client: {e}")))
}

fn unreachable(url: &str, e: impl std::fmt::Display) -> CliError {
    CliError::Input(format!(
        "the orchestrator at {url} did not answer ({e}): check --orchestrator, and that `gpumesh up` (or `gpumesh orchestrator run`) is running"
    ))
}

/// GET `path` of the service as JSON; Ok(None) for 404.
fn get_json(
    client: &reqwest::blocking::Client,
    api: &str,
    path: &str,
    headers: &[(&str, String)],
) -> Result<Option<Value>, CliError> {
    let mut request = client.get(format!("{api}{path}"));
    for (k, v) in headers {
        request = request.header(*k, v);
    }
    let response = request.send().map_err(|e| unreachable(api, e))?;
    let status = response.status();
    if status == reqwest::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    let body = response.text().map_err(|e| unreachable(api, e))?;
    if !status.is_success() {
        let why = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or(body);
        return Err(CliError::Input(format!(
            "the orchestrator refused the request ({status}): {why}"
        )));
    }
    serde_json::from_str(&body).map(Some).map_err(|e| {
        CliError::Input(format!(
            "the orchestrator answered something that is not JSON ({e})"
        ))
    })
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The buyer's signature headers of a logs request (`logs_message(order, unix_ms)`).
fn logs_headers(buyer: &Keypair, order: &Pubkey) -> Vec<(&'static str, String)> {
    let ms = unix_ms();
    let message = gpumesh_protocol::jobspec::logs_message(&order.to_bytes(), ms);
    vec![
        (
            "x-gpumesh-signature",
            buyer.sign_message(&message).to_string(),
        ),
        ("x-gpumesh-unix-ms", ms.to_string()),
    ]
}

/// How an order ended, as the program's `OrderClosed` event says.
struct Closed {
    completed: bool,
    paid: u64,
    refund: u64,
    deposited: u64,
    result_hash: Option<String>,
    signature: Option<String>,
}

/// The `OrderClosed` event of `order`, from its newest transactions.
fn closed_event(ctx: &Ctx, order: &Pubkey) -> Option<Closed> {
    use solana_rpc_client_api::config::RpcTransactionConfig;
    use solana_transaction_status_client_types::UiTransactionEncoding;
    let client = ctx.chain.client();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let signatures = client.get_signatures_for_address(order).unwrap_or_default();
        for s in signatures.iter().filter(|s| s.err.is_none()).take(20) {
            let Ok(signature) = s.signature.parse() else {
                continue;
            };
            let config = RpcTransactionConfig {
                encoding: Some(UiTransactionEncoding::Base64),
                commitment: Some(client.commitment()),
                max_supported_transaction_version: Some(0),
            };
            let Ok(tx) = client.get_transaction_with_config(&signature, config) else {
                continue;
            };
            let logs: Option<Vec<String>> = tx
                .transaction
                .meta
                .and_then(|meta| meta.log_messages.into());
            for event in gpumesh_client::events::parse_logs(&logs.unwrap_or_default()) {
                if let GpumeshEvent::OrderClosed(c) = event
                    && c.order == *order
                {
                    return Some(Closed {
                        completed: c.completed,
                        paid: c.total_paid,
                        refund: c.refund,
                        deposited: c.total_paid.saturating_add(c.refund),
                        result_hash: (c.completed && c.result_hash != [0; 32])
                            .then(|| hex(&c.result_hash)),
                        signature: Some(s.signature.clone()),
                    });
                }
            }
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(POLL);
    }
}

/// What watch last printed, so it prints only changes.
#[derive(Default)]
struct Seen {
    events: BTreeSet<String>,
    status: String,
}

/// One lease as watch shows it.
struct LeaseView {
    lease: Pubkey,
    nonce: u64,
    worker: Pubkey,
    gpus: u16,
    price: u64,
    settled: u64,
}

pub fn watch(
    ctx: &mut Ctx,
    id: u64,
    orchestrator: Option<&str>,
    timeout: Option<u64>,
) -> Result<(), CliError> {
    let buyer = ctx.wallet()?;
    let m = ctx.market()?;
    let key = m.addrs.order(&buyer.pubkey(), id);
    let api = orchestrator_url(ctx, orchestrator)?;
    let client = http()?;
    let started = Instant::now();
    let mut seen = Seen::default();
    let mut last: Option<Order> = None;
    let mut leases_seen: BTreeMap<(Pubkey, u64), Value> = BTreeMap::new();
    let mut page: Option<Value> = None;
    let mut max_served: BTreeMap<(String, u64), u64> = BTreeMap::new();
    let text = !ctx.json();
    let say = |line: &str| {
        if text {
            output::line(&format!(
                "[{:>6.1}s] {line}",
                started.elapsed().as_secs_f64()
            ));
        }
    };
    while let Some(order) = ctx.chain.fetch_opt::<Order>(&key)? {
        let leases: Vec<LeaseView> = ctx
            .chain
            .list_decoded::<Lease>(&filters::leases_of_order(&key))?
            .into_iter()
            .map(|(k, l)| LeaseView {
                lease: k,
                nonce: l.nonce,
                worker: l.worker,
                gpus: l.gpus,
                price: l.price_per_gpu_second,
                settled: l.seconds_settled,
            })
            .collect();
        // The service's view: where it waits, the jobs, seconds served. Its absence is said once.
        match get_json(&client, &api, &format!("/v1/orders/{key}"), &[]) {
            Ok(p) => page = p,
            Err(e) => {
                if seen.events.insert("unreachable".into()) {
                    say(&format!("{e}"));
                }
            }
        }
        if let Some(p) = &page {
            if let Some(w) = p["waiting"].as_str()
                && seen.events.insert(format!("waiting {w}"))
            {
                say(&format!("waiting: {w}"));
            }
            for l in p["leases"].as_array().into_iter().flatten() {
                let k = (
                    l["lease"].as_str().unwrap_or("").to_string(),
                    l["nonce"].as_u64().unwrap_or(0),
                );
                let s = l["served_seconds"].as_u64().unwrap_or(0);
                let e = max_served.entry(k).or_insert(0);
                *e = (*e).max(s);
            }
            for j in p["jobs"].as_array().into_iter().flatten() {
                let status = j["status"].as_str().unwrap_or("?");
                let tag = format!(
                    "job {} {} {status}",
                    j["lease"].as_str().unwrap_or(""),
                    j["nonce"]
                );
                if seen.events.insert(tag) {
                    let code = match j["exit_code"].as_i64() {
                        Some(c) => format!(", exit code {c}"),
                        None => String::new(),
                    };
                    let result = match j["result_hash"].as_str() {
                        Some(h) => format!(", result {h}"),
                        None => String::new(),
                    };
                    say(&format!(
                        "job on worker {}: {status}{code}{result}",
                        j["worker"].as_str().unwrap_or("?")
                    ));
                }
            }
        }
        for l in &leases {
            let tag = format!("lease {} {}", l.lease, l.nonce);
            if seen.events.insert(tag) {
                say(&format!(
                    "placed: lease {} (instance {}) of {} GPU(s) on worker {} at {}",
                    l.lease,
                    l.nonce,
                    l.gpus,
                    l.worker,
                    m.price_text(l.price)
                ));
            }
            leases_seen.insert(
                (l.lease, l.nonce),
                json!({
                    "lease": l.lease.to_string(),
                    "nonce": l.nonce,
                    "worker": l.worker.to_string(),
                    "gpus": l.gpus,
                    "price_per_gpu_second": m.amount(l.price),
                    "seconds_settled": l.settled,
                }),
            );
        }
        for (k, v) in &mut leases_seen {
            if let Some(s) = max_served.get(&(k.0.to_string(), k.1)) {
                v["served_seconds"] = json!(s);
            }
        }
        let status = status_line(&m, &order, &leases, &max_served);
        if status != seen.status {
            say(&status);
            seen.status = status;
        }
        last = Some(order);
        if let Some(t) = timeout
            && started.elapsed() > Duration::from_secs(t)
        {
            return Err(CliError::Input(format!(
                "order {id} has not closed after {t} s; it goes on (`gpumesh order watch {id}` again, `gpumesh order cancel {id}` to stop it)"
            )));
        }
        std::thread::sleep(POLL);
    }

    // Closed: what the program recorded.
    let closed = closed_event(ctx, &key);
    let Some(closed) = closed.or_else(|| {
        last.as_ref().map(|o| Closed {
            completed: true,
            paid: o.total_paid,
            refund: o.escrow_remaining,
            deposited: o.escrow_deposited,
            result_hash: None,
            signature: None,
        })
    }) else {
        return Err(CliError::Missing {
            what: "order",
            key,
            hint: format!(
                " (no order {id} of {} in this market, open or closed); `gpumesh order list` shows the wallet's orders",
                buyer.pubkey()
            ),
        });
    };
    let result_hash = closed.result_hash.clone().or_else(|| {
        page.as_ref().and_then(|p| {
            p["jobs"]
                .as_array()
                .into_iter()
                .flatten()
                .find_map(|j| j["result_hash"].as_str().map(str::to_string))
        })
    });
    // The service's record of each lease's settlements is the final word on its seconds.
    for (k, v) in &mut leases_seen {
        let path = format!("/v1/leases/{}?nonce={}", k.0, k.1);
        if let Ok(Some(history)) = get_json(&client, &api, &path, &[])
            && let Some(settled) = history["settlements"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s["served_seconds"].as_u64())
                .max()
        {
            v["seconds_settled"] = json!(settled);
            v["served_seconds"] = json!(settled);
        }
    }
    let served: u64 = leases_seen
        .values()
        .map(|l| {
            l["served_seconds"]
                .as_u64()
                .unwrap_or(0)
                .max(l["seconds_settled"].as_u64().unwrap_or(0))
        })
        .sum();
    let value = m.with_units(json!({
        "order": key.to_string(),
        "id": id,
        "closed": true,
        "completed": closed.completed,
        "deposited": m.amount(closed.deposited),
        "paid": m.amount(closed.paid),
        "refunded": m.amount(closed.refund),
        "result_hash": result_hash,
        "leases": leases_seen.values().cloned().collect::<Vec<_>>(),
        "served_seconds": served,
        "signature": closed.signature,
        "watched_s": (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
    }));
    let how = if closed.completed {
        "completed"
    } else {
        "cancelled"
    };
    ctx.print(value, || {
        let mut s = format!(
            "order {id} {how}: paid {} for the seconds served, {} refunded (of {} deposited)",
            m.tokens(closed.paid),
            m.tokens(closed.refund),
            m.tokens(closed.deposited)
        );
        if let Some(h) = &result_hash {
            s.push_str(&format!("\nresult hash {h}"));
        }
        if let Some(sig) = &closed.signature {
            s.push_str(&format!("\nsignature: {sig}"));
        }
        s
    });
    Ok(())
}

fn status_line(
    m: &MarketView,
    o: &Order,
    leases: &[LeaseView],
    served: &BTreeMap<(String, u64), u64>,
) -> String {
    let spend: u128 = leases
        .iter()
        .map(|l| u128::from(l.price) * u128::from(l.gpus))
        .sum();
    let spend = u64::try_from(spend).unwrap_or(u64::MAX);
    let runway = match o.escrow_remaining.checked_div(spend) {
        Some(s) => format!("runway {}", output::duration(s)),
        None => "runway: no spend yet".into(),
    };
    let served_s: u64 = leases
        .iter()
        .map(|l| {
            served
                .get(&(l.lease.to_string(), l.nonce))
                .copied()
                .unwrap_or(0)
        })
        .sum();
    let settled: u64 = leases.iter().map(|l| l.settled).sum();
    format!(
        "{:?}: {}/{} GPU(s) assigned, {} lease(s); served {served_s} s, settled {settled} s; paid {}, escrow {} left; spending {}/s, {runway}",
        o.status,
        o.gpus_assigned,
        o.terms.requirements.gpu_count,
        o.active_leases,
        m.tokens(o.total_paid),
        m.tokens(o.escrow_remaining),
        m.tokens(spend),
    )
}

pub fn logs(
    ctx: &mut Ctx,
    id: u64,
    follow: bool,
    orchestrator: Option<&str>,
) -> Result<(), CliError> {
    let buyer = ctx.wallet()?;
    let m = ctx.market()?;
    let key = m.addrs.order(&buyer.pubkey(), id);
    let api = orchestrator_url(ctx, orchestrator)?;
    let client = http()?;
    let path = format!("/v1/orders/{key}/logs");
    let fetch = || -> Result<Value, CliError> {
        get_json(&client, &api, &path, &logs_headers(&buyer, &key))?.ok_or_else(|| {
            CliError::Missing {
                what: "order",
                key,
                hint: format!(
                    " (the orchestrator at {api} knows no order {id} of {}); `gpumesh order list` shows the wallet's orders",
                    buyer.pubkey()
                ),
            }
        })
    };
    if !follow {
        let body = fetch()?;
        ctx.print(body.clone(), || {
            let mut s = String::new();
            for j in body["jobs"].as_array().into_iter().flatten() {
                for c in j["chunks"].as_array().into_iter().flatten() {
                    s.push_str(c["data"].as_str().unwrap_or(""));
                }
            }
            s.trim_end_matches('\n').to_string()
        });
        return Ok(());
    }
    // Follow: print each new chunk once (JSON: one line per chunk), until the order is closed.
    let mut printed: BTreeMap<(String, u64), i64> = BTreeMap::new();
    let mut closed_rounds = 0;
    loop {
        let open = ctx.chain.fetch_opt::<Order>(&key)?.is_some();
        let body = fetch()?;
        for j in body["jobs"].as_array().into_iter().flatten() {
            let job = (
                j["lease"].as_str().unwrap_or("").to_string(),
                j["nonce"].as_u64().unwrap_or(0),
            );
            let done = printed.get(&job).copied().unwrap_or(0);
            let mut upto = done;
            for c in j["chunks"].as_array().into_iter().flatten() {
                let seq = c["seq"].as_i64().unwrap_or(0);
                if seq <= done {
                    continue;
                }
                upto = upto.max(seq);
                let data = c["data"].as_str().unwrap_or("");
                if ctx.json() {
                    output::line(
                        &serde_json::to_string(&json!({
                            "order": key.to_string(),
                            "lease": job.0,
                            "nonce": job.1,
                            "worker": j["worker"],
                            "seq": seq,
                            "stream": c["stream"],
                            "data": data,
                        }))
                        .unwrap_or_default(),
                    );
                } else {
                    let mut out = std::io::stdout().lock();
                    let _ = out.write_all(data.as_bytes()).and_then(|()| out.flush());
                }
            }
            printed.insert(job, upto);
        }
        // One more look after the order closed: the last chunks arrive before its close.
        if !open {
            closed_rounds += 1;
            if closed_rounds > 1 {
                return Ok(());
            }
        }
        std::thread::sleep(POLL);
    }
}
