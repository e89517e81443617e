//! The orchestrator service as a process would run it: the local chain node in process, the
//! service on a free port with its store (SQLite; PostgreSQL for the restart), and workers simulated over the real wire
//! protocol. A job runs to completion and is paid exactly for its seconds; a worker that dies is
//! declared down, its buyer paid the slash and the job moved; a restart of the service loses no
//! receipt; and every kind of bad input gets a clear error and moves nothing.

mod net;
mod postgres;

use gpumesh_client::program::state::{Order, Worker};
use gpumesh_client::{ChainExt, Keypair, Signer, receipt};
use gpumesh_protocol::wire::{self, ErrorCode, ToOrchestrator, ToWorker, WIRE_VERSION};
use net::*;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_runs_to_completion_and_the_buyer_pays_exactly_its_seconds() {
    let mut net = Net::start_async().await;
    let (worker, _, node) = net.worker(1, PRICE);
    let spec = spec_text("done");
    let deposit = 1_000_000;
    let before = net.buyer_tokens();
    let order = net.order(1, 1, &spec, deposit);
    let service = Service::start(&net, &net.store_url("a.db")).await;
    // Without its spec the order waits, and says why.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (status, body) = http(service.addr, "GET", &format!("/v1/orders/{order}"), &[], "").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("waiting for its job spec"), "{body}");
    let (status, body) = upload_spec(service.addr, &order, &spec, &net.buyer).await;
    assert_eq!(status, 200, "{body}");

    // The live feed: everything about this order, and (signed by the buyer) its job's output.
    let addr = service.addr;
    let t = now_ms();
    let everyone = FeedClient::connect(addr, &format!("?order={order}"))
        .await
        .unwrap();
    let buyer_feed = FeedClient::connect(
        addr,
        &format!(
            "?order={order}&logs={order}&unix_ms={t}&signature={}",
            logs_signature(&order, t, &net.buyer)
        ),
    )
    .await
    .unwrap();
    let stranger = Keypair::new();
    let refused = FeedClient::connect(
        addr,
        &format!(
            "?logs={order}&unix_ms={t}&signature={}",
            logs_signature(&order, t, &stranger)
        ),
    )
    .await;
    assert!(
        refused.is_err_and(|e| e.contains("401")),
        "only the buyer reads the output"
    );

    let sim = SimWorker::spawn(service.ws_url(), worker, node.insecure_clone(), 4);
    let chain = &net.chain;
    assert!(
        eventually(Duration::from_secs(40), || chain
            .fetch_opt::<Order>(&order)
            .ok()
            .flatten()
            .is_none())
        .await,
        "the order completes"
    );
    assert!(
        eventually(Duration::from_secs(5), || everyone
            .types()
            .contains(&"order_completed".to_string()))
        .await,
        "{:?}",
        everyone.types()
    );
    let kinds = everyone.types();
    let first = |k: &str| kinds.iter().position(|x| x == k).unwrap_or(usize::MAX);
    assert!(
        first("lease_started") < first("receipt_stored")
            && first("receipt_stored") < first("lease_ended")
            && first("lease_ended") < first("order_completed"),
        "{kinds:?}"
    );
    assert!(
        !kinds.contains(&"job_log".to_string()),
        "output is the buyer's only"
    );
    assert!(
        buyer_feed.of_type("job_log").iter().any(|e| e["data"]
            .as_str()
            .is_some_and(|d| d.contains("hello from the job"))),
        "{:?}",
        buyer_feed.types()
    );
    // Every settlement names a transaction that landed on chain.
    let settled = everyone.of_type("settled");
    assert!(
        !settled.is_empty() || !kinds.contains(&"settled".to_string()),
        "{kinds:?}"
    );
    let (status, body) = http(
        addr,
        "GET",
        &format!(
            "/v1/leases/{}?nonce={}",
            everyone.of_type("lease_started")[0]["lease"]
                .as_str()
                .unwrap(),
            everyone.of_type("lease_started")[0]["nonce"]
        ),
        &[],
        "",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let lease: serde_json::Value = serde_json::from_str(&body).unwrap();
    let settlements = lease["settlements"].as_array().cloned().unwrap_or_default();
    assert!(!settlements.is_empty(), "{lease}");
    for s in &settlements {
        let sig: gpumesh_client::Signature = s["signature"].as_str().unwrap().parse().unwrap();
        assert!(
            matches!(
                net.chain.signature_status(&sig).unwrap(),
                gpumesh_client::rpc::SignatureStatus::Landed { result: Ok(()), .. }
            ),
            "{s}"
        );
    }
    assert_eq!(
        settlements.last().unwrap()["served_seconds"],
        lease["receipts"].as_array().unwrap().last().unwrap()["served_seconds"],
        "the last receipt is settled: {lease}"
    );
    let paid = net.market().total_escrow; // nothing left in escrow
    assert_eq!(paid, 0);
    let w: Worker = net.chain.fetch(&worker).unwrap();
    let served = w.record.served_gpu_seconds;
    assert!(served >= 4, "served {served} GPU-seconds");
    // Paid exactly for the settled seconds, the rest refunded.
    assert_eq!(net.buyer_tokens(), before - served * PRICE);
    // The stored output: the buyer's signature, dated now; nobody else, and not a stale one.
    let (status, logs) = signed_logs(service.addr, &order, &net.buyer, now_ms()).await;
    assert_eq!(status, 200, "{logs}");
    assert!(logs.contains("hello from the job"), "{logs}");
    let (status, body) = signed_logs(service.addr, &order, &stranger, now_ms()).await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = signed_logs(service.addr, &order, &net.buyer, now_ms() - 600_000).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("sign it again"), "{body}");
    let (status, body) = http(
        service.addr,
        "GET",
        &format!("/v1/orders/{order}/logs"),
        &[],
        "",
    )
    .await;
    assert_eq!(status, 401, "{body}");
    // The document of all of it.
    let (status, doc) = http(service.addr, "GET", "/v1/openapi.json", &[], "").await;
    assert_eq!(status, 200);
    let doc: serde_json::Value = serde_json::from_str(&doc).unwrap();
    for path in [
        "/v1/market",
        "/v1/orders/{order}",
        "/v1/leases/{lease}",
        "/v1/feed",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} missing");
    }
    assert!(doc["components"]["schemas"]["FeedEvent"].is_object());
    let (status, body) = http(service.addr, "GET", "/v1/market", &[], "").await;
    assert_eq!(status, 200, "{body}");
    let m: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(m["totals"]["escrow"], "0", "{m}");
    let (_, metrics) = http(service.addr, "GET", "/metrics", &[], "").await;
    assert!(
        metrics.contains("gpumesh_orchestrator_receipts_total"),
        "{metrics}"
    );
    assert!(sim.seen.lock().unwrap().acks.iter().any(|(_, s)| *s >= 1));
    sim.kill();
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_worker_is_declared_down_its_buyer_paid_and_the_job_moved() {
    let mut net = Net::start_async().await;
    let (cheap, _, cheap_node) = net.worker(1, PRICE);
    let (spare, _, spare_node) = net.worker(1, 2 * PRICE);
    let spec = spec_text("long");
    let order = net.order(1, 1, &spec, 5_000_000);
    let service = Service::start(&net, &net.store_url("b.db")).await;
    let feed = FeedClient::connect(service.addr, &format!("?order={order}"))
        .await
        .unwrap();
    upload_spec(service.addr, &order, &spec, &net.buyer).await;
    let a = SimWorker::spawn(service.ws_url(), cheap, cheap_node.insecure_clone(), 0);
    // The job starts on the only worker; the spare joins afterwards and proves its class.
    assert!(
        eventually(Duration::from_secs(20), || !a
            .seen
            .lock()
            .unwrap()
            .started
            .is_empty())
        .await,
        "the job starts on the first worker"
    );
    let b = SimWorker::spawn(service.ws_url(), spare, spare_node.insecure_clone(), 0);
    let stake_before = net.chain.fetch::<Worker>(&cheap).unwrap().stake;
    let buyer_before = net.buyer_tokens();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        b.seen.lock().unwrap().challenges,
        1,
        "the spare proved its class"
    );
    a.kill();
    let killed = Instant::now();
    assert!(
        eventually(Duration::from_secs(20), || !b
            .seen
            .lock()
            .unwrap()
            .started
            .is_empty())
        .await,
        "the job moves to the spare worker"
    );
    let moved = b.seen.lock().unwrap().started[0].1;
    println!(
        "failover: job started on the spare {:.2} s after the worker died (grace 1.5 s)",
        moved.duration_since(killed).as_secs_f64()
    );
    let w: Worker = net.chain.fetch(&cheap).unwrap();
    assert!(w.stake < stake_before, "the dead worker was slashed");
    assert_eq!(w.record.failures, 1);
    assert!(
        w.record.served_gpu_seconds >= 1,
        "its last receipt was settled"
    );
    assert_eq!(
        net.buyer_tokens(),
        buyer_before + (stake_before - w.stake),
        "the buyer got the slash"
    );
    let o: Order = net.chain.fetch(&order).unwrap();
    assert_eq!(o.gpus_assigned, 1);
    let lease: gpumesh_client::program::state::Lease = net
        .chain
        .fetch(&gpumesh_client::pda::lease(&order, &spare).0)
        .unwrap();
    assert_eq!(lease.worker, spare, "the spare holds the order's lease");
    // One transaction closed the dead worker's lease, paid its buyer and leased the spare.
    assert!(
        eventually(Duration::from_secs(5), || !feed
            .of_type("worker_down")
            .is_empty())
        .await
    );
    let down = feed.of_type("worker_down");
    assert_eq!(down.len(), 1, "{down:?}");
    assert_eq!(down[0]["worker"], cheap.to_string());
    assert_eq!(down[0]["replacement"], spare.to_string(), "{down:?}");
    let signature: gpumesh_client::Signature =
        down[0]["signature"].as_str().unwrap().parse().unwrap();
    assert!(matches!(
        net.chain.signature_status(&signature).unwrap(),
        gpumesh_client::rpc::SignatureStatus::Landed { result: Ok(()), .. }
    ));
    assert!(
        until(Duration::from_secs(5), || async {
            metric(
                service.addr,
                "gpumesh_orchestrator_failover_restart_seconds_count",
            )
            .await
                == 1.0
        })
        .await,
        "the job running again is measured"
    );
    a.kill();
    b.kill();
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_worker_with_no_spare_is_paid_for_and_its_order_waits_with_a_reason() {
    let mut net = Net::start_async().await;
    let (only, _, node) = net.worker(1, PRICE);
    let spec = spec_text("alone");
    let order = net.order(1, 1, &spec, 5_000_000);
    let service = Service::start(&net, &net.store_url("n.db")).await;
    let feed = FeedClient::connect(service.addr, &format!("?order={order}"))
        .await
        .unwrap();
    upload_spec(service.addr, &order, &spec, &net.buyer).await;
    let a = SimWorker::spawn(service.ws_url(), only, node.insecure_clone(), 0);
    assert!(
        eventually(Duration::from_secs(20), || !a
            .seen
            .lock()
            .unwrap()
            .started
            .is_empty())
        .await,
        "the job starts"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stake_before = net.chain.fetch::<Worker>(&only).unwrap().stake;
    let buyer_before = net.buyer_tokens();
    a.kill();
    let chain = &net.chain;
    assert!(
        eventually(Duration::from_secs(20), || chain
            .fetch::<Worker>(&only)
            .map(|w| w.record.failures == 1)
            .unwrap_or(false))
        .await,
        "the worker is declared down"
    );
    let w: Worker = net.chain.fetch(&only).unwrap();
    assert_eq!(
        net.buyer_tokens(),
        buyer_before + (stake_before - w.stake),
        "the buyer got the slash"
    );
    let o: Order = net.chain.fetch(&order).unwrap();
    assert_eq!(
        (o.gpus_assigned, o.active_leases),
        (0, 0),
        "the order is open"
    );
    assert!(
        eventually(Duration::from_secs(5), || !feed
            .of_type("worker_down")
            .is_empty())
        .await
    );
    let down = feed.of_type("worker_down");
    assert!(down[0]["replacement"].is_null(), "{down:?}");
    let (status, body) = http(service.addr, "GET", &format!("/v1/orders/{order}"), &[], "").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("no worker fits yet"), "{body}");
    assert!(
        feed.of_type("order_waiting").iter().any(|e| e["reason"]
            .as_str()
            .is_some_and(|r| r.contains("no worker fits"))),
        "{:?}",
        feed.types()
    );
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_service_loses_no_receipt_and_pays_nothing_twice() {
    let net = Net::start_async().await;
    let store = net.store_url("c.db");
    restart(net, &store).await;
}

/// The same on PostgreSQL: the store's other backend under the real service.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_service_on_postgres_loses_no_receipt_and_pays_nothing_twice() {
    let net = Net::start_async().await;
    let db = postgres::Database::create().await;
    restart(net, &db.url).await;
}

