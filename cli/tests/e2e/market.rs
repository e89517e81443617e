//! The market as its users run it, for the end-to-end scenarios: a local chain with a market for
//! CPU workers, the real `gpumesh orchestrator run` as a process, suppliers whose real `gpumesh
//! worker run` daemons run jobs in containers through the engine `DOCKER_HOST` names, and a
//! funded buyer who only types `gpumesh` commands.

use crate::net::Net;
use crate::procs::{Namespace, Proc, Service, free_port, write_config_with};
use gpumesh_client::chain::ChainExt;
use gpumesh_client::program::state::Order;
use gpumesh_client::{Keypair, Pubkey, cluster};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

/// 3.6 tokens per GPU-hour: 1,000 base units per GPU-second.
pub const PRICE_PER_SECOND: u64 = 1_000;

pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
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

/// Whether the engine still has the container of a lease instance (running or not), asked by
/// name through the daemon's own inspection (which waits out Podman's transient states).
pub fn container_left(docker: &bollard::Docker, lease: &str, nonce: u64) -> bool {
    let name = format!("gpumesh-{lease}-{nonce}");
    block_on(gpumesh_worker::daemon::runtime::docker::inspect(
        docker, &name,
    ))
    .unwrap_or_else(|e| panic!("inspecting {name}: {e}"))
    .is_some()
}

