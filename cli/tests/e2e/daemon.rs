//! The market running with nothing played by hand: the real `gpumesh orchestrator run`, real
//! `gpumesh worker run` daemons (CPU workers whose jobs run in containers through the engine
//! `DOCKER_HOST` names), and a buyer who only types `gpumesh` commands.
//!
//! - an order runs to completion: placed, run in a container, its output read by the buyer, the
//!   worker's receipts settled, the order completed with the result's hash; the buyer pays
//!   exactly the seconds served and gets the rest back;
//! - a worker killed mid-lease (SIGKILL): the buyer is paid the slash, the job runs again on the
//!   other worker, each lease is paid for its own seconds only;
//! - the orchestrator restarted mid-lease: the daemon finds it again, the lease goes on, no
//!   second is lost or paid twice, and the worker is not counted as failed.
//!
//! Every scenario ends with `gpumesh market audit` (each vault holds what the accounts owe) and
//! checks that no container is left behind.

use crate::net::{Net, ONE};
use crate::procs::{Proc, Service, free_port, write_config_with};
use gpumesh_client::chain::ChainExt;
use gpumesh_client::program::state::Order;
use gpumesh_client::{Keypair, Pubkey, Signer, cluster};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

/// 3.6 tokens per GPU-hour: 1,000 base units per GPU-second.
const PRICE_PER_SECOND: u64 = 1_000;

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// The engine `DOCKER_HOST` names, with the hello image built; panics (the test fails) without it.
pub fn engine() -> bollard::Docker {
    block_on(async {
        let docker = gpumesh_worker::examples::engine(None).await.unwrap_or_else(|e| {
            panic!("{e}: these tests run jobs in containers; start the engine with `eval \"$(scripts/services.sh)\"`")
        });
        gpumesh_worker::examples::ensure_hello(&docker)
            .await
            .expect("building examples/hello");
        docker
    })
}