async fn restart(mut net: Net, store: &str) {
    let (worker, _, node) = net.worker(1, PRICE);
    let spec = spec_text("restart");
    let order = net.order(1, 1, &spec, 5_000_000);
    let store = store.to_string();
    let service = Service::start(&net, &store).await;
    upload_spec(service.addr, &order, &spec, &net.buyer).await;
    let sim = SimWorker::spawn(service.ws_url(), worker, node.insecure_clone(), 0);
    assert!(
        eventually(Duration::from_secs(20), || sim
            .seen
            .lock()
            .unwrap()
            .acks
            .len()
            >= 2)
        .await,
        "receipts are acknowledged"
    );
    service.stop().await;
    sim.kill();
    // Settled on the way down.
    let settled_at_stop = net
        .chain
        .fetch::<Worker>(&worker)
        .unwrap()
        .record
        .served_gpu_seconds;
    assert!(settled_at_stop >= 1);

    // The service comes back on the same store; the worker reconnects and resumes its lease.
    let service = Service::start(&net, &store).await;
    let sim = SimWorker::spawn(service.ws_url(), worker, node.insecure_clone(), 0);
    let chain = &net.chain;
    assert!(
        eventually(Duration::from_secs(30), || chain
            .fetch::<Worker>(&worker)
            .map(|w| w.record.served_gpu_seconds > settled_at_stop + 1)
            .unwrap_or(false))
        .await,
        "the lease keeps being paid after the restart"
    );
    let o: Order = net.chain.fetch(&order).unwrap();
    let w: Worker = net.chain.fetch(&worker).unwrap();
    assert_eq!(
        o.total_paid,
        w.record.served_gpu_seconds * PRICE,
        "each second paid once"
    );
    assert_eq!(
        w.record.failures, 0,
        "the restart did not look like a failure"
    );
    sim.kill();
    service.stop().await;
}

