//! Every role's commands through the binary: the supplier's `worker update`, `status`,
//! `claim-rewards`, `unjail` and `close`; the operator's `market fund-rewards`,
//! `withdraw-treasury`, `update --reference-price`, `--orchestrator` (key rotation),
//! `--pause`/`--resume`; everyone's `balance`.

use crate::net::{Net, ONE, tok};
use anchor_lang::prelude::Pubkey;
use gpumesh_client::chain::{Chain, ChainExt};
use gpumesh_client::program::instructions::breaker_cap;
use gpumesh_client::program::state::{CloseReason, Market, Worker};
use gpumesh_client::{Keypair, Signer, cluster};
use gpumesh_orchestrator::actions::Orchestrator;
use std::str::FromStr;
use std::time::Duration;

const YEAR: u64 = 365 * 86_400;

/// `amount / stake` a year over `seconds`, as a percentage truncated toward zero to 4 decimals:
/// the worker status's rule, computed here on its own.
fn annual_percent(amount: i128, stake: u64, seconds: u64) -> String {
    let ppm = amount * YEAR as i128 * 1_000_000 / (stake as i128 * seconds as i128);
    let sign = if ppm < 0 { "-" } else { "" };
    let abs = ppm.unsigned_abs();
    format!("{sign}{}.{:04}", abs / 10_000, abs % 10_000)
}

