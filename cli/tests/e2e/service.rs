//! `gpumesh orchestrator run` as a process and `gpumesh order upload-spec` against it: the spec
//! a buyer's order waits for, refused when it is not the order's or not the buyer's, stored
//! across a restart; the service's refusals at start (missing config, a key the market does not
//! name) and its clean exit on SIGTERM.

use crate::net::Net;
use gpumesh_client::{Keypair, Signer, cluster};
use serde_json::Value;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The orchestrator service as a child process of the real binary.
struct Service {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Service {
    fn start(net: &Net, config: &Path) -> Service {
        let log = config.with_extension("log");
        let child = Command::new(assert_cmd::cargo::cargo_bin("gpumesh"))
            .args(["orchestrator", "run", config.to_str().unwrap()])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", net.dir.path())
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let text = std::fs::read_to_string(config).unwrap();
        let listen = text
            .lines()
            .find_map(|l| l.strip_prefix("listen = "))
            .unwrap()
            .trim_matches('"')
            .to_string();
        let mut s = Service {
            child,
            url: format!("http://{listen}"),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = s.child.try_wait().unwrap() {
                panic!("the service exited ({status}):\n{}", s.log_text());
            }
            if let Ok(v) = s.get("/v1/health") {
                assert_eq!(v["ok"], true, "{v}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the service never answered:\n{}",
                s.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        s
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn get(&self, path: &str) -> Result<Value, String> {
        let r = reqwest::blocking::get(format!("{}{path}", self.url)).map_err(|e| e.to_string())?;
        let status = r.status();
        let body = r.text().map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("{status}: {body}"));
        }
        serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))
    }

