//! Never lie about a transaction: a node that stalls after it received the transaction gives an
//! "unknown outcome" (exit 3, the signature, how to check), never "could not reach the cluster";
//! an answer lost on the way back is resolved by the signature's status; `gpumesh confirm` tells
//! what landed.

use crate::net::{Net, ONE, tok};
use crate::proxy::{Failure, Proxy};
use gpumesh_client::chain::ChainExt;
use gpumesh_client::program::state::Worker;
use serde_json::Value;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Polls the worker's bonded stake until it is `want` (the node may apply the transaction a
/// moment after it answered nothing).
fn wait_for_stake(net: &Net, worker: &anchor_lang::prelude::Pubkey, want: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let stake = net.chain.fetch::<Worker>(worker).unwrap().stake;
        if stake == want || Instant::now() > deadline {
            return stake;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_node_that_stalls_after_the_send_gives_an_unknown_outcome_with_the_signature() {
    let mut net = Net::start();
    let (operator, _) = net.wallet("operator.json", "10", "0");
    let (supplier, supplier_key) = net.wallet("supplier.json", "10", "1000");
    net.market(&operator);
    net.register(&supplier, &[]);
    let worker = net.addrs().worker(&supplier_key);

    // JSON mode: the error object on stdout, status 3.
    let proxy = Proxy::start(&net.url, Failure::StallAfterSend);
    let started = Instant::now();
    let out = net
        .gpumesh(&supplier)
        .env("GPUMESH_URL", &proxy.url)
        .env("GPUMESH_RPC_TIMEOUT", "4")
        .args(["worker", "stake", "100"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(
        out.status.code(),
        Some(3),
        "unknown outcome: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        started.elapsed() < Duration::from_secs(45),
        "the request timeout bounds the wait"
    );
    assert!(proxy.sent.load(Ordering::SeqCst), "the node got the send");
    let v: Value = serde_json::from_str(stdout.trim()).unwrap();
    let e = &v["error"];
    assert_eq!(e["kind"], "unknown_outcome", "{v}");
    assert_eq!(e["exit_code"], 3);
    let signature = e["signature"].as_str().unwrap().to_string();
    let message = e["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("gpumesh confirm {signature}"))
            && message.contains("may apply it twice")
            && !message.contains("could not reach the cluster"),
        "{message}"
    );
    drop(proxy);

    // What the chain says matches what was reported: it may have landed, and it did, once.
    assert_eq!(wait_for_stake(&net, &worker, 100 * ONE), 100 * ONE);
    let c = net.ok(&supplier, &["confirm", &signature]);
    assert_eq!(c["status"], "landed");
    assert_eq!(c["signature"], signature.as_str());

    // Text mode: the same on stderr.
    let proxy = Proxy::start(&net.url, Failure::StallAfterSend);
    let out = net
        .gpumesh(&supplier)
        .env("GPUMESH_URL", &proxy.url)
        .env("GPUMESH_RPC_TIMEOUT", "4")
        .env("GPUMESH_OUTPUT", "text")
        .args(["worker", "unstake", "10"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("whether it landed is unknown") && stderr.contains("gpumesh confirm "),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
    drop(proxy);
    let deadline = Instant::now() + Duration::from_secs(20);
    while net.chain.fetch::<Worker>(&worker).unwrap().unbonding != 10 * ONE {
        assert!(Instant::now() < deadline, "the unstake landed");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_lost_answer_to_the_send_is_resolved_by_the_signature_status() {
    let mut net = Net::start();
    let (operator, _) = net.wallet("operator.json", "10", "0");
    let (supplier, supplier_key) = net.wallet("supplier.json", "10", "1000");
    net.market(&operator);
    net.register(&supplier, &[]);
    let worker = net.addrs().worker(&supplier_key);

    let proxy = Proxy::start(&net.url, Failure::LoseSendAnswers);
    let out = net
        .gpumesh(&supplier)
        .env("GPUMESH_URL", &proxy.url)
        .env("GPUMESH_RPC_TIMEOUT", "4")
        .args(["worker", "stake", "100"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "landed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(proxy.sent.load(Ordering::SeqCst));
    let v: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["stake"], tok(100 * ONE));
    let signature = v["signature"].as_str().unwrap();
    // Staked exactly once, as reported.
    assert_eq!(net.chain.fetch::<Worker>(&worker).unwrap().stake, 100 * ONE);
    assert_eq!(net.tokens(&supplier_key), 900 * ONE);
    assert_eq!(
        net.ok(&supplier, &["confirm", signature])["status"],
        "landed"
    );
}

#[test]
fn confirm_tells_landed_failed_and_unknown_apart() {
    let net = Net::start();
    let (wallet, _) = net.wallet("wallet.json", "1", "0");
    // A well-formed signature the cluster never saw.
    let never = bs58_signature();
    let e = net.error(&wallet, &["confirm", &never]);
    assert_eq!(e["status"], "not_found");
    assert!(
        e["message"].as_str().unwrap().contains("has not landed"),
        "{e}"
    );
    // Not a signature at all.
    let e = net.fails(&wallet, &["confirm", "hello"]);
    assert!(e.contains("is not a transaction signature"), "{e}");
    // A cluster that cannot be asked leaves it unknown: status 3.
    let port = gpumesh_localnet::free_port().unwrap();
    let out = net
        .gpumesh(&wallet)
        .env("GPUMESH_URL", format!("http://127.0.0.1:{port}"))
        .env("GPUMESH_RPC_TIMEOUT", "4")
        .args(["confirm", &never])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
}

/// A signature-shaped string (64 bytes in base58) no transaction has.
fn bs58_signature() -> String {
    gpumesh_client::Signature::from([7u8; 64]).to_string()
}