#[test]
fn a_supplier_updates_inspects_and_closes_its_worker() {
    let mut net = Net::start();
    let (operator, _) = net.wallet("operator.json", "10", "0");
    let (supplier, supplier_key) = net.wallet("supplier.json", "10", "1000");
    let (buyer, buyer_key) = net.wallet("buyer.json", "10", "500");
    let orch = net.market(&operator);
    let a = net.addrs();
    let (node, _) = net.register(&supplier, &["--gpus", "2"]);
    let worker = a.worker(&supplier_key);

    // The class default is the datasheet's 80 GB read as 80 GiB, shown in GiB.
    let s = net.ok(&supplier, &["worker", "status"]);
    assert_eq!(s["vram_mib"], 81_920);
    assert_eq!(s["stake"], "0");
    assert!(s["stake_return"].is_null(), "no stake, no return: {s}");
    assert!(s["registered_at"].as_str().unwrap().ends_with('Z'));
    let text = net
        .gpumesh(&supplier)
        .env("GPUMESH_OUTPUT", "text")
        .args(["worker", "status"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("2 x h100, 80 GiB each") && text.contains("live leases: none"),
        "{text}"
    );

    // Price, claim and node key change while idle.
    let new_node = net.path("node2.json");
    net.ok(
        &supplier,
        &["keys", "new", "-o", new_node.to_str().unwrap()],
    );
    let u = net.ok(
        &supplier,
        &[
            "worker",
            "update",
            "--price",
            "5.4/h",
            "--vram",
            "40GiB",
            "--node-key",
            new_node.to_str().unwrap(),
        ],
    );
    // 5.4 per GPU-hour is exactly 0.0015 per GPU-second: both are in the JSON.
    assert_eq!(u["price_per_gpu_second"], "0.0015");
    assert_eq!(u["price_per_gpu_hour"], "5.4");
    assert_eq!(u["hardware"]["vram_mib"], 40_960);
    let w: Worker = net.chain.fetch(&worker).unwrap();
    assert_eq!(
        (w.price_per_gpu_second, w.hardware.vram_mib),
        (1_500, 40_960)
    );
    assert_eq!(
        w.node_key,
        cluster::read_keypair(&new_node).unwrap().pubkey()
    );
    let e = net.fails(&supplier, &["worker", "update", "--price", "0.0015/s"]);
    assert!(e.contains("nothing to change"), "{e}");
    let out = net.run(&supplier, &["worker", "update", "--vram", "80"]);
    assert_eq!(out.status.code(), Some(2), "a bare number is a usage error");
    assert!(String::from_utf8_lossy(&out.stdout).contains("80GiB or 81920MiB"));
    // Back to the first node key, which the test signs receipts with.
    let node_path = net.path("node-back.json");
    cluster::write_keypair(&node, &node_path, false).unwrap();
    net.ok(
        &supplier,
        &[
            "worker",
            "update",
            "--node-key",
            node_path.to_str().unwrap(),
            "--vram",
            "80GiB",
        ],
    );

    // A lease: the status lists it and the stake it locks.
    net.ok(&supplier, &["worker", "stake", "250"]);
    net.order(&buyer, &["--deposit", "40", "--min-vram", "80GiB"]);
    let order = a.order(&buyer_key, 1);
    let lease = net.assign(&orch, &order, &worker, 1);
    let s = net.ok(&supplier, &["worker", "status"]);
    assert_eq!(s["leases"].as_array().map(Vec::len), Some(1), "{s}");
    assert_eq!(s["leases"][0]["order"], order.to_string());
    assert_eq!(s["leases"][0]["lease"], lease.lease.to_string());
    assert_eq!(s["stake_locked_by_leases"], "100");
    assert_eq!(s["leases"][0]["price_per_gpu_hour"], "5.4");
    assert_eq!(s["price_per_gpu_hour"], "5.4");
    assert_eq!(s["stake_free"], "150");
    let e = net.fails(&supplier, &["worker", "unstake", "200"]);
    assert!(
        e.contains("100 of it locked by 1 leased GPU(s)") && e.contains("at most 150"),
        "{e}"
    );
    // While a lease runs: the price may change, the claim may not.
    let e = net.fails(&supplier, &["worker", "update", "--gpus", "4"]);
    assert!(e.contains("serves 1 lease(s)"), "{e}");
    let u = net.ok(&supplier, &["worker", "update", "--price", "7.2/h"]);
    assert_eq!(u["price_per_gpu_second"], "0.002");

    // Served seconds settle; the status shows earnings and the return on stake.
    std::thread::sleep(Duration::from_secs(3));
    let mut service = Net::service(&lease);
    let receipt = net.serve(&mut service, &node, 2);
    Orchestrator::new(a, orch.insecure_clone())
        .end_lease(
            &mut net.chain,
            &lease,
            Some(receipt),
            CloseReason::Completed,
        )
        .unwrap();
    let s = net.ok(&supplier, &["worker", "status"]);
    let earned = 2 * 1_500 - 2 * 1_500 * 250 / 10_000; // 2 s at the lease's 0.0015, less the fee
    assert_eq!(s["earnings_total"], tok(earned));
    assert_eq!(s["leases"].as_array().map(Vec::len), Some(0));
    let r = &s["stake_return"];
    assert_eq!(r["ppm"], earned * 1_000_000 / (250 * ONE), "{s}");
    // The stake's yield over the worker's life, with the figures it is computed from.
    let y = &s["stake_yield"];
    let seconds = y["seconds"].as_u64().unwrap();
    assert_eq!(
        y["to_ts"].as_i64().unwrap() - y["from_ts"].as_i64().unwrap(),
        seconds as i64
    );
    assert_eq!(y["from_ts"], s["registered_ts"]);
    assert_eq!(
        (
            &y["stake"],
            &y["fee_income"],
            &y["emission_rewards"],
            &y["slashed"]
        ),
        (&tok(250 * ONE), &tok(earned), &tok(0), &tok(0)),
        "{y}"
    );
    assert_eq!(y["year_seconds"], YEAR);
    let fees = annual_percent(earned as i128, 250 * ONE, seconds);
    assert_eq!(y["fees_percent_per_year"], fees, "{y}");
    assert_eq!(y["total_percent_per_year"], fees);
    assert_eq!(y["net_percent_per_year"], fees);
    assert_eq!(y["emission_percent_per_year"], "0.0000");
    let text = net
        .gpumesh(&supplier)
        .env("GPUMESH_OUTPUT", "text")
        .args(["worker", "status"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("stake yield over the worker's life")
            && text.contains("not a forecast")
            && text.contains(&format!("fee income {}", tok(earned).as_str().unwrap()))
            && text.contains("emission rewards 0 = 0.00% a year"),
        "{text}"
    );

    // Closing needs an empty record: each blocker is named with its command.
    let e = net.fails(&supplier, &["worker", "close"]);
    assert!(
        e.contains("250 is bonded: `gpumesh worker unstake 250`")
            && e.contains("unclaimed: `gpumesh worker claim`"),
        "{e}"
    );
    assert!(net.chain.account(&worker).unwrap().is_some());

    // A worker that never staked closes, and its rent comes back.
    let (idle, idle_key) = net.wallet("idle.json", "10", "0");
    net.register(&idle, &[]);
    let before = net.chain.lamports(&idle_key).unwrap();
    let c = net.ok(&idle, &["worker", "close"]);
    assert!(net.chain.account(&a.worker(&idle_key)).unwrap().is_none());
    assert!(net.chain.lamports(&idle_key).unwrap() > before);
    assert!(c["rent_returned_sol"].as_str().is_some());
    let e = net.fails(&idle, &["worker", "status"]);
    assert!(e.contains("does not exist"), "{e}");
}

#[test]
fn rewards_are_claimed_and_a_jailed_worker_unjails_with_its_stake_back() {
    let mut net = Net::start();
    let (operator, operator_key) = net.wallet("operator.json", "10", "2000");
    let (supplier, supplier_key) = net.wallet("supplier.json", "10", "1000");
    let (buyer, buyer_key) = net.wallet("buyer.json", "10", "500");
    // 1 token a second released to leased GPUs; no jail period, so unjail needs only stake.
    let orch = net.market_with(
        &operator,
        "jail_period = 0",
        "[emission]\nsupply = \"1000000\"\nsupplier_share_bps = 10000\nduration = 1000000\n",
    );
    let a = net.addrs();

    let e = net.fails(&supplier, &["market", "fund-rewards", "10"]);
    assert!(e.contains("not this market's authority"), "{e}");
    let f = net.ok(&operator, &["market", "fund-rewards", "1000"]);
    assert_eq!(f["amount"], "1000");
    assert_eq!(f["rewards_vault"], "1000");
    assert_eq!(net.tokens(&operator_key), 1_000 * ONE);

    let (node, _) = net.register(&supplier, &[]);
    let worker = a.worker(&supplier_key);
    net.ok(&supplier, &["worker", "stake", "100"]);
    let e = net.fails(&supplier, &["worker", "claim-rewards"]);
    assert!(e.contains("no rewards to claim"), "{e}");
    net.order(&buyer, &["--deposit", "40"]);
    let order = a.order(&buyer_key, 1);
    let lease = net.assign(&orch, &order, &worker, 1);
    std::thread::sleep(Duration::from_secs(3));
    let mut service = Net::service(&lease);
    let receipt = net.serve(&mut service, &node, 2);
    Orchestrator::new(a, orch.insecure_clone())
        .end_lease(
            &mut net.chain,
            &lease,
            Some(receipt),
            CloseReason::Completed,
        )
        .unwrap();
    let w: Worker = net.chain.fetch(&worker).unwrap();
    assert!(w.rewards_claimable > 0, "settled seconds earned rewards");
    let before = net.tokens(&supplier_key);
    let c = net.ok(&supplier, &["worker", "claim-rewards"]);
    assert_eq!(c["amount"], tok(w.rewards_claimable));
    assert_eq!(net.tokens(&supplier_key), before + w.rewards_claimable);
    let s = net.ok(&supplier, &["worker", "status"]);
    assert_eq!(s["rewards_total"], tok(w.rewards_claimable));
    assert_eq!(s["rewards_claimable"], "0");

    // Fraud: slashed by half and jailed (the jail period is 0 here).
    Orchestrator::new(a, orch.insecure_clone())
        .slash_fraud(&mut net.chain, &worker, None, [9; 32])
        .unwrap();
    let s = net.ok(&supplier, &["worker", "status"]);
    assert_eq!(s["jailed"], true);
    assert_eq!(s["stake"], "50");
    // The yield counts the emission rewards and, as a loss beside them, the slash.
    let y = &s["stake_yield"];
    let seconds = y["seconds"].as_u64().unwrap();
    let earned = w.earnings_total as i128;
    let rewards = w.rewards_total as i128;
    assert_eq!(y["emission_rewards"], tok(w.rewards_total), "{y}");
    assert_eq!(y["slashed"], "50");
    assert_eq!(
        y["emission_percent_per_year"],
        annual_percent(rewards, 50 * ONE, seconds)
    );
    assert_eq!(
        y["net_percent_per_year"],
        annual_percent(earned + rewards - 50 * ONE as i128, 50 * ONE, seconds),
        "a slash larger than the income: a negative rate"
    );
    assert!(y["net_percent_per_year"].as_str().unwrap().starts_with('-'));
    let e = net.fails(&supplier, &["worker", "unjail"]);
    assert!(
        e.contains("needs 100 bonded") && e.contains("`gpumesh worker stake 50`"),
        "{e}"
    );
    let e = net.fails(&supplier, &["worker", "close"]);
    assert!(e.contains("jailed"), "{e}");
    net.ok(&supplier, &["worker", "stake", "50"]);
    net.ok(&supplier, &["worker", "unjail"]);
    let w: Worker = net.chain.fetch(&worker).unwrap();
    assert!(!w.jailed);
    let e = net.fails(&supplier, &["worker", "unjail"]);
    assert!(e.contains("not jailed"), "{e}");
}

#[test]
fn an_operator_prices_pauses_rotates_the_orchestrator_and_withdraws_fees() {
    let mut net = Net::start();
    let (operator, operator_key) = net.wallet("operator.json", "10", "0");
    let (supplier, supplier_key) = net.wallet("supplier.json", "10", "1000");
    let (buyer, buyer_key) = net.wallet("buyer.json", "10", "500");
    let old_orch = net.market(&operator);
    let a = net.addrs();

    // No emission schedule: nothing to fund, said before sending.
    let e = net.fails(&operator, &["market", "fund-rewards", "10"]);
    assert!(e.contains("no emission schedule"), "{e}");

    // Reference prices by class name.
    let u = net.ok(
        &operator,
        &[
            "market",
            "update",
            "--reference-price",
            "h100=2.88/h",
            "--reference-price",
            "a100-80gb=0.0005/s",
        ],
    );
    assert_eq!(u["changed"][0], "reference prices");
    let m: Market = net.chain.fetch(&a.market).unwrap();
    assert_eq!((m.reference_prices[9], m.reference_prices[8]), (800, 500));
    let shown = net.ok(&operator, &["market", "show"]);
    let refs = shown["reference_prices"].as_array().unwrap();
    let h100 = refs.iter().find(|r| r["class"] == "h100").expect("h100");
    assert_eq!(
        (&h100["price_per_gpu_second"], &h100["price_per_gpu_hour"]),
        (&tok(800), &serde_json::json!("2.88")),
        "{shown}"
    );
    let cap = breaker_cap(&m, 9).unwrap().unwrap();
    assert_eq!(h100["breaker_cap_per_gpu_second"], tok(cap));
    assert_eq!(
        h100["breaker_cap_per_gpu_hour"],
        gpumesh_client::amount::format(cap * 3_600, 6)
    );
    let text = net
        .gpumesh(&operator)
        .env("GPUMESH_OUTPUT", "text")
        .args(["market", "show"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("h100 2.88 per GPU-hour (0.0008 per GPU-second); cap 11.52/h"),
        "{text}"
    );
    let e = net.fails(
        &operator,
        &["market", "update", "--reference-price", "h100=0.85/h"],
    );
    assert!(e.contains("use 0.8496/h (0.000236/s) or 0.8532/h"), "{e}");
    let e = net.fails(
        &operator,
        &["market", "update", "--reference-price", "h100=0.85"],
    );
    assert!(e.contains("has no unit"), "{e}");
    let e = net.fails(
        &operator,
        &["market", "update", "--reference-price", "h100"],
    );
    assert!(e.contains("write CLASS=PRICE with the price's unit"), "{e}");
    let e = net.fails(
        &operator,
        &["market", "update", "--reference-price", "a100=1"],
    );
    assert!(e.contains("unknown GPU class"), "{e}");
    let e = net.fails(&buyer, &["market", "update", "--pause"]);
    assert!(e.contains("not this market's authority"), "{e}");

    // Pause: a new order is refused before sending, nothing moves; resume takes orders again.
    net.ok(&operator, &["market", "update", "--pause"]);
    assert_eq!(net.ok(&buyer, &["market", "show"])["paused"], true);
    let spec = net.path("paused-job.toml");
    std::fs::write(&spec, "image = \"pytorch\"\n").unwrap();
    let e = net.fails(
        &buyer,
        &[
            "order",
            "create",
            "--class",
            "h100",
            "--regions",
            "eu-west",
            "--max-price",
            "0.002/s",
            "--duration",
            "60",
            "--deposit",
            "1",
            "--spec",
            spec.to_str().unwrap(),
        ],
    );
    assert!(e.contains("is paused") && e.contains("--resume"), "{e}");
    assert_eq!(net.tokens(&buyer_key), 500 * ONE);
    net.ok(&operator, &["market", "update", "--resume"]);
    assert_eq!(net.ok(&buyer, &["market", "show"])["paused"], false);

    // Rotate the orchestrator key: the old one can no longer assign, the new one can.
    let new_orch = Keypair::new();
    let new_orch_path = net.path("orchestrator2.json");
    cluster::write_keypair(&new_orch, &new_orch_path, false).unwrap();
    net.chain
        .airdrop(&new_orch.pubkey(), 1_000_000_000)
        .unwrap();
    let u = net.ok(
        &operator,
        &[
            "market",
            "update",
            "--orchestrator",
            new_orch_path.to_str().unwrap(),
        ],
    );
    assert_eq!(u["orchestrator"], new_orch.pubkey().to_string());
    assert_eq!(
        net.ok(&operator, &["market", "show"])["orchestrator"],
        new_orch.pubkey().to_string()
    );
    let (node, _) = net.register(&supplier, &[]);
    net.ok(&supplier, &["worker", "stake", "100"]);
    net.order(&buyer, &["--deposit", "40"]);
    let order = a.order(&buyer_key, 1);
    let worker = a.worker(&supplier_key);
    let shown = net.ok(&buyer, &["order", "show", "1"]);
    assert_eq!(
        (
            &shown["max_price_per_gpu_second"],
            &shown["max_price_per_gpu_hour"]
        ),
        (&tok(2_000), &serde_json::json!("7.2")),
        "{shown}"
    );
    let listed = net.ok(&buyer, &["order", "list"]);
    assert_eq!(listed["orders"][0]["max_price_per_gpu_hour"], "7.2");
    let refused =
        Orchestrator::new(a, old_orch.insecure_clone()).assign(&mut net.chain, &order, &worker, 1);
    assert!(refused.is_err(), "the old orchestrator key is out");
    let lease = net.assign(&new_orch, &order, &worker, 1);
    std::thread::sleep(Duration::from_secs(3));
    let mut service = Net::service(&lease);
    let receipt = net.serve(&mut service, &node, 2);
    Orchestrator::new(a, new_orch.insecure_clone())
        .end_lease(
            &mut net.chain,
            &lease,
            Some(receipt),
            CloseReason::Completed,
        )
        .unwrap();
    // 2.5% of 2 s at 0.001, less the 20% of it the market burns by default.
    let fee = 2 * 1_000 * 250 / 10_000 * 8 / 10;
    assert_eq!(net.vault(&a.treasury_vault), fee);

    // Fees out of the treasury: bounded by what accrued, to the authority or another wallet.
    let e = net.fails(&operator, &["market", "withdraw-treasury", "1"]);
    assert!(e.contains("the treasury holds 0.00004"), "{e}");
    let e = net.fails(&buyer, &["market", "withdraw-treasury", "all"]);
    assert!(e.contains("not this market's authority"), "{e}");
    let w = net.ok(&operator, &["market", "withdraw-treasury", "0.00002"]);
    assert_eq!(w["treasury_balance"], tok(fee - 20));
    assert_eq!(net.tokens(&operator_key), 20);
    let w = net.ok(
        &operator,
        &[
            "market",
            "withdraw-treasury",
            "all",
            "--to",
            &buyer_key.to_string(),
        ],
    );
    assert_eq!(w["amount"], tok(fee - 20));
    assert_eq!(net.vault(&a.treasury_vault), 0);
    let m: Market = net.chain.fetch(&a.market).unwrap();
    assert_eq!(m.treasury_balance, 0);
}

#[test]
fn balance_shows_sol_and_the_market_token() {
    let mut net = Net::start();
    let (operator, operator_key) = net.wallet("operator.json", "3", "12.5");
    // Without a market: SOL alone, and a note on how to see the token.
    let b = net.ok(&operator, &["balance"]);
    assert_eq!(b["address"], operator_key.to_string());
    assert!(b["tokens"].is_null());
    net.market(&operator);
    let b = net.ok(&operator, &["balance"]);
    assert_eq!(b["tokens"], "12.5");
    assert_eq!(b["decimals"], 6);
    assert_eq!(b["mint"], net.mint.to_string());
    let sol: f64 = b["sol"].as_str().unwrap().parse().unwrap();
    assert!(sol > 2.9 && sol <= 3.0, "{b}");
    let other = Pubkey::new_unique();
    let b = net.ok(&operator, &["balance", &other.to_string()]);
    assert_eq!(
        (b["sol"].as_str(), b["tokens"].as_str()),
        (Some("0"), Some("0"))
    );
    let e = net.fails(&operator, &["balance", "nobody"]);
    assert!(e.contains("is not a base58 address"), "{e}");
    let _ = Pubkey::from_str(&operator_key.to_string()).unwrap();
}
