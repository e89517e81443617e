//! How the running service settles, on the local node with workers simulated over the real
//! wire protocol (they send a worker receipt with each round of lease receipts, as the daemon
//! does):
//!
//! - with a fee budget, a worker's receipts wait until enough has accrued (an 8-GPU worker
//!   serving a few seconds is not settled), and its lease is still paid every second it served
//!   when it ends;
//! - without one (a test network), everything owed is settled at every look, each worker with
//!   one Ed25519 signature over all its leases: the fee per settlement transaction is the fee
//!   payer's signature and one receipt signature, not one per lease.

mod net;

use gpumesh_client::program::state::{Lease, Order};
use gpumesh_client::{Chain, ChainExt, Signer};
use gpumesh_orchestrator::service::Config;
use net::*;
use std::collections::HashSet;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_a_fee_budget_a_worker_is_settled_when_enough_accrued_or_its_lease_ends() {
    let mut net = Net::start_async().await;
    let (worker, _, node) = net.worker(8, PRICE);
    let spec = spec_text("budget");
    let before = net.buyer_tokens();
    let order = net.order(1, 8, &spec, 50_000_000);
    let cfg = Config {
        fee_budget_lamports_per_gpu_hour: 1_000,
        ..net.config(&net.store_url("budget.db"))
    };
    let service = Service::start_with(&net, cfg).await;
    let (status, body) = upload_spec(service.addr, &order, &spec, &net.buyer).await;
    assert_eq!(status, 200, "{body}");
    let feed = FeedClient::connect(service.addr, &format!("?order={order}"))
        .await
        .unwrap();
    let _sim = SimWorker::spawn_with_gpus(service.ws_url(), worker, node.insecure_clone(), 8, 8);

    // Receipts arrive every second; an 8-GPU worker is due after about 4,500 s at this budget.
    let chain = &net.chain;
    assert!(
        eventually(Duration::from_secs(40), || feed
            .of_type("receipt_stored")
            .len()
            >= 4)
        .await,
        "{:?}",
        feed.types()
    );
    assert!(
        feed.of_type("settled").is_empty(),
        "nothing settled while the fees would exceed the budget: {:?}",
        feed.of_type("settled")
    );
    // The job ends after 8 s: its last receipt is paid with the lease's close.
    assert!(
        eventually(Duration::from_secs(40), || chain
            .fetch_opt::<Order>(&order)
            .ok()
            .flatten()
            .is_none())
        .await,
        "the order completes"
    );
    let paid = before - net.buyer_tokens();
    assert!(
        paid % (8 * PRICE) == 0 && (8..=10).contains(&(paid / (8 * PRICE))),
        "the job's seconds on eight GPUs, paid once, at the lease's end: {paid}"
    );
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_a_budget_each_worker_is_settled_with_one_signature_over_its_leases() {
    let mut net = Net::start_async().await;
    let (worker, _, node) = net.worker(8, PRICE);
    let spec = spec_text("one signature");
    let orders = [
        net.order(1, 4, &spec, 5_000_000),
        net.order(2, 4, &spec, 5_000_000),
    ];
    let service = Service::start(&net, &net.store_url("one.db")).await;
    for order in &orders {
        let (status, body) = upload_spec(service.addr, order, &spec, &net.buyer).await;
        assert_eq!(status, 200, "{body}");
    }
    let feed = FeedClient::connect(service.addr, "").await.unwrap();
    let _sim = SimWorker::spawn_with_gpus(service.ws_url(), worker, node.insecure_clone(), 0, 8);

    // Both leases settled at least once.
    let settled_both = || {
        let leases: HashSet<String> = feed
            .of_type("settled")
            .iter()
            .filter_map(|e| e["lease"].as_str().map(String::from))
            .collect();
        leases.len() == 2
    };
    assert!(
        eventually(Duration::from_secs(40), settled_both).await,
        "{:?}",
        feed.types()
    );

    // What the orchestrator's key pays for three settlement transactions: read right after one
    // is reported and right after the third after it (settlement looks every 2 s; nothing else
    // spends meanwhile).
    let payer = net.m.orchestrator.pubkey();
    let lamports =
        |chain: &gpumesh_client::RpcChain| chain.account(&payer).unwrap().map_or(0, |a| a.lamports);
    let signatures_since = |from: usize| -> Vec<String> {
        let mut seen: Vec<String> = vec![];
        for (_, e) in feed.of_type_since("settled", from) {
            if let Some(s) = e["signature"].as_str()
                && !seen.iter().any(|x| x == s)
            {
                seen.push(s.to_string());
            }
        }
        seen
    };
    let from = feed.len();
    assert!(
        eventually(Duration::from_secs(20), || !signatures_since(from)
            .is_empty())
        .await
    );
    let l0 = lamports(&net.chain);
    let after = feed.len();
    assert!(
        eventually(Duration::from_secs(30), || signatures_since(after).len()
            >= 3)
        .await
    );
    let l1 = lamports(&net.chain);
    let spent = l0 - l1;
    let settled: Vec<serde_json::Value> = feed
        .of_type_since("settled", after)
        .into_iter()
        .map(|(_, e)| e)
        .collect();
    // Every transaction paid both leases.
    for s in signatures_since(after) {
        assert_eq!(
            settled
                .iter()
                .filter(|e| e["signature"] == s.as_str())
                .count(),
            2,
            "{settled:?}"
        );
    }
    // A lease receipt each would cost 15,000 lamports a transaction (the fee payer's and two
    // Ed25519 signatures); one worker receipt, 10,000.
    assert_eq!(
        spent,
        3 * 10_000,
        "three settlement transactions: {settled:?}"
    );
    for order in &orders {
        let leases = net
            .chain
            .list(
                &gpumesh_client::program::ID,
                &gpumesh_client::filters::leases_of_order(order),
            )
            .unwrap();
        assert_eq!(leases.len(), 1);
        let lease: Lease = net.chain.fetch(&leases[0].0).unwrap();
        assert!(lease.seconds_settled > 0);
    }
    service.stop().await;
}
