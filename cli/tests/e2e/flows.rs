//! The market flow through the binary, bad inputs, the buyer's exit and `gpumesh localnet`.

use crate::net::{Net, ONE, tok};
use anchor_lang::prelude::Pubkey;
use assert_cmd::Command;
use gpumesh_client::chain::{Chain, ChainExt};
use gpumesh_client::program::state::{CloseReason, Market, Order, Worker};
use gpumesh_client::{Keypair, RpcChain, Signer, cluster, receipt, token};
use gpumesh_localnet::LocalState;
use gpumesh_orchestrator::actions::Orchestrator;
use gpumesh_protocol::LeaseService;
use serde_json::Value;
use std::str::FromStr;

#[test]
fn market_worker_order_settlement_and_cancel_through_the_binary() {
    let mut net = Net::start();
    let (operator, _) = net.wallet("operator.json", "10", "0");
    let (supplier, supplier_key) = net.wallet("supplier.json", "10", "1000");
    let (buyer, buyer_key) = net.wallet("buyer.json", "10", "500");
    assert_eq!(net.tokens(&supplier_key), 1_000 * ONE);

    // Operator: market init, then the same again changes nothing.
    let orch = net.market(&operator);
    let a = net.addrs();
    let config = net.path("market.toml");
    let again = net.ok(
        &operator,
        &["market", "init", config.to_str().unwrap(), "--if-missing"],
    );
    assert_eq!(again["created"], false);
    assert_eq!(again["differences"].as_array().map(Vec::len), Some(0));
    let shown = net.ok(&operator, &["market", "show"]);
    assert_eq!(shown["params"]["min_stake_per_gpu"], "100");
    assert_eq!(shown["decimals"], 6);
    assert_eq!(shown["orchestrator"], orch.pubkey().to_string());

    // Supplier: register and stake.
    let node = Keypair::new();
    let node_path = net.path("node.json");
    cluster::write_keypair(&node, &node_path, false).unwrap();
    let v = net.ok(
        &supplier,
        &[
            "worker",
            "register",
            "--class",
            "h100",
            "--gpus",
            "1",
            "--region",
            "eu-west",
            "--price",
            "0.001/s",
            "--node-key",
            node_path.to_str().unwrap(),
        ],
    );
    let worker = Pubkey::from_str(v["worker"].as_str().unwrap()).unwrap();
    assert_eq!(worker, a.worker(&supplier_key));
    net.ok(&supplier, &["worker", "stake", "150"]);
    assert_eq!(net.tokens(&supplier_key), 850 * ONE);
    assert_eq!(net.vault(&a.stake_vault), 150 * ONE);
    let w = net.ok(&supplier, &["worker", "show"]);
    assert_eq!(w["stake"], "150");
    assert_eq!(w["class"], "h100");

    // Buyer: an order with a job spec whose hash goes on chain.
    let spec = net.path("job.toml");
    std::fs::write(&spec, "image = \"pytorch\"\n").unwrap();
    let v = net.ok(
        &buyer,
        &[
            "order",
            "create",
            "--class",
            "h100",
            "--gpus",
            "1",
            "--regions",
            "eu-west,us-east",
            "--max-price",
            "0.002/s",
            "--duration",
            "3600",
            "--deposit",
            "40",
            "--spec",
            spec.to_str().unwrap(),
        ],
    );
    assert_eq!(v["id"], 1);
    let order = a.order(&buyer_key, 1);
    assert_eq!(net.tokens(&buyer_key), 460 * ONE);
    assert_eq!(net.vault(&a.escrow_vault), 40 * ONE);
    let on_chain: Order = net.chain.fetch(&order).unwrap();
    let expected = gpumesh_protocol::job_spec_hash(b"image = \"pytorch\"\n");
    assert_eq!(on_chain.terms.job_spec_hash, expected);
    net.ok(&buyer, &["order", "top-up", "1", "2.5"]);
    assert_eq!(net.vault(&a.escrow_vault), 42_500_000);

    // Orchestrator (through the client): assign, let 3 s pass, settle a receipt for 2 s.
    let lease = net.assign(&orch, &order, &worker, 1);
    std::thread::sleep(std::time::Duration::from_secs(3));
    let mut service = LeaseService::new(
        receipt::key(&gpumesh_client::program::ID),
        receipt::key(&lease.lease),
        lease.nonce,
    );
    let last = net.serve(&mut service, &node, 2);
    Orchestrator::new(a, orch.insecure_clone())
        .end_lease(&mut net.chain, &lease, Some(last), CloseReason::Completed)
        .unwrap();
    let paid = 2 * 1_000; // 2 s x 0.001 tokens
    let fee = paid * 250 / 10_000;
    let burned = fee * 2_000 / 10_000; // the market's default burn: 20% of fees
    assert_eq!(net.vault(&a.treasury_vault), fee - burned);
    let o = net.ok(&buyer, &["order", "show", "1"]);
    assert_eq!(o["total_paid"], tok(paid));
    assert_eq!(o["active_leases"], 0);
    let listed = net.ok(&buyer, &["order", "list"]);
    assert_eq!(listed["orders"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        net.ok(&supplier, &["order", "list"])["orders"]
            .as_array()
            .map(Vec::len),
        Some(0),
        "the memcmp filter keeps other buyers' orders out"
    );

    // Supplier claims; buyer cancels and gets the rest back.
    net.ok(&supplier, &["worker", "claim"]);
    assert_eq!(net.tokens(&supplier_key), 850 * ONE + paid - fee);
    let c = net.ok(&buyer, &["order", "cancel", "1"]);
    assert_eq!(c["refund"], tok(42_500_000 - paid));
    assert_eq!(net.tokens(&buyer_key), 500 * ONE - paid);
    assert!(net.chain.account(&order).unwrap().is_none());
    let market: Market = net.chain.fetch(&a.market).unwrap();
    assert_eq!(market.total_escrow, 0);
    assert_eq!(net.vault(&a.escrow_vault), 0);

    // Unstake starts the unbonding clock; withdrawing early is refused before sending.
    net.ok(&supplier, &["worker", "unstake", "50"]);
    let w: Worker = net.chain.fetch(&worker).unwrap();
    assert_eq!((w.stake, w.unbonding), (100 * ONE, 50 * ONE));
    let early = net.fails(&supplier, &["worker", "withdraw"]);
    assert!(early.contains("unbonding until"), "{early}");
    let unlock = chrono_like_date(w.unlock_ts);
    assert!(
        early.contains(&unlock),
        "the unlock time as a date: {early}"
    );
}

#[test]
fn bad_inputs_say_what_to_do_and_move_nothing() {
    let mut net = Net::start();
    let (operator, operator_key) = net.wallet("operator.json", "10", "0");
    let (user, user_key) = net.wallet("user.json", "10", "100");
    net.market(&operator);
    let a = net.addrs();
    let node_path = net.path("node.json");
    cluster::write_keypair(&Keypair::new(), &node_path, false).unwrap();
    net.ok(
        &user,
        &[
            "worker",
            "register",
            "--class",
            "h100",
            "--region",
            "eu-west",
            "--price",
            "0.001/s",
            "--node-key",
            node_path.to_str().unwrap(),
        ],
    );
    let balances = || {
        (
            net.tokens(&user_key),
            net.vault(&a.stake_vault),
            net.vault(&a.escrow_vault),
            net.chain.lamports(&user_key).unwrap(),
        )
    };
    let before = balances();

    // Amounts.
    let e = net.fails(&user, &["worker", "stake", "1.0000001"]);
    assert!(e.contains("more decimals than the token's 6"), "{e}");
    let e = net.fails_text(&user, &["worker", "stake", "1.0000001"]);
    assert!(
        e.starts_with("error: stake amount: ") && e.contains("the smallest amount is 0.000001"),
        "text mode: the error on stderr, status 1: {e}"
    );
    let e = net.fails(&user, &["worker", "stake", "ten"]);
    assert!(e.contains("is not an amount"), "{e}");
    // Too few tokens: checked before sending.
    let e = net.fails(&user, &["worker", "stake", "101"]);
    assert!(e.contains("holds 100 tokens and this needs 101"), "{e}");
    assert!(e.contains("gpumesh airdrop --tokens"), "{e}");
    // Keypair files.
    let e = net.fails(&net.path("nobody.json"), &["worker", "stake", "1"]);
    assert!(
        e.contains("no keypair file") && e.contains("gpumesh keys new"),
        "{e}"
    );
    let garbage = net.path("garbage.json");
    std::fs::write(&garbage, "not a key").unwrap();
    let e = net.fails(&garbage, &["worker", "stake", "1"]);
    assert!(e.contains("is not a keypair file"), "{e}");
    // An unreachable cluster.
    let port = gpumesh_localnet::free_port().unwrap();
    let dead = format!("http://127.0.0.1:{port}");
    let out = Command::cargo_bin("gpumesh")
        .unwrap()
        .env_clear()
        .args(["worker", "stake", "1", "--url", &dead, "--market"])
        .arg(a.market.to_string())
        .arg("--keypair")
        .arg(&user)
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "nothing was sent: not an unknown outcome"
    );
    assert!(e.contains(&dead) && e.contains("gpumesh localnet"), "{e}");
    // A program error, by its message (a reserved order must be funded for its whole term).
    let spec = net.path("job.json");
    std::fs::write(&spec, "image = \"pytorch\"\n").unwrap();
    let e = net.fails(
        &user,
        &[
            "order",
            "create",
            "--class",
            "h100",
            "--regions",
            "eu-west",
            "--max-price",
            "1/s",
            "--duration",
            "3600",
            "--deposit",
            "5",
            "--mode",
            "reserved",
            "--spec",
            spec.to_str().unwrap(),
        ],
    );
    assert!(
        e.contains("funded for its whole term")
            && e.contains("1 x 1 GPU(s) x 3600 s = 3600 tokens")
            && e.contains("--deposit 3600"),
        "the amount needed, computed before sending: {e}"
    );
    // A reserved order without --duration is a 7-day term, and the deposit it needs is named.
    let create = |extra: &[&str]| -> Vec<String> {
        let mut all: Vec<String> = [
            "order",
            "create",
            "--class",
            "h100",
            "--regions",
            "eu-west",
            "--deposit",
            "5",
            "--spec",
            spec.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        all.extend(extra.iter().map(|s| s.to_string()));
        all
    };
    let args = create(&["--max-price", "1.08/h", "--mode", "reserved"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let e = net.fails(&user, &args);
    assert!(
        e.contains("0.0003 x 1 GPU(s) x 604800 s = 181.44 tokens")
            && e.contains("1.08/h per GPU for 7d 0h")
            && e.contains("--deposit 181.44"),
        "the 7-day default term and its deposit: {e}"
    );
    // A term whose cost passes what any account can hold is refused, not overflowed.
    let args = create(&[
        "--max-price",
        "18446744073709.551615/s",
        "--gpus",
        "4096",
        "--duration",
        "99999999999d",
        "--mode",
        "reserved",
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let e = net.fails(&user, &args);
    assert!(e.contains("more than a token account can hold"), "{e}");
    // A spot order has no term: --duration is required, said with an example.
    let args = create(&["--max-price", "1.08/h"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let e = net.fails(&user, &args);
    assert!(
        e.contains("a spot order needs --duration") && e.contains("--duration 2h"),
        "{e}"
    );
    // An hourly price that is not a whole number of base units per second: the nearest exact.
    let args = create(&["--max-price", "0.85/h", "--duration", "1h"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let e = net.fails(&user, &args);
    assert!(
        e.contains("--max-price 0.85/h is not a whole number")
            && e.contains("use 0.8496/h (0.000236/s) or 0.8532/h (0.000237/s)"),
        "{e}"
    );
    let e = net.fails(&user, &["worker", "update", "--price", "0.001/h"]);
    assert!(e.contains("use 0.0036/h (0.000001/s)"), "{e}");
    // A bare number: usage, status 2, nothing read or sent.
    let out = net.run(&user, &["worker", "update", "--price", "0.85"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stdout).contains("has no unit"));
    // The wrong signer for an operator command.
    let e = net.fails(&user, &["market", "update", "--pause"]);
    assert!(e.contains("not this market's authority"), "{e}");
    // Names the program does not know.
    let e = net.fails(
        &user,
        &[
            "order",
            "create",
            "--class",
            "a100",
            "--regions",
            "eu-west",
            "--max-price",
            "1/s",
            "--duration",
            "1",
            "--deposit",
            "1",
            "--spec",
            spec.to_str().unwrap(),
        ],
    );
    assert!(e.contains("unknown GPU class"), "{e}");

    let after = balances();
    assert_eq!(before.0, after.0, "token balance unchanged");
    assert_eq!(before.1, after.1, "stake vault unchanged");
    assert_eq!(before.2, after.2, "escrow vault unchanged");
    assert_eq!(before.3, after.3, "no fee was paid: nothing was sent");

    // Too little SOL: a wallet with tokens and no SOL is refused before sending.
    let (poor, poor_key) = net.wallet("poor.json", "0", "10");
    let e = net.fails(
        &poor,
        &[
            "worker",
            "register",
            "--class",
            "h100",
            "--region",
            "eu-west",
            "--price",
            "0.001/s",
            "--node-key",
            node_path.to_str().unwrap(),
        ],
    );
    assert!(
        e.contains("has 0 SOL")
            && e.contains(&poor_key.to_string())
            && e.contains(&format!("(the keypair {})", poor.display()))
            && e.contains("gpumesh airdrop"),
        "the fee hint names the keypair's path and address: {e}"
    );
    assert!(net.chain.account(&a.worker(&poor_key)).unwrap().is_none());
    let _ = operator_key;
}

/// The buyer's exit through the binary, with an orchestrator that settles but never closes the
/// lease: `order cancel` asks to close, refuses to end the lease early with the time left, and
/// after the exit window (10 s on this market) ends the lease and refunds the rest.
#[test]
fn a_buyer_leaves_through_the_binary_when_the_orchestrator_does_not_close() {
    let mut net = Net::start();
    let (operator, _) = net.wallet("operator.json", "10", "0");
    let (supplier, supplier_key) = net.wallet("supplier.json", "10", "1000");
    let (buyer, buyer_key) = net.wallet("buyer.json", "10", "500");
    let orch = net.market(&operator);
    let a = net.addrs();
    let node = Keypair::new();
    let node_path = net.path("node.json");
    cluster::write_keypair(&node, &node_path, false).unwrap();
    net.ok(
        &supplier,
        &[
            "worker",
            "register",
            "--class",
            "h100",
            "--gpus",
            "2",
            "--region",
            "eu-west",
            "--price",
            "0.001/s",
            "--node-key",
            node_path.to_str().unwrap(),
        ],
    );
    net.ok(&supplier, &["worker", "stake", "200"]);
    let spec = net.path("job.toml");
    std::fs::write(&spec, "image = \"busybox\"\n").unwrap();
    net.ok(
        &buyer,
        &[
            "order",
            "create",
            "--class",
            "h100",
            "--gpus",
            "2",
            "--regions",
            "eu-west",
            "--max-price",
            "0.002/s",
            "--duration",
            "3600",
            "--deposit",
            "40",
            "--spec",
            spec.to_str().unwrap(),
        ],
    );
    let order = a.order(&buyer_key, 1);
    let worker = a.worker(&supplier_key);
    let lease = net.assign(&orch, &order, &worker, 2);
    std::thread::sleep(std::time::Duration::from_secs(2));
    let mut service = LeaseService::new(
        receipt::key(&gpumesh_client::program::ID),
        receipt::key(&lease.lease),
        lease.nonce,
    );
    let receipt = net.serve(&mut service, &node, 1);
    Orchestrator::new(a, orch.insecure_clone())
        .settle(&mut net.chain, &[(lease, receipt)])
        .unwrap();

    let asked = net.ok(&buyer, &["order", "cancel", "1"]);
    assert_eq!(asked["action"], "order close requested");
    let shown = net.ok(&buyer, &["order", "show", "1"]);
    assert_eq!(shown["status"], "Closing");
    let exit_ts = shown["buyer_exit_ts"].as_i64().unwrap();
    let early = net.fails(&buyer, &["order", "cancel", "1"]);
    assert!(early.contains("may settle and close them for"), "{early}");

    // The orchestrator does nothing more. Wait out the window on the node's clock.
    while net.chain.unix_time().unwrap() < exit_ts {
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let done = net.ok(&buyer, &["order", "cancel", "1"]);
    let paid = 2 * 1_000; // 1 s on 2 GPUs at 0.001
    assert_eq!(done["refund"], tok(40 * ONE - paid));
    assert_eq!(done["leases_ended"], 1);
    assert_eq!(net.tokens(&buyer_key), 500 * ONE - paid);
    assert!(net.chain.account(&order).unwrap().is_none());
    assert!(net.chain.account(&lease.lease).unwrap().is_none());
    let w: Worker = net.chain.fetch(&worker).unwrap();
    assert_eq!((w.gpus_leased, w.active_leases), (0, 0));
}

#[test]
fn gpumesh_localnet_serves_the_program_a_mint_and_funded_wallets() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let wallet = Keypair::new();
    let start = || {
        let rpc_port = gpumesh_localnet::free_port().unwrap();
        let ws_port = gpumesh_localnet::free_port().unwrap();
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("gpumesh"))
            .env("HOME", dir.path())
            .args(["localnet", "--output", "json-compact", "--tokens", "250"])
            .args(["--usd-tokens", "75"])
            .args([
                "--rpc-port",
                &rpc_port.to_string(),
                "--ws-port",
                &ws_port.to_string(),
            ])
            .args(["--fund", &wallet.pubkey().to_string()])
            .arg("--localnet-dir")
            .arg(dir.path().join("state"))
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .unwrap();
        (child, line)
    };
    let (mut child, line) = start();
    let ready: Value = serde_json::from_str(line.trim()).unwrap_or_else(|e| {
        let _ = child.kill();
        panic!("{e}: {line:?}")
    });
    let chain = RpcChain::new(ready["rpc_url"].as_str().unwrap());
    let mint = Pubkey::from_str(ready["mint"].as_str().unwrap()).unwrap();
    let usd_mint = Pubkey::from_str(ready["usd_mint"].as_str().unwrap()).unwrap();
    let program = chain.account(&gpumesh_client::program::ID).unwrap();
    let tokens = chain
        .token_balance(&token::ata(&wallet.pubkey(), &mint))
        .unwrap();
    let usd = chain
        .token_balance(&token::ata(&wallet.pubkey(), &usd_mint))
        .unwrap();
    let usd_decimals = token::mint_decimals(&chain, &usd_mint).unwrap();
    let sol = chain.lamports(&wallet.pubkey()).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(program.is_some_and(
        |p| p.owner == Pubkey::from_str("NativeLoader1111111111111111111111111111111").unwrap()
    ));
    assert_eq!(ready["program_id"], gpumesh_client::program::ID.to_string());
    assert_eq!(tokens, 250 * ONE);
    assert_eq!((usd, usd_decimals), (75 * ONE, 6), "the USD-like mint");
    assert_eq!(ready["usd_decimals"], 6);
    assert_eq!(ready["mints"][1]["name"], "usd");
    assert_ne!(mint, usd_mint);
    assert_eq!(sol, 100 * 1_000_000_000);
    // The mints' keys stay in the state directory, so a restart brings both back at these
    // addresses, on a fresh chain.
    let state = LocalState::open(&dir.path().join("state")).unwrap();
    assert_eq!((state.mint(), state.usd_mint().unwrap()), (mint, usd_mint));
    let (mut child, line) = start();
    let again: Value = serde_json::from_str(line.trim()).unwrap_or_else(|e| {
        let _ = child.kill();
        panic!("{e}: {line:?}")
    });
    let chain = RpcChain::new(again["rpc_url"].as_str().unwrap());
    let both_there = [mint, usd_mint].map(|m| chain.account(&m).unwrap().is_some());
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        (again["mint"].as_str(), again["usd_mint"].as_str()),
        (ready["mint"].as_str(), ready["usd_mint"].as_str())
    );
    assert_eq!(
        both_there,
        [true, true],
        "both mints recreated after a restart"
    );
}

/// The local chain's two mints: airdrop funds either, and a market runs in each (the first one
/// created stays the default; the other is named with --market), prices per GPU-hour in the
/// market's own mint.
#[test]
fn airdrop_funds_either_local_mint_and_a_market_runs_in_each() {
    let mut net = Net::start();
    let (operator, operator_key) = net.wallet("operator.json", "10", "0");
    let work = net.ok(&operator, &["airdrop", "0", "--tokens", "3"]);
    assert_eq!(work["mint"], net.mint.to_string());
    assert_eq!(work["mint_name"], "work");
    let usd = net.ok(
        &operator,
        &["airdrop", "0", "--tokens", "12.5", "--mint", "usd"],
    );
    assert_eq!(
        (&usd["mint"], &usd["tokens"], &usd["decimals"]),
        (
            &Value::from(net.usd_mint.to_string()),
            &Value::from("12.5"),
            &Value::from(6)
        )
    );
    let by_address = net.ok(
        &operator,
        &[
            "airdrop",
            "0",
            "--tokens",
            "1",
            "--mint",
            &net.usd_mint.to_string(),
        ],
    );
    assert_eq!(by_address["tokens"], "13.5");
    assert_eq!(
        net.chain
            .token_balance(&token::ata(&operator_key, &net.usd_mint))
            .unwrap(),
        13_500_000
    );
    let e = net.fails(
        &operator,
        &["airdrop", "0", "--tokens", "1", "--mint", "eur"],
    );
    assert!(e.contains("`work`") && e.contains("`usd`"), "{e}");
    let stranger = Pubkey::new_unique().to_string();
    let e = net.fails(
        &operator,
        &["airdrop", "0", "--tokens", "1", "--mint", &stranger],
    );
    assert!(e.contains("is not one of the local chain's mints"), "{e}");

    // A market in the work token (the default), then one in the USD-like mint.
    net.market(&operator);
    let work_market = net.market.unwrap();
    let orchestrator = Keypair::new();
    let config = net.path("usd-market.toml");
    std::fs::write(
        &config,
        format!(
            "mint = \"{}\"\norchestrator = \"{}\"\n[params]\nmin_stake_per_gpu = \"25\"\n",
            net.usd_mint,
            orchestrator.pubkey()
        ),
    )
    .unwrap();
    let created = net.ok(&operator, &["market", "init", config.to_str().unwrap()]);
    assert_eq!(created["mint"], net.usd_mint.to_string());
    assert_eq!(
        created["local_default"], false,
        "the first market stays the default"
    );
    let usd_market = created["market"].as_str().unwrap().to_string();
    assert_ne!(usd_market, work_market.to_string());
    assert_eq!(
        net.ok(&operator, &["market", "show"])["market"],
        work_market.to_string()
    );
    let shown = net.ok(&operator, &["market", "show", "--market", &usd_market]);
    assert_eq!(
        (&shown["mint"], &shown["decimals"]),
        (&Value::from(net.usd_mint.to_string()), &Value::from(6))
    );
    assert_eq!(shown["params"]["min_stake_per_gpu"], "25");

    // A supplier prices its GPUs in the USD-like mint, per GPU-hour, and stakes it.
    let (supplier, _) = net.wallet("supplier.json", "10", "0");
    net.ok(
        &supplier,
        &["airdrop", "0", "--tokens", "100", "--mint", "usd"],
    );
    let node = net.path("usd-node.json");
    cluster::write_keypair(&Keypair::new(), &node, false).unwrap();
    let r = net.ok(
        &supplier,
        &[
            "worker",
            "register",
            "--market",
            &usd_market,
            "--class",
            "a100-80gb",
            "--region",
            "eu-west",
            "--price",
            "0.8532/h",
            "--node-key",
            node.to_str().unwrap(),
        ],
    );
    assert_eq!(
        (
            &r["price_per_gpu_hour"],
            &r["price_per_gpu_second"],
            &r["mint"]
        ),
        (
            &Value::from("0.8532"),
            &Value::from("0.000237"),
            &Value::from(net.usd_mint.to_string())
        )
    );
    net.ok(
        &supplier,
        &["worker", "stake", "25", "--market", &usd_market],
    );
    let s = net.ok(&supplier, &["worker", "status", "--market", &usd_market]);
    assert_eq!(
        (&s["stake"], &s["price_per_gpu_hour"]),
        (&Value::from("25"), &Value::from("0.8532"))
    );
    // The work-token market knows nothing of it.
    let e = net.fails(&supplier, &["worker", "status"]);
    assert!(e.contains("does not exist"), "{e}");
}

/// The RFC 3339 form the CLI prints, computed independently of it (days from the civil date).
fn chrono_like_date(unix: i64) -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "-d", &format!("@{unix}"), "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