    /// Polls an order until its `waiting` reason contains `what`.
    fn wait_for_reason(&self, order: &str, what: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let v = self.get(&format!("/v1/orders/{order}")).unwrap();
            if v["waiting"].as_str().is_some_and(|w| w.contains(what)) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "order never waited for {what:?}: {v}\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM, then the exit status (the service settles what is due and exits 0).
    fn terminate(mut self) -> std::process::ExitStatus {
        let pid = rustix::process::Pid::from_child(&self.child);
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the service did not exit on SIGTERM:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_config(net: &Net, name: &str, market: &str, key: &str, port: u16) -> PathBuf {
    let path = net.path(name);
    let store = net.path("orchestrator.db");
    std::fs::write(
        &path,
        format!(
            "rpc_url = \"{}\"\nmarket = \"{market}\"\nkeypair = \"{key}\"\nlisten = \"127.0.0.1:{port}\"\nstore = \"sqlite://{}?mode=rwc\"\nplacement_every_ms = 200\n",
            net.url,
            store.display()
        ),
    )
    .unwrap();
    path
}

#[test]
fn a_buyer_uploads_its_job_spec_to_the_running_service() {
    let mut net = Net::start();
    let (operator, _) = net.wallet("operator.json", "10", "0");
    let (buyer, _) = net.wallet("buyer.json", "10", "500");
    let (stranger, _) = net.wallet("stranger.json", "10", "0");
    let orch = net.market(&operator);
    let market = net.market.unwrap().to_string();
    // The key file sits beside the config and is named relative to it.
    cluster::write_keypair(&orch, &net.path("orchestrator.json"), false).unwrap();

    // The service refuses to start without its config, or with a key the market does not name.
    let out = net.run(
        &operator,
        &[
            "orchestrator",
            "run",
            net.path("missing.toml").to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let e = String::from_utf8_lossy(&out.stdout);
    assert!(
        e.contains("cannot read") && e.contains("missing.toml"),
        "{e}"
    );
    let other = Keypair::new();
    cluster::write_keypair(&other, &net.path("other.json"), false).unwrap();
    let wrong = write_config(&net, "wrong.toml", &market, "other.json", free_port());
    let out = net.run(&operator, &["orchestrator", "run", wrong.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let e = String::from_utf8_lossy(&out.stdout);
    assert!(
        e.contains(&orch.pubkey().to_string()) && e.contains("the key the market names"),
        "{e}"
    );

    let port = free_port();
    let config = write_config(
        &net,
        "orchestrator.toml",
        &market,
        "orchestrator.json",
        port,
    );
    let service = Service::start(&net, &config);
    let health = service.get("/v1/health").unwrap();
    assert_eq!(health["market"], market.as_str());
    assert_eq!(health["orchestrator"], orch.pubkey().to_string());

    // A spec the orchestrator could not run never reaches the chain.
    let bad = net.path("bad.toml");
    std::fs::write(&bad, "command = [\"true\"]\n").unwrap();
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
            "3600",
            "--deposit",
            "5",
            "--spec",
            bad.to_str().unwrap(),
        ],
    );
    assert!(e.contains("not a job spec") && e.contains("image"), "{e}");
    let two = net.path("two.toml");
    std::fs::write(&two, "image = \"pytorch\"\ngpus = 2\n").unwrap();
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
            "3600",
            "--deposit",
            "5",
            "--spec",
            two.to_str().unwrap(),
        ],
    );
    assert!(e.contains("2 GPUs") && e.contains("--gpus"), "{e}");

    let v = net.order(&buyer, &["--deposit", "5"]);
    let order = v["order"].as_str().unwrap().to_string();
    let id = v["id"].to_string();
    let spec = net.path("job.toml");
    service.wait_for_reason(&order, "waiting for its job spec");

    // Another file than the order's: refused before anything is sent.
    let other_spec = net.path("other.toml");
    std::fs::write(&other_spec, "image = \"busybox\"\n").unwrap();
    let url = service.url.clone();
    let e = net.fails(
        &buyer,
        &[
            "order",
            "upload-spec",
            &id,
            other_spec.to_str().unwrap(),
            "--orchestrator",
            &url,
        ],
    );
    assert!(e.contains("hash differs"), "{e}");
    // Nobody listening: says so and what to check.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let e = net.fails(
        &buyer,
        &[
            "order",
            "upload-spec",
            &id,
            spec.to_str().unwrap(),
            "--orchestrator",
            &dead,
        ],
    );
    assert!(
        e.contains("did not answer") && e.contains("--orchestrator"),
        "{e}"
    );
    // The right file signed by someone else than the buyer: the service refuses it.
    let text = std::fs::read(&spec).unwrap();
    let stranger_key = cluster::read_keypair(&stranger).unwrap();
    let order_key = <gpumesh_client::Pubkey as std::str::FromStr>::from_str(&order).unwrap();
    let message = gpumesh_protocol::jobspec::upload_message(&order_key.to_bytes(), &text);
    let r = reqwest::blocking::Client::new()
        .put(format!("{url}/v1/orders/{order}/spec"))
        .header(
            "x-gpumesh-signature",
            stranger_key.sign_message(&message).to_string(),
        )
        .body(text.clone())
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let mut body = String::new();
    r.take(4096).read_to_string(&mut body).unwrap();
    assert!(body.contains("buyer"), "{body}");
    service.wait_for_reason(&order, "waiting for its job spec");

    // The buyer's upload: the order moves on to wait for a worker (none registered).
    let v = net.ok(
        &buyer,
        &[
            "order",
            "upload-spec",
            &id,
            spec.to_str().unwrap(),
            "--orchestrator",
            &url,
        ],
    );
    assert_eq!(v["uploaded"], true);
    assert_eq!(v["order"], order.as_str());
    service.wait_for_reason(&order, "no worker fits");

    // SIGTERM: a clean exit. The spec is in the store: a restarted service does not ask again.
    let status = service.terminate();
    assert!(status.success(), "{status}");
    let service = Service::start(&net, &config);
    service.wait_for_reason(&order, "no worker fits");
    assert!(service.terminate().success());
}
