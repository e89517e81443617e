//! The market through the failures it promises to survive, with real processes (the
//! orchestrator service and the worker daemons as `gpumesh` processes, jobs in containers):
//!
//! - the RPC node stalls for 10 s (a proxy in front of its ports holds every byte): settlement
//!   resumes, nothing is lost or paid twice, and a buyer's command sent into the stall reports
//!   the transaction that landed, once;
//! - a worker cut off from the orchestrator (its daemon in a network namespace of its own whose
//!   only link goes down, then up again): its lease ends and moves, it is not paid for the cut,
//!   and it rejoins as a worker that takes the next order;
//! - a worker that cheats its compute challenge (a build whose backend skips the work when
//!   spot-checked mid-lease): slashed, jailed, its buyer paid the slash, the order placed again;
//! - a buyer who leaves while the orchestrator is frozen (SIGSTOP): the escrow comes back when
//!   the program's exit window ends, paying only what was settled.
//!
//! Each ends with `gpumesh market audit` and checks that no container is left.

use crate::market::{Market, PRICE_PER_SECOND, Supplier, hello_spec, lease_of};
use crate::net::ONE;
use crate::procs::Namespace;
use crate::proxy::Stall;
use gpumesh_client::Pubkey;
use gpumesh_client::chain::{Chain, ChainExt};
use gpumesh_client::program::state::{Lease, Market as MarketAccount, Order};
use gpumesh_protocol::challenge::{
    Challenge, Commitment, OpenRequest, OpenedRow, Opening, PROTOCOL_VERSION, ProverTiming,
};
use gpumesh_protocol::merkle::{self, MerkleTree};
use gpumesh_worker::backend::{BackendError, ComputeBackend, DeviceInfo, Measurement, Telemetry};
use serde_json::Value;
use std::str::FromStr;
use std::time::{Duration, Instant};

fn key(s: &str) -> Pubkey {
    Pubkey::from_str(s).unwrap()
}