/// Polls an async condition until it holds or `timeout` passes.
async fn until<F: std::future::Future<Output = bool>>(
    timeout: Duration,
    mut check: impl FnMut() -> F,
) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_service_follows_the_chain_and_lists_it_again_after_losing_the_websocket() {
    let mut net = Net::start_async().await;
    let (w1, _, n1) = net.worker(1, PRICE);
    let (w2, _, n2) = net.worker(1, PRICE);
    let upstream: std::net::SocketAddr = net
        .node
        .ws_url()
        .trim_start_matches("ws://")
        .parse()
        .expect("ws address");
    let relay = Relay::start(upstream).await;
    let mut cfg = net.config(&net.store_url("f.db"));
    cfg.ws_url = Some(relay.url());
    let service = Service::start_with(&net, cfg).await;
    let addr = service.addr;
    const FOLLOWING: &str = "gpumesh_orchestrator_chain_following";
    const LOADS: &str = "gpumesh_orchestrator_chain_loads_total";
    const UPDATES: &str = "gpumesh_orchestrator_chain_updates_total";
    const RECONNECTS: &str = "gpumesh_orchestrator_chain_reconnects_total";
    assert!(
        until(Duration::from_secs(20), || async {
            metric(addr, FOLLOWING).await == 1.0
        })
        .await,
        "the service follows the market over the websocket"
    );
    let loads = metric(addr, LOADS).await;
    let s1 = SimWorker::spawn(service.ws_url(), w1, n1.insecure_clone(), 0);
    let s2 = SimWorker::spawn(service.ws_url(), w2, n2.insecure_clone(), 0);

    // Placed from the followed copy: the order is heard of, placed, and the market never listed.
    let spec = spec_text("follow");
    let first = net.order(1, 1, &spec, 5_000_000);
    let (status, body) = upload_spec(addr, &first, &spec, &net.buyer).await;
    assert_eq!(status, 200, "{body}");
    let assigned = |chain: &gpumesh_client::RpcChain, order| {
        chain
            .fetch::<Order>(&order)
            .map(|o| o.gpus_assigned == 1)
            .unwrap_or(false)
    };
    assert!(
        eventually(Duration::from_secs(20), || assigned(&net.chain, first)).await,
        "the first order is placed"
    );
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(
        metric(addr, LOADS).await,
        loads,
        "placement rounds read the followed copy, not a listing"
    );
    assert!(metric(addr, UPDATES).await > 0.0);

    // The websocket drops: the copy is stale, placement lists the market itself meanwhile.
    relay.cut();
    assert!(
        until(Duration::from_secs(20), || async {
            metric(addr, FOLLOWING).await == 0.0
        })
        .await,
        "the loss is noticed"
    );
    let second = net.order(2, 1, &spec, 5_000_000);
    let (status, body) = upload_spec(addr, &second, &spec, &net.buyer).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        eventually(Duration::from_secs(20), || assigned(&net.chain, second)).await,
        "placement goes on without the websocket"
    );
    assert!(metric(addr, LOADS).await > loads);

    // It comes back: reconnected, listed again, followed again.
    relay.restore();
    assert!(
        until(Duration::from_secs(30), || async {
            metric(addr, FOLLOWING).await == 1.0
        })
        .await,
        "the follower reconnects"
    );
    assert!(metric(addr, RECONNECTS).await >= 1.0);
    let o1: Order = net.chain.fetch(&first).unwrap();
    let o2: Order = net.chain.fetch(&second).unwrap();
    assert_eq!(
        (o1.active_leases, o2.active_leases),
        (1, 1),
        "one lease each: nothing placed twice while the copy was stale"
    );
    s1.kill();
    s2.kill();
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_proves_its_class_before_work_and_a_faked_answer_is_slashed_for_fraud() {
    let mut net = Net::start_async().await;
    let (honest, _, hn) = net.worker(1, PRICE);
    let (faker, _, fnode) = net.worker(1, PRICE);
    let (mute, _, mnode) = net.worker(1, PRICE);
    let stake_before: Worker = net.chain.fetch(&faker).unwrap();
    let service = Service::start(&net, &net.store_url("ch.db")).await;
    let addr = service.addr;
    let feed = FeedClient::connect(addr, "").await.unwrap();
    let spec = spec_text("proven");
    // Both fit the order, both are cheap: only a proven one may get it.
    let order = net.order(1, 1, &spec, 5_000_000);
    let (status, body) = upload_spec(addr, &order, &spec, &net.buyer).await;
    assert_eq!(status, 200, "{body}");
    let f = SimWorker::spawn_answering(
        service.ws_url(),
        faker,
        fnode.insecure_clone(),
        0,
        Answer::WrongProduct,
    );
    let m = SimWorker::spawn_answering(
        service.ws_url(),
        mute,
        mnode.insecure_clone(),
        0,
        Answer::Silent,
    );
    let chain = &net.chain;
    let jailed = |w| chain.fetch::<Worker>(&w).map(|w| w.jailed).unwrap_or(false);
    assert!(
        eventually(Duration::from_secs(20), || jailed(faker) && jailed(mute)).await,
        "a wrong answer and no answer are both slashed"
    );
    let o: Order = net.chain.fetch(&order).unwrap();
    assert_eq!(
        o.gpus_assigned, 0,
        "no work for a worker that did not prove its class"
    );

    let h = SimWorker::spawn(service.ws_url(), honest, hn.insecure_clone(), 0);
    assert!(
        eventually(Duration::from_secs(20), || chain
            .fetch::<Order>(&order)
            .map(|o| o.gpus_assigned == 1)
            .unwrap_or(false))
        .await,
        "the proven worker gets the order"
    );
    assert_eq!(h.seen.lock().unwrap().challenges, 1);
    let leases = net
        .chain
        .list_decoded::<gpumesh_client::program::state::Lease>(&gpumesh_client::filters::in_market(
            &net.m.addrs.market,
        ))
        .unwrap();
    assert!(
        leases.iter().all(|(_, l)| l.worker == honest),
        "only the honest worker serves"
    );

    // The record: the fraud, a smaller stake, and a transcript whose hash is the evidence.
    let w: Worker = net.chain.fetch(&faker).unwrap();
    assert_eq!(w.record.frauds, 1);
    assert!(
        w.stake < stake_before.stake,
        "slashed: {} -> {}",
        stake_before.stake,
        w.stake
    );
    let (status, body) = http(
        addr,
        "GET",
        &format!("/v1/workers/{faker}/challenges"),
        &[],
        "",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let record = &v["challenges"][0];
    assert_eq!(record["outcome"], "failed", "{v}");
    assert!(
        record["reason"].as_str().unwrap().contains("not row"),
        "{v}"
    );
    let transcript = record["transcript"].as_str().unwrap();
    assert_eq!(
        record["evidence"].as_str().unwrap(),
        blake3::hash(transcript.as_bytes()).to_hex().as_str(),
        "the evidence is the transcript's hash"
    );
    let (_, body) = http(
        addr,
        "GET",
        &format!("/v1/workers/{mute}/challenges"),
        &[],
        "",
    )
    .await;
    assert!(body.contains("no commitment within the deadline"), "{body}");
    let (_, body) = http(
        addr,
        "GET",
        &format!("/v1/workers/{honest}/challenges"),
        &[],
        "",
    )
    .await;
    assert!(body.contains("\"passed\""), "{body}");
    let verdicts = feed.of_type("challenge");
    assert_eq!(
        verdicts.iter().filter(|e| e["passed"] == true).count(),
        1,
        "{verdicts:?}"
    );
    assert_eq!(
        verdicts.iter().filter(|e| e["passed"] == false).count(),
        2,
        "{verdicts:?}"
    );
    assert_eq!(
        metric(addr, "gpumesh_orchestrator_challenges_failed_total").await,
        2.0
    );
    f.kill();
    m.kill();
    h.kill();
    service.stop().await;
}

/// A raw connection, for sending what no honest daemon sends.
async fn raw(
    url: &str,
) -> (
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    [u8; 32],
    gpumesh_protocol::Key,
) {
    use futures_util::StreamExt;
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("connect");
    let Some(Ok(tokio_tungstenite::tungstenite::Message::Text(text))) = ws.next().await else {
        panic!("no welcome")
    };
    let Ok(ToWorker::Welcome {
        nonce, program_id, ..
    }) = wire::decode::<ToWorker>(&text)
    else {
        panic!("not a welcome: {text}")
    };
    (ws, nonce, program_id)
}

async fn next_error(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> Option<ErrorCode> {
    use futures_util::StreamExt;
    while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
        if let tokio_tungstenite::tungstenite::Message::Text(text) = m
            && let Ok(ToWorker::Error { code, .. }) = wire::decode::<ToWorker>(&text)
        {
            return Some(code);
        }
    }
    None
}

fn hello(
    worker: &gpumesh_client::Pubkey,
    node: &Keypair,
    signer: &Keypair,
    program_id: &gpumesh_protocol::Key,
    nonce: &[u8; 32],
) -> ToOrchestrator {
    let key = receipt::key(worker);
    ToOrchestrator::Hello {
        version: WIRE_VERSION,
        node_key: receipt::key(&node.pubkey()),
        worker: key,
        hardware: wire::HardwareReport {
            class: gpumesh_protocol::GpuClass::H100,
            gpus: vec![],
            measured_bandwidth_gbps: 3_000.0,
            backend: "test".into(),
        },
        signature: wire::sign_auth(&receipt::signing_key(signer), program_id, &key, nonce),
        agent: "test".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_gets_a_clear_error_and_moves_nothing() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let mut net = Net::start_async().await;
    let (worker, _, node) = net.worker(1, PRICE);
    let (other, _, other_node) = net.worker(1, PRICE);
    let spec = spec_text("bad");
    let order = net.order(1, 1, &spec, 1_000_000);
    let service = Service::start(&net, &net.store_url("d.db")).await;
    let market_before = net.market();

    // A session signed by a key that is not the worker's node key.
    let (mut ws, nonce, program) = raw(&service.ws_url()).await;
    let stranger = Keypair::new();
    let m = hello(&worker, &stranger, &stranger, &program, &nonce);
    ws.send(Message::Text(wire::encode(&m).into()))
        .await
        .unwrap();
    assert_eq!(next_error(&mut ws).await, Some(ErrorCode::AuthFailed));
    // A worker claiming another's node key (it signs with its own key: the signature fails).
    let (mut ws, nonce, program) = raw(&service.ws_url()).await;
    let m = hello(&worker, &other_node, &node, &program, &nonce);
    ws.send(Message::Text(wire::encode(&m).into()))
        .await
        .unwrap();
    assert_eq!(next_error(&mut ws).await, Some(ErrorCode::AuthFailed));
    // A real node key for the wrong worker account.
    let (mut ws, nonce, program) = raw(&service.ws_url()).await;
    let m = hello(&worker, &other_node, &other_node, &program, &nonce);
    ws.send(Message::Text(wire::encode(&m).into()))
        .await
        .unwrap();
    assert_eq!(next_error(&mut ws).await, Some(ErrorCode::AuthFailed));
    let _ = other;

    // An honest session, then garbage, an out-of-order heartbeat and a forged receipt.
    let (mut ws, nonce, program) = raw(&service.ws_url()).await;
    let m = hello(&worker, &node, &node, &program, &nonce);
    ws.send(Message::Text(wire::encode(&m).into()))
        .await
        .unwrap();
    ws.send(Message::Text("{\"type\":\"nonsense\"}".into()))
        .await
        .unwrap();
    assert_eq!(next_error(&mut ws).await, Some(ErrorCode::Malformed));
    let hb = ToOrchestrator::Heartbeat(wire::Heartbeat {
        seq: 7,
        unix_ms: now_ms(),
        telemetry: Default::default(),
        leases: vec![],
        rtt_us: None,
    });
    ws.send(Message::Text(wire::encode(&hb).into()))
        .await
        .unwrap();
    assert_eq!(next_error(&mut ws).await, Some(ErrorCode::OutOfOrder));
    let forged = gpumesh_protocol::SignedReceipt::sign(
        &receipt::signing_key(&stranger),
        program,
        receipt::key(&worker),
        0,
        100,
        [0; 32],
    );
    ws.send(Message::Text(
        wire::encode(&ToOrchestrator::Receipt(forged)).into(),
    ))
    .await
    .unwrap();
    assert_eq!(next_error(&mut ws).await, Some(ErrorCode::BadReceipt));
    let honest_but_unknown = gpumesh_protocol::SignedReceipt::sign(
        &receipt::signing_key(&node),
        program,
        receipt::key(&worker),
        0,
        100,
        [0; 32],
    );
    ws.send(Message::Text(
        wire::encode(&ToOrchestrator::Receipt(honest_but_unknown.clone())).into(),
    ))
    .await
    .unwrap();
    assert_eq!(next_error(&mut ws).await, Some(ErrorCode::UnknownLease));
    // The same unknown lease again and again (what a daemon back from a partition sends for a
    // lease that ended meanwhile): told once, not held against the connection, which stays
    // open past the error budget: the next frame back answers the next bad message.
    for _ in 0..24 {
        ws.send(Message::Text(
            wire::encode(&ToOrchestrator::Receipt(honest_but_unknown.clone())).into(),
        ))
        .await
        .unwrap();
    }
    let forged_again = gpumesh_protocol::SignedReceipt::sign(
        &receipt::signing_key(&stranger),
        program,
        receipt::key(&worker),
        0,
        101,
        [0; 32],
    );
    ws.send(Message::Text(
        wire::encode(&ToOrchestrator::Receipt(forged_again)).into(),
    ))
    .await
    .unwrap();
    assert_eq!(next_error(&mut ws).await, Some(ErrorCode::BadReceipt));

    // Spec uploads: unsigned, signed by someone else, and a spec the order does not carry.
    let (status, body) = http(
        service.addr,
        "PUT",
        &format!("/v1/orders/{order}/spec"),
        &[],
        &spec,
    )
    .await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = upload_spec(service.addr, &order, &spec, &stranger).await;
    assert_eq!(status, 401, "{body}");
    let other_spec = spec_text("not the one");
    let (status, body) = upload_spec(service.addr, &order, &other_spec, &net.buyer).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("not the one on the order"), "{body}");
    let (status, _) = http(service.addr, "GET", "/v1/orders/not-a-key", &[], "").await;
    assert_eq!(status, 400);

    // Nothing moved on chain.
    let after = net.market();
    assert_eq!(after.total_escrow, market_before.total_escrow);
    assert_eq!(after.active_leases, 0);
    service.stop().await;
}