/// A lease instance (address, nonce) as the service's pages name it.
pub fn lease_of(v: &Value) -> (String, u64) {
    (
        v["lease"].as_str().unwrap().to_string(),
        v["nonce"].as_u64().unwrap(),
    )
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
pub fn hello_spec(net: &Net, steps: u32) -> PathBuf {
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

/// Given the node's RPC and websocket URLs, the ones the service should use instead.
pub type Through<'a> = dyn Fn(&str, &str) -> (String, String) + 'a;

/// A supplier with a registered, staked 1-GPU CPU worker and its daemon's files.
pub struct Supplier {
    pub name: String,
    pub wallet: PathBuf,
    pub worker: String,
    pub node_key: PathBuf,
    pub config: PathBuf,
}

/// A local chain with a market for CPU workers, the orchestrator service as a process, a funded
/// buyer.
pub struct Market {
    pub net: Net,
    pub docker: bollard::Docker,
    pub service: Service,
    pub config: PathBuf,
    pub buyer: PathBuf,
    pub buyer_key: Pubkey,
}

impl Market {
    pub fn start() -> Market {
        Market::start_with("", None)
    }

    /// [`Market::start`] with `service_extra` lines added to the service's config and, if
    /// given, the service reaching the node through `through(rpc_url, ws_url)` (a proxy).
    pub fn start_with(service_extra: &str, through: Option<&Through<'_>>) -> Market {
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
            &format!(
                "heartbeat_ms = 200\ngrace_ms = 1500\nreceipt_every_s = 1\nsettle_every_s = 1\nfee_budget_lamports_per_gpu_hour = 0\nchallenge_target_ms = 0\nchallenge_rows = 8\nstop_grace_ms = 1000\n{service_extra}"
            ),
        );
        if let Some(through) = through {
            let (rpc, ws) = through(&net.url, &net.ws_url);
            let text = std::fs::read_to_string(&config)
                .unwrap()
                .replace(
                    &format!("rpc_url = \"{}\"", net.url),
                    &format!("rpc_url = \"{rpc}\""),
                )
                .replace(
                    &format!("ws_url = \"{}\"", net.ws_url),
                    &format!("ws_url = \"{ws}\""),
                );
            std::fs::write(&config, text).unwrap();
        }
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
    pub fn supplier(&self, name: &str) -> Supplier {
        self.supplier_staking(name, "100")
    }

    /// [`Market::supplier`] staking `stake` tokens (the market's minimum is 100 per GPU: a
    /// worker slashed below it takes no lease until it stakes again).
    pub fn supplier_staking(&self, name: &str, stake: &str) -> Supplier {
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
        net.ok(&wallet, &["worker", "stake", stake]);
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
    pub fn daemon(&self, s: &Supplier) -> Proc {
        self.daemon_in(s, None)
    }

    /// [`Market::daemon`], run inside `ns` when given (it reaches the service through the
    /// namespace's link to the host).
    pub fn daemon_in(&self, s: &Supplier, ns: Option<&Namespace>) -> Proc {
        let prefix = ns.map(Namespace::prefix).unwrap_or_default();
        let prefix: Vec<&str> = prefix.iter().map(String::as_str).collect();
        let url = match ns {
            Some(_) => self.service.url.replace("127.0.0.1", "10.0.2.2"),
            None => self.service.url.clone(),
        };
        let mut daemon = Proc::spawn_in(
            &self.net,
            &format!("{}'s worker daemon", s.name),
            &prefix,
            &[
                "worker",
                "run",
                s.config.to_str().unwrap(),
                "--orchestrator",
                &url,
                "--node-key",
                s.node_key.to_str().unwrap(),
                "--worker",
                &s.worker,
            ],
            &[],
            self.net.path(&format!("{}-daemon.log", s.name)),
        );
        self.wait_connected(s, &mut daemon);
        daemon
    }

    /// Waits until the service lists `s` as connected (panics with the logs after a minute).
    pub fn wait_connected(&self, s: &Supplier, daemon: &mut Proc) {
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
    }

    pub fn connected(&self, worker: &str) -> bool {
        self.service.get("/v1/workers").is_ok_and(|v| {
            v["workers"]
                .as_array()
                .is_some_and(|ws| ws.iter().any(|w| w["worker"] == worker))
        })
    }

    /// The buyer's order for `spec` (1 x cpu in eu-west, 10 tokens), its spec uploaded.
    pub fn order(&self, spec: &Path) -> String {
        self.order_for(spec, "600", "10")
    }

    /// [`Market::order`] with its duration per lease (seconds) and its deposit (tokens).
    pub fn order_for(&self, spec: &Path, duration: &str, deposit: &str) -> String {
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
                duration,
                "--deposit",
                deposit,
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

    pub fn order_page(&self, order: &str) -> Value {
        self.service
            .get(&format!("/v1/orders/{order}"))
            .unwrap_or(Value::Null)
    }

    /// Polls the order's page until a lease on `worker` (any, if None) has served `seconds`.
    pub fn running(
        &self,
        order: &str,
        worker: Option<&str>,
        seconds: u64,
        logs: &[&Proc],
    ) -> Value {
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

    pub fn fail_after(&self, deadline: Instant, what: &str, page: &Value, logs: &[&Proc]) {
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
    pub fn completed(&self, order: &str, leases: &[(String, u64)], logs: &[&Proc]) -> Vec<u64> {
        let key = Pubkey::from_str(order).unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.net.chain.fetch_opt::<Order>(&key).unwrap().is_some() {
            let page = self.order_page(order);
            self.fail_after(deadline, "the order never completed", &page, logs);
            std::thread::sleep(Duration::from_millis(200));
        }
        leases.iter().map(|l| self.settled_signed(l)).collect()
    }

    /// The highest seconds the service settled for a lease instance (0 for a lease it stored
    /// nothing of: caught before its first receipt).
    pub fn settled(&self, lease: &(String, u64)) -> u64 {
        self.settlements(lease)
            .iter()
            .map(|s| s["served_seconds"].as_u64().unwrap())
            .max()
            .unwrap_or(0)
    }

    /// [`Market::settled`], every settlement naming its transaction.
    fn settled_signed(&self, lease: &(String, u64)) -> u64 {
        for s in self.settlements(lease) {
            assert!(s["signature"].as_str().is_some_and(|s| s.len() > 60), "{s}");
        }
        self.settled(lease)
    }

    fn settlements(&self, (lease, nonce): &(String, u64)) -> Vec<Value> {
        match self
            .service
            .get(&format!("/v1/leases/{lease}?nonce={nonce}"))
        {
            Ok(h) => h["settlements"].as_array().unwrap().clone(),
            Err(e) if e.starts_with("404") => vec![],
            Err(e) => panic!("lease {lease}: {e}"),
        }
    }

    /// Waits until the service settled something of `lease`.
    pub fn settled_once(&self, lease: &(String, u64), logs: &[&Proc]) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.settled(lease) == 0 {
            self.fail_after(deadline, "nothing settled", &Value::Null, logs);
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the engine no longer has the container of `lease`.
    pub fn reaped(&self, lease: &(String, u64), logs: &[&Proc]) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while container_left(&self.docker, &lease.0, lease.1) {
            self.fail_after(
                deadline,
                &format!("the container of lease {} was never removed", lease.0),
                &Value::Null,
                logs,
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn worker_status(&self, s: &Supplier) -> Value {
        self.net.ok(&s.wallet, &["worker", "status"])
    }

    pub fn stake(&self, s: &Supplier) -> u64 {
        let v = self.worker_status(s);
        gpumesh_client::amount::parse(v["stake"].as_str().unwrap(), 6).unwrap()
    }

    /// `gpumesh market audit` holds and no container of `leases` is left.
    pub fn sound(&self, leases: &[(String, u64)]) {
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