#[test]
fn a_stalled_rpc_node_delays_settlement_and_loses_nothing() {
    // The service reaches the node's RPC and websocket only through proxies that can stall.
    let proxies = std::cell::RefCell::new(None);
    let through = |rpc: &str, ws: &str| {
        let r = Stall::start(rpc.trim_start_matches("http://"));
        let w = Stall::start(ws.trim_start_matches("ws://"));
        let urls = (format!("http://{}", r.addr), format!("ws://{}", w.addr));
        *proxies.borrow_mut() = Some((r, w));
        urls
    };
    let m = Market::start_with("", Some(&through));
    let (rpc, ws) = proxies.borrow_mut().take().unwrap();
    let alice = m.supplier("alice");
    let daemon = m.daemon(&alice);
    let before = m.net.tokens(&m.buyer_key);
    let order = m.order(&hello_spec(&m.net, 16));
    let lease = lease_of(&m.running(&order, None, 2, &[&daemon]));
    // Settlement runs every second: wait for one before the stall.
    m.settled_once(&lease, &[&daemon]);

    // The node stalls for ten seconds. The buyer tops the order up meanwhile, through the same
    // stalled endpoint: the command waits and reports the transaction that landed.
    let settled_at_stall = m.settled(&lease);
    rpc.pause();
    ws.pause();
    let top_up = {
        let mut cmd = m.net.gpumesh(&m.buyer);
        cmd.env("GPUMESH_URL", format!("http://{}", rpc.addr))
            .args(["order", "top-up", "1", "5"]);
        std::thread::spawn(move || cmd.output().unwrap())
    };
    // (The service's pages read the chain too: nothing is asked of it until the node is back.)
    std::thread::sleep(Duration::from_secs(10));
    rpc.resume();
    ws.resume();
    let resumed = Instant::now();

    let out = top_up.join().unwrap();
    assert!(
        out.status.success(),
        "the top-up sent into the stall failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(shown["signature"].as_str().is_some(), "{shown}");
    let on_chain: Order = m.net.chain.fetch(&key(&order)).unwrap();
    assert_eq!(
        on_chain.escrow_deposited,
        15 * ONE,
        "the top-up landed exactly once"
    );

    // Settlement resumes as soon as the node answers.
    let deadline = Instant::now() + Duration::from_secs(30);
    while m.settled(&lease) <= settled_at_stall {
        m.fail_after(
            deadline,
            "settlement never resumed",
            &Value::Null,
            &[&daemon],
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let resumed_after = resumed.elapsed();

    let served = m.completed(&order, std::slice::from_ref(&lease), &[&daemon])[0];
    assert!((14..=17).contains(&served), "{served} s served");
    assert_eq!(
        m.net.tokens(&m.buyer_key),
        before - served * PRICE_PER_SECOND,
        "every second paid once, the deposit and the top-up back"
    );
    let status = m.worker_status(&alice);
    assert_eq!(status["record"]["failures"], 0, "{status}");
    m.sound(std::slice::from_ref(&lease));
    assert!(daemon.terminate().success());
    let Market { service, .. } = m;
    assert!(service.terminate().success());
    eprintln!(
        "stall: 10 s without the node; settlement resumed {:.2} s after it answered again; {served} s paid once",
        resumed_after.as_secs_f64()
    );
}

#[test]
fn a_worker_cut_off_by_the_network_loses_its_lease_and_rejoins_fresh() {
    let m = Market::start();
    // Staked above the minimum, so that the slash for going offline leaves it able to serve.
    let alice = m.supplier_staking("alice", "200");
    let bob = m.supplier("bob");
    let ns = Namespace::new();
    let mut cut_off = m.daemon_in(&alice, Some(&ns));
    let before = m.net.tokens(&m.buyer_key);
    let stake_before = m.stake(&alice);
    // Long enough that the spare is still busy with it when the next order comes.
    let order = m.order(&hello_spec(&m.net, 24));
    let first = lease_of(&m.running(&order, Some(&alice.worker), 2, &[&cut_off]));
    let spare = m.daemon(&bob);

    // The link goes down: the daemon and its job go on, the service hears nothing.
    ns.link(false);
    let cut = Instant::now();
    let shown_at_cut = m.order_page(&order)["leases"]
        .as_array()
        .and_then(|ls| ls.iter().find(|l| l["worker"] == alice.worker.as_str()))
        .map_or(0, |l| l["served_seconds"].as_u64().unwrap_or(0));
    let second = lease_of(&m.running(&order, Some(&bob.worker), 0, &[&spare]));
    let moved_after = cut.elapsed();
    assert_ne!(first, second);
    let paid_first = m.settled(&first);
    assert!(
        paid_first <= shown_at_cut + 1,
        "the cut-off lease is paid what was seen before the cut ({shown_at_cut} s), not {paid_first}"
    );
    std::thread::sleep(Duration::from_secs(3));

    // The link comes back: the daemon finds the service again, is told its lease ended, stops
    // the job it kept running, and is offered work again.
    ns.link(true);
    let back = Instant::now();
    m.wait_connected(&alice, &mut cut_off);
    let rejoined_after = back.elapsed();
    m.reaped(&first, &[&cut_off]);
    assert_eq!(
        m.settled(&first),
        paid_first,
        "no second of the cut is paid after it rejoined"
    );
    // The next order goes to it (the spare is busy).
    let next = m.order(&hello_spec(&m.net, 2));
    let third = lease_of(&m.running(&next, Some(&alice.worker), 0, &[&cut_off]));

    let served = m.completed(&order, &[first.clone(), second.clone()], &[&spare]);
    let served_next = m.completed(&next, std::slice::from_ref(&third), &[&cut_off]);
    assert_eq!(served[0], paid_first);
    let slash = stake_before - m.stake(&alice);
    assert!(
        slash > 0,
        "the cut-off worker was slashed for going offline"
    );
    assert_eq!(
        m.net.tokens(&m.buyer_key),
        before - (served[0] + served[1] + served_next[0]) * PRICE_PER_SECOND + slash,
        "each lease's seconds paid once, the slash to the buyer"
    );
    let status = m.worker_status(&alice);
    assert_eq!(status["record"]["failures"], 1, "{status}");
    m.sound(&[first, second, third]);
    assert!(cut_off.terminate().success());
    assert!(spare.terminate().success());
    let Market { service, .. } = m;
    assert!(service.terminate().success());
    eprintln!(
        "partition: the lease moved {:.2} s after the cut; the worker rejoined {:.2} s after the link came back; {paid_first} s paid for the cut-off lease",
        moved_after.as_secs_f64(),
        rejoined_after.as_secs_f64()
    );
}

/// A backend that answers its first challenge honestly and every later one without doing the
/// work: it commits to an all-zero product and opens zero rows under that commitment (the
/// cheapest lie that still looks like an answer).
struct SkipsTheWork {
    honest: Box<dyn ComputeBackend>,
    honest_rounds: u32,
    lie: Option<(u64, usize, MerkleTree)>,
}

impl ComputeBackend for SkipsTheWork {
    fn describe(&self) -> &DeviceInfo {
        self.honest.describe()
    }

    fn measure(&mut self) -> Result<Measurement, BackendError> {
        self.honest.measure()
    }

    fn telemetry(&self) -> Result<Telemetry, BackendError> {
        self.honest.telemetry()
    }

    fn commit(&mut self, challenge: &Challenge) -> Result<Commitment, BackendError> {
        if self.honest_rounds > 0 {
            self.honest_rounds -= 1;
            self.lie = None;
            return self.honest.commit(challenge);
        }
        let n = challenge.n as usize;
        let tree = MerkleTree::from_leaves(vec![merkle::leaf_hash(&vec![0; n]); n]);
        let root = tree.root();
        self.lie = Some((challenge.id, n, tree));
        Ok(Commitment {
            version: PROTOCOL_VERSION,
            challenge_id: challenge.id,
            rows: challenge.n,
            root,
            timing: ProverTiming {
                generate: Duration::ZERO,
                multiply: Duration::ZERO,
                hash: Duration::ZERO,
                total: Duration::ZERO,
            },
        })
    }

    fn open(&mut self, request: &OpenRequest) -> Result<Opening, BackendError> {
        let Some((id, n, tree)) = self.lie.as_ref().filter(|l| l.0 == request.challenge_id) else {
            return self.honest.open(request);
        };
        Ok(Opening {
            version: PROTOCOL_VERSION,
            challenge_id: *id,
            rows: request
                .rows
                .iter()
                .map(|&index| OpenedRow {
                    index,
                    values: vec![0; *n],
                    path: tree.path(index as usize).unwrap_or_default(),
                })
                .collect(),
        })
    }
}

/// The daemon library run in this process with [`SkipsTheWork`] as its backend: a supplier's
/// modified build. Stops when dropped.
struct Cheater {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), String>>>,
}

impl Cheater {
    fn start(m: &Market, s: &Supplier) -> Cheater {
        use gpumesh_worker::daemon::{self, config};
        let file = config::FileConfig::read(&s.config).unwrap();
        let config = config::Config::resolve(
            file,
            config::Overrides {
                orchestrator: Some(format!(
                    "{}/v1/worker",
                    m.service.url.replace("http://", "ws://")
                )),
                node_key: Some(s.node_key.clone()),
                worker: Some(s.worker.clone()),
                program_id: Some(gpumesh_client::program::ID.to_string()),
            },
        )
        .unwrap();
        let (machine, honest) = daemon::hardware::detect(&config).unwrap();
        let backend = Box::new(SkipsTheWork {
            honest,
            honest_rounds: 1,
            lie: None,
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap()
                .block_on(daemon::run_detected(config, machine, backend, async {
                    let _ = stopped.await;
                }))
                .map_err(|e| e.to_string())
        });
        let c = Cheater {
            stop: Some(stop),
            thread: Some(thread),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !m.connected(&s.worker) {
            assert!(
                Instant::now() < deadline,
                "the cheating daemon never connected:\n{}",
                m.service.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        c
    }

    fn stop(mut self) -> Result<(), String> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.thread
            .take()
            .map_or(Ok(()), |t| t.join().unwrap_or(Err("panicked".into())))
    }
}

impl Drop for Cheater {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

#[test]
fn a_worker_that_cheats_its_challenge_is_slashed_jailed_and_its_order_moves() {
    // Workers serving leases are spot-checked every 2 s.
    let m = Market::start_with("spot_check_every_s = 2\n", None);
    let mallory = m.supplier("mallory");
    let bob = m.supplier("bob");
    let cheater = Cheater::start(&m, &mallory);
    let before = m.net.tokens(&m.buyer_key);
    let stake_before = m.stake(&mallory);
    let order = m.order(&hello_spec(&m.net, 6));

    // Placed on the cheater (it passed the honest round it gets on connecting).
    let deadline = Instant::now() + Duration::from_secs(60);
    let caught = loop {
        let page = m.order_page(&order);
        if let Some(l) = page["leases"].as_array().and_then(|ls| {
            ls.iter()
                .find(|l| l["worker"] == mallory.worker.as_str())
                .cloned()
        }) {
            break lease_of(&l);
        }
        m.fail_after(deadline, "the order never reached the cheater", &page, &[]);
        std::thread::sleep(Duration::from_millis(50));
    };
    let spare = m.daemon(&bob);

    // The spot check catches it; the order moves to the honest worker.
    let second = lease_of(&m.running(&order, Some(&bob.worker), 0, &[&spare]));
    assert_ne!(caught, second);
    let rounds = m
        .service
        .get(&format!("/v1/workers/{}/challenges", mallory.worker))
        .unwrap();
    let failed = rounds["challenges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["outcome"] == "failed")
        .cloned()
        .unwrap_or_else(|| panic!("no failed round stored: {rounds}"));
    assert!(
        failed["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{failed}"
    );
    assert_eq!(failed["evidence"].as_str().map(str::len), Some(64));
    let status = m.worker_status(&mallory);
    assert_eq!(status["record"]["frauds"], 1, "{status}");
    assert_eq!(status["jailed"], true, "{status}");
    assert!(
        m.net
            .chain
            .fetch_opt::<Lease>(&key(&caught.0))
            .unwrap()
            .is_none_or(|l| l.nonce != caught.1),
        "the cheater's lease closed"
    );
    // Its job is stopped and its container removed (the stop went out before the service
    // closed the connection).
    m.reaped(&caught, &[&spare]);
    // The escrow is in the vault until the order ends: the only transfer to the buyer's
    // account meanwhile is its share of the slash.
    let compensation = m.net.tokens(&m.buyer_key) - (before - 10 * ONE);

    let served = m.completed(&order, &[caught.clone(), second.clone()], &[&spare]);
    let slash = stake_before - m.stake(&mallory);
    let params = m
        .net
        .chain
        .fetch::<MarketAccount>(&m.net.market.unwrap())
        .unwrap()
        .params;
    let to_treasury =
        (u128::from(slash) * u128::from(params.slash_treasury_share_bps) / 10_000) as u64;
    assert_eq!(
        compensation,
        slash - to_treasury,
        "the buyer is paid the slash less the treasury's share"
    );
    assert_eq!(
        m.net.tokens(&m.buyer_key),
        before - (served[0] + served[1]) * PRICE_PER_SECOND + compensation,
        "the buyer pays what was settled, once, and keeps the slash's share"
    );
    m.sound(&[caught, second]);
    let _ = cheater.stop();
    assert!(spare.terminate().success());
    let Market { service, .. } = m;
    assert!(service.terminate().success());
    eprintln!(
        "fraud: slashed {slash} ({compensation} to the buyer), {} s of the cheater's lease paid",
        served[0]
    );
}

#[test]
fn a_buyer_leaves_a_frozen_orchestrator_within_the_exit_window() {
    let m = Market::start();
    let alice = m.supplier("alice");
    let daemon = m.daemon(&alice);
    let before = m.net.tokens(&m.buyer_key);
    let order = m.order(&hello_spec(&m.net, 60));
    let lease = lease_of(&m.running(&order, None, 2, &[&daemon]));
    m.settled_once(&lease, &[&daemon]);

    // The orchestrator stops cooperating (frozen, its port still open).
    m.service.proc.signal(rustix::process::Signal::STOP);
    let asked_at = Instant::now();
    let asked = m.net.ok(&m.buyer, &["order", "cancel", "1"]);
    assert_eq!(asked["action"], "order close requested", "{asked}");
    let shown = m.net.ok(&m.buyer, &["order", "show", "1"]);
    let exit_ts = shown["buyer_exit_ts"].as_i64().unwrap();
    // The bound the program guarantees: the market's exit window (10 s) after the request.
    assert_eq!(
        exit_ts - shown["close_requested_ts"].as_i64().unwrap(),
        10,
        "{shown}"
    );
    let early = m.net.fails(&m.buyer, &["order", "cancel", "1"]);
    assert!(early.contains("may settle and close them for"), "{early}");
    while m.net.chain.unix_time().unwrap() < exit_ts {
        std::thread::sleep(Duration::from_millis(200));
    }
    let paid_seconds = m
        .net
        .chain
        .fetch::<Lease>(&key(&lease.0))
        .unwrap()
        .seconds_settled;
    let done = m.net.ok(&m.buyer, &["order", "cancel", "1"]);
    let out_after = asked_at.elapsed();
    let paid = paid_seconds * PRICE_PER_SECOND;
    assert_eq!(done["leases_ended"], 1, "{done}");
    assert_eq!(done["refund"], crate::net::tok(10 * ONE - paid), "{done}");
    assert_eq!(m.net.tokens(&m.buyer_key), before - paid);
    assert!(m.net.chain.account(&key(&order)).unwrap().is_none());

    // Thawed, the service finds the lease gone, stops the job and offers the worker again.
    m.service.proc.signal(rustix::process::Signal::CONT);
    m.reaped(&lease, &[&daemon]);
    let status = m.worker_status(&alice);
    assert_eq!(status["active_leases"], 0, "{status}");
    assert_eq!(status["record"]["failures"], 0, "{status}");
    m.sound(std::slice::from_ref(&lease));
    assert!(daemon.terminate().success());
    let Market { service, .. } = m;
    assert!(service.terminate().success());
    eprintln!(
        "exit: the buyer had the escrow back {:.1} s after asking (window 10 s), {paid_seconds} s paid",
        out_after.as_secs_f64()
    );
}