/// Whether the engine still has the container of a lease instance (running or not). Asked by
/// name: Podman reports states (`stopped`) that a container listing cannot decode.
fn container_left(docker: &bollard::Docker, lease: &str, nonce: u64) -> bool {
    let name = format!("gpumesh-{lease}-{nonce}");
    block_on(async {
        match docker
            .inspect_container(
                &name,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
        {
            Ok(_) => true,
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => false,
            Err(e) => panic!("inspecting {name}: {e}"),
        }
    })
}

/// Names of the engine's containers (running or not) labelled as `worker`'s.
pub fn containers_of(docker: &bollard::Docker, worker: &str) -> Vec<String> {
    block_on(async {
        gpumesh_worker::daemon::runtime::docker::list_all(
            docker,
            std::collections::HashMap::from([(
                "label".to_string(),
                vec![format!("gpumesh.worker={worker}")],
            )]),
        )
        .await
        .unwrap()
        .into_iter()
        .flat_map(|c| c.names.unwrap_or_default())
        .collect()
    })
}

/// A job spec: examples/hello with `steps` one-second steps.
fn hello_spec(net: &Net, steps: u32) -> PathBuf {
    let path = net.path(&format!("hello-{steps}.toml"));
    std::fs::write(
        &path,
        format!(
            "image = \"{}\"\ngpus = 1\nresults = [\"hello.txt\"]\nmax_duration_s = 300\nmillicpus = 500\nmemory_mib = 64\n[env]\nGREETING = \"hello from the buyer\"\nSTEPS = \"{steps}\"\n",
            gpumesh_worker::examples::HELLO_IMAGE
        ),
    )
    .unwrap();
    path
}

/// A supplier with a registered, staked 1-GPU CPU worker and its daemon's files.
struct Supplier {
    name: String,
    wallet: PathBuf,
    worker: String,
    node_key: PathBuf,
    config: PathBuf,
}

/// A local chain with a market for CPU workers, the orchestrator service as a process, a funded
/// buyer.
struct Market {
    net: Net,
    docker: bollard::Docker,
    service: Service,
    config: PathBuf,
    buyer: PathBuf,
    buyer_key: Pubkey,
}

impl Market {
    fn start() -> Market {
        let docker = engine();
        let mut net = Net::start();
        let (operator, _) = net.wallet("operator.json", "10", "0");
        let (buyer, buyer_key) = net.wallet("buyer.json", "10", "500");
        // A test market: a CPU worker's share of host memory is its "VRAM".
        let orch = net.market_with(
            &operator,
            "min_worker_vram_mib = 256\nmin_worker_bandwidth_gbps = 1",
            "",
        );
        let market = net.market.unwrap().to_string();
        cluster::write_keypair(&orch, &net.path("orchestrator.json"), false).unwrap();
        let config = write_config_with(
            &net,
            "orchestrator.toml",
            &market,
            "orchestrator.json",
            free_port(),
            "heartbeat_ms = 200\ngrace_ms = 1500\nreceipt_every_s = 1\nsettle_every_s = 1\nchallenge_target_ms = 0\nchallenge_rows = 8\nstop_grace_ms = 1000\n",
        );
        let service = Service::start(&net, &config);
        Market {
            net,
            docker,
            service,
            config,
            buyer,
            buyer_key,
        }
    }

    /// `name` registers a 1-GPU CPU worker in eu-west at 3.6/h and stakes for it.
    fn supplier(&self, name: &str) -> Supplier {
        let net = &self.net;
        let (wallet, owner) = net.wallet(&format!("{name}.json"), "10", "1000");
        let node = Keypair::new();
        let node_key = net.path(&format!("{name}-node.json"));
        cluster::write_keypair(&node, &node_key, false).unwrap();
        net.ok(
            &wallet,
            &[
                "worker",
                "register",
                "--class",
                "cpu",
                "--region",
                "eu-west",
                "--vram",
                "256MiB",
                "--bandwidth-gbps",
                "1",
                "--price",
                "3.6/h",
                "--node-key",
                node_key.to_str().unwrap(),
            ],
        );
        net.ok(&wallet, &["worker", "stake", "100"]);
        let worker = net.addrs().worker(&owner).to_string();
        let config = net.path(&format!("{name}-worker.toml"));
        std::fs::write(
            &config,
            format!(
                "state = \"{}\"\nwork_dir = \"{}\"\n[hardware]\nbackend = \"cpu\"\n[floor]\nmin_vram_mib = 256\nmin_bandwidth_gbps = 1\n[claim]\nclass = \"cpu\"\ngpus = 1\nvram_mib = 256\nbandwidth_gbps = 1\n[runtime]\npull_images = false\nstop_grace_ms = 1000\n[results]\nstore = \"local\"\ndir = \"{}\"\n",
                net.path(&format!("{name}-state.db")).display(),
                net.path(&format!("{name}-work")).display(),
                net.path(&format!("{name}-results")).display(),
            ),
        )
        .unwrap();
        Supplier {
            name: name.into(),
            wallet,
            worker,
            node_key,
            config,
        }
    }

    /// `gpumesh worker run` for `s`, once the service lists it as connected.
    fn daemon(&self, s: &Supplier) -> Proc {
        let mut daemon = Proc::spawn(
            &self.net,
            &format!("{}'s worker daemon", s.name),
            &[
                "worker",
                "run",
                s.config.to_str().unwrap(),
                "--orchestrator",
                &self.service.url,
                "--node-key",
                s.node_key.to_str().unwrap(),
                "--worker",
                &s.worker,
            ],
            &[],
            self.net.path(&format!("{}-daemon.log", s.name)),
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.connected(&s.worker) {
            daemon.check_alive();
            assert!(
                Instant::now() < deadline,
                "{} never connected:\n{}\n{}",
                s.name,
                daemon.log_text(),
                self.service.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        daemon
    }

    fn connected(&self, worker: &str) -> bool {
        self.service.get("/v1/workers").is_ok_and(|v| {
            v["workers"]
                .as_array()
                .is_some_and(|ws| ws.iter().any(|w| w["worker"] == worker))
        })
    }

    /// The buyer's order for `spec` (1 x cpu in eu-west, 10 tokens), its spec uploaded.
    fn order(&self, spec: &Path) -> String {
        let v = self.net.ok(
            &self.buyer,
            &[
                "order",
                "create",
                "--class",
                "cpu",
                "--regions",
                "eu-west",
                "--max-price",
                "3.6/h",
                "--duration",
                "600",
                "--deposit",
                "10",
                "--spec",
                spec.to_str().unwrap(),
            ],
        );
        let order = v["order"].as_str().unwrap().to_string();
        self.net.ok(
            &self.buyer,
            &[
                "order",
                "upload-spec",
                &v["id"].to_string(),
                spec.to_str().unwrap(),
                "--orchestrator",
                &self.service.url,
            ],
        );
        order
    }

    fn order_page(&self, order: &str) -> Value {
        self.service
            .get(&format!("/v1/orders/{order}"))
            .unwrap_or(Value::Null)
    }

    /// Polls the order's page until a lease on `worker` (any, if None) has served `seconds`.
    fn running(&self, order: &str, worker: Option<&str>, seconds: u64, logs: &[&Proc]) -> Value {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let page = self.order_page(order);
            let lease = page["leases"].as_array().and_then(|ls| {
                ls.iter()
                    .find(|l| {
                        worker.is_none_or(|w| l["worker"] == w)
                            && l["job"] == "running"
                            && l["served_seconds"].as_u64().unwrap_or(0) >= seconds
                    })
                    .cloned()
            });
            if let Some(l) = lease {
                return l;
            }
            self.fail_after(deadline, "the job never ran", &page, logs);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn fail_after(&self, deadline: Instant, what: &str, page: &Value, logs: &[&Proc]) {
        if Instant::now() < deadline {
            return;
        }
        let daemons: Vec<String> = logs.iter().map(|p| p.log_text()).collect();
        panic!(
            "{what}: {page}\n--- service\n{}\n--- daemons\n{}",
            self.service.log_text(),
            daemons.join("\n---\n")
        );
    }

    /// Waits until the order's account is closed (completed), then returns the highest seconds
    /// settled per lease instance the order had.
    fn completed(&self, order: &str, leases: &[(String, u64)], logs: &[&Proc]) -> Vec<u64> {
        let key = Pubkey::from_str(order).unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.net.chain.fetch_opt::<Order>(&key).unwrap().is_some() {
            let page = self.order_page(order);
            self.fail_after(deadline, "the order never completed", &page, logs);
            std::thread::sleep(Duration::from_millis(200));
        }
        leases
            .iter()
            .map(|(lease, nonce)| {
                let history = self
                    .service
                    .get(&format!("/v1/leases/{lease}?nonce={nonce}"))
                    .unwrap();
                let settled = history["settlements"].as_array().unwrap();
                for s in settled {
                    assert!(s["signature"].as_str().is_some_and(|s| s.len() > 60), "{s}");
                }
                settled
                    .iter()
                    .map(|s| s["served_seconds"].as_u64().unwrap())
                    .max()
                    .unwrap_or(0)
            })
            .collect()
    }

    fn worker_status(&self, s: &Supplier) -> Value {
        self.net.ok(&s.wallet, &["worker", "status"])
    }

    fn stake(&self, s: &Supplier) -> u64 {
        let v = self.worker_status(s);
        gpumesh_client::amount::parse(v["stake"].as_str().unwrap(), 6).unwrap()
    }

    /// `gpumesh market audit` holds and no container of `leases` is left.
    fn sound(&self, leases: &[(String, u64)]) {
        let audit = self.net.ok(&self.buyer, &["market", "audit"]);
        assert_eq!(audit["sound"], true, "{audit}");
        for (lease, nonce) in leases {
            assert!(
                !container_left(&self.docker, lease, *nonce),
                "the container of lease {lease} (instance {nonce}) was left behind"
            );
        }
    }
}

#[test]
fn an_order_runs_to_completion_on_a_worker_daemon() {
    let m = Market::start();
    let alice = m.supplier("alice");
    let mut daemon = m.daemon(&alice);
    let spec = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/hello.toml");
    let before = m.net.tokens(&m.buyer_key);
    let started = Instant::now();
    let order = m.order(&spec);
    assert_eq!(m.net.tokens(&m.buyer_key), before - 10 * ONE);

    // Placed, run, exited: the service's page shows the job's end with its result hash.
    let deadline = Instant::now() + Duration::from_secs(90);
    let job = loop {
        let page = m.order_page(&order);
        if let Some(j) = page["jobs"]
            .as_array()
            .and_then(|j| j.iter().find(|j| j["result_hash"].is_string()).cloned())
        {
            break j;
        }
        m.fail_after(deadline, "the job never ended", &page, &[&daemon]);
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(job["worker"], alice.worker.as_str(), "{job}");
    assert_eq!(job["exit_code"], 0, "{job}");
    let lease = (
        job["lease"].as_str().unwrap().to_string(),
        job["nonce"].as_u64().unwrap(),
    );
    let result_hash = job["result_hash"].as_str().unwrap().to_string();
    assert_eq!(result_hash.len(), 64, "{job}");

    // The job's output reached the service (the buyer reads it with a signed request).
    let logs = {
        let key = cluster::read_keypair(&m.buyer).unwrap();
        let order_key = Pubkey::from_str(&order).unwrap();
        let unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let message = gpumesh_protocol::jobspec::logs_message(&order_key.to_bytes(), unix_ms);
        let r = reqwest::blocking::Client::new()
            .get(format!("{}/v1/orders/{order}/logs", m.service.url))
            .header(
                "x-gpumesh-signature",
                key.sign_message(&message).to_string(),
            )
            .header("x-gpumesh-unix-ms", unix_ms.to_string())
            .send()
            .unwrap();
        assert!(r.status().is_success(), "{:?}", r.text());
        r.text().unwrap()
    };
    for line in [
        "hello from gpumesh",
        "greeting: hello from the buyer",
        "step 3",
        "done: /results/hello.txt",
    ] {
        assert!(logs.contains(line), "{line:?} not in the logs:\n{logs}");
    }

    // The lease closes as completed and the order account with it: the buyer paid exactly the
    // seconds served at the worker's price, the rest of the escrow came back.
    let served = m.completed(&order, std::slice::from_ref(&lease), &[&daemon])[0];
    let completed_after = started.elapsed();
    // examples/hello works three one-second steps; served time is whole seconds the engine saw
    // the container run, counted from when the engine's start call returned: on a busy host
    // that call returns late and a second may go unpaid (the worker's loss, never the buyer's).
    assert!((2..=4).contains(&served), "{served} s served");
    assert_eq!(
        m.net.tokens(&m.buyer_key),
        before - served * PRICE_PER_SECOND,
        "the buyer pays {served} s at {PRICE_PER_SECOND} base units and gets the rest back"
    );
    let status = m.worker_status(&alice);
    assert_eq!(status["active_leases"], 0, "{status}");
    assert_eq!(status["record"]["leases_completed"], 1, "{status}");

    // SIGTERM: both exit 0; the books hold and no container is left.
    daemon.check_alive();
    let daemon_status = daemon.terminate();
    assert!(daemon_status.success(), "{daemon_status}");
    m.sound(&[lease]);
    let Market { service, .. } = m;
    assert!(service.terminate().success());
    eprintln!(
        "order {order}: completed {:.1} s after it was created, {served} s served, result {result_hash}",
        completed_after.as_secs_f64()
    );
}

#[test]
fn a_killed_worker_pays_the_buyer_and_its_job_runs_again_on_the_other() {
    let m = Market::start();
    let alice = m.supplier("alice");
    let bob = m.supplier("bob");
    let a = m.daemon(&alice);
    let b = m.daemon(&bob);
    let before = m.net.tokens(&m.buyer_key);
    let spec = hello_spec(&m.net, 6);
    let order = m.order(&spec);

    // The job runs two seconds on one of them; that machine dies.
    let first = m.running(&order, None, 2, &[&a, &b]);
    let first_lease = (
        first["lease"].as_str().unwrap().to_string(),
        first["nonce"].as_u64().unwrap(),
    );
    let (dead, dead_daemon, spare, spare_daemon) = if first["worker"] == alice.worker.as_str() {
        (&alice, a, &bob, b)
    } else {
        (&bob, b, &alice, a)
    };
    let stake_before = m.stake(dead);
    let killed = Instant::now();
    drop(dead_daemon); // SIGKILL
    let second = m.running(&order, Some(&spare.worker), 0, &[&spare_daemon]);
    let moved_after = killed.elapsed();
    let second_lease = (
        second["lease"].as_str().unwrap().to_string(),
        second["nonce"].as_u64().unwrap(),
    );
    assert_ne!(first_lease, second_lease);

    let leases = [first_lease, second_lease];
    let served = m.completed(&order, &leases, &[&spare_daemon]);
    // The first lease is paid what its worker signed before it died (receipts every second:
    // at least one of the two seconds seen, never more than it ran), the second the whole job
    // again (six one-second steps, less what a busy engine's late start call leaves unpaid).
    assert!((1..=4).contains(&served[0]), "{served:?}");
    assert!((4..=7).contains(&served[1]), "{served:?}");
    let slash = stake_before - m.stake(dead);
    assert!(slash > 0, "the dead worker was slashed");
    let status = m.worker_status(dead);
    assert_eq!(status["record"]["failures"], 1, "{status}");
    assert_eq!(
        m.net.tokens(&m.buyer_key),
        before - (served[0] + served[1]) * PRICE_PER_SECOND + slash,
        "the buyer pays each lease's seconds once and receives the slash"
    );
    assert_eq!(m.worker_status(spare)["record"]["failures"], 0);

    // The dead machine's daemon comes back: the orchestrator no longer lists its lease, so it
    // stops and removes the container it left running, and the worker is offered again.
    let back = m.daemon(dead);
    let deadline = Instant::now() + Duration::from_secs(30);
    while container_left(&m.docker, &leases[0].0, leases[0].1) {
        m.fail_after(
            deadline,
            "the dead lease's container was never reaped",
            &Value::Null,
            &[&back],
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    m.sound(&leases);
    let back_status = back.terminate();
    assert!(back_status.success(), "{back_status}");
    let spare_status = spare_daemon.terminate();
    assert!(spare_status.success(), "{spare_status}");
    let Market { service, .. } = m;
    assert!(service.terminate().success());
    eprintln!(
        "failover: the job ran again on the spare {:.2} s after the kill ({} s and {} s paid, slash {slash})",
        moved_after.as_secs_f64(),
        served[0],
        served[1]
    );
}

#[test]
fn a_restarted_orchestrator_loses_no_second_and_pays_none_twice() {
    let mut m = Market::start();
    let alice = m.supplier("alice");
    let daemon = m.daemon(&alice);
    let before = m.net.tokens(&m.buyer_key);
    let spec = hello_spec(&m.net, 8);
    let order = m.order(&spec);
    let lease = m.running(&order, None, 2, &[&daemon]);
    let lease = (
        lease["lease"].as_str().unwrap().to_string(),
        lease["nonce"].as_u64().unwrap(),
    );

    // SIGTERM the service mid-lease (it settles what is due on the way down), keep it down two
    // seconds, start it again on the same store.
    let Market { service, .. } = m;
    let stopped = service.terminate();
    assert!(stopped.success(), "{stopped}");
    std::thread::sleep(Duration::from_secs(2));
    m = Market {
        service: Service::start(&m.net, &m.config),
        ..m
    };
    let back = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !m.connected(&alice.worker) {
        m.fail_after(
            deadline,
            "the daemon never came back",
            &Value::Null,
            &[&daemon],
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let reconnected = back.elapsed();

    let served = m.completed(&order, std::slice::from_ref(&lease), &[&daemon])[0];
    // Eight one-second steps paid, the time the service was down included (the daemon kept the
    // job running and signed for it after it reconnected), less what a busy engine's late start
    // call leaves unpaid.
    assert!((6..=9).contains(&served), "{served} s served");
    assert_eq!(
        m.net.tokens(&m.buyer_key),
        before - served * PRICE_PER_SECOND,
        "each second paid once"
    );
    let status = m.worker_status(&alice);
    assert_eq!(status["record"]["failures"], 0, "{status}");
    assert_eq!(status["record"]["leases_completed"], 1, "{status}");
    m.sound(&[lease]);
    let daemon_status = daemon.terminate();
    assert!(daemon_status.success(), "{daemon_status}");
    let Market { service, .. } = m;
    assert!(service.terminate().success());
    eprintln!(
        "restart: the daemon reconnected {:.2} s after the service was back; {served} s paid",
        reconnected.as_secs_f64()
    );
}
