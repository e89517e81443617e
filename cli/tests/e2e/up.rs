//! `gpumesh up` as a user runs it: the real binary in its own process (chain, market,
//! orchestrator service, three CPU worker daemons), then a buyer who types only the commands it
//! prints: `order create` (which uploads the spec to the service `up` recorded), `order watch`
//! to the end, `order logs`. The buyer pays exactly the seconds served at the workers' price and
//! gets the rest back; SIGTERM stops everything and leaves no process and no container.
//! A second `up` on the same directory or ports is refused, and so is one without an engine.

use gpumesh_client::chain::ChainExt;
use gpumesh_client::{Pubkey, RpcChain, token};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

/// The workers' price: 3.6 tokens per GPU-hour, 1,000 base units per GPU-second.
const PRICE_PER_SECOND: u64 = 1_000;
const ONE: u64 = 1_000_000;

fn spec() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/hello.toml")
}

/// A JSON-RPC port whose websocket (+1) and API (+11) ports are free too.
fn free_base_port() -> u16 {
    for _ in 0..100 {
        let p = crate::procs::free_port();
        if p > 60_000 {
            continue;
        }
        let free = |port: u16| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok();
        if free(p + 1) && free(p + 11) {
            return p;
        }
    }
    panic!("no free ports");
}

fn gpumesh(home: &Path, docker_host: Option<&str>) -> Command {
    let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("gpumesh"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("RUST_LOG", "info")
        .env(
            "DOCKER_HOST",
            docker_host
                .map(Into::into)
                .or_else(|| std::env::var_os("DOCKER_HOST"))
                .unwrap_or_default(),
        );
    cmd
}

/// `gpumesh up` running; killed when dropped.
struct Up {
    child: Child,
    out: PathBuf,
    err: PathBuf,
}

impl Up {
    fn text(&self) -> String {
        format!(
            "stdout:\n{}\nstderr:\n{}",
            std::fs::read_to_string(&self.out).unwrap_or_default(),
            std::fs::read_to_string(&self.err).unwrap_or_default()
        )
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a buyer's command and returns its JSON document (panics with its output on failure).
fn buyer_json(home: &Path, up: &Value, args: &[&str]) -> Value {
    let out = gpumesh(home, None)
        .args(args)
        .args([
            "--url",
            up["rpc_url"].as_str().unwrap(),
            "--keypair",
            up["buyer_keypair"].as_str().unwrap(),
            "--localnet-dir",
            up["state_dir"].as_str().unwrap(),
            "--output",
            "json",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "gpumesh {args:?}: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// Processes whose command line names `needle` (this test's own directory).
fn processes_naming(needle: &str) -> Vec<String> {
    let mut found = vec![];
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if text.contains("gpumesh") && text.contains(needle) {
            found.push(format!("{}: {text}", entry.file_name().to_string_lossy()));
        }
    }
    found
}

#[test]
fn gpumesh_up_serves_a_buyer_and_stops_clean() {
    let docker = crate::market::engine();
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("up-state");
    let port = free_base_port();
    let out = home.path().join("up.out");
    let err = home.path().join("up.err");
    let started = Instant::now();
    let child = gpumesh(home.path(), None)
        .args([
            "up",
            "--dir",
            dir.to_str().unwrap(),
            "--port",
            &port.to_string(),
        ])
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let mut up = Up { child, out, err };

    // Ready: up.json is written and the terminal shows the buyer's next commands.
    let state_file = dir.join("up.json");
    let deadline = Instant::now() + Duration::from_secs(300);
    while !state_file.exists() {
        if let Some(status) = up.child.try_wait().unwrap() {
            panic!("gpumesh up exited ({status}):\n{}", up.text());
        }
        assert!(Instant::now() < deadline, "never ready:\n{}", up.text());
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(300));
    let ready_after = started.elapsed();
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(&state_file).unwrap()).unwrap();
    let terminal = std::fs::read_to_string(&up.out).unwrap();
    for want in [
        "ready in",
        "gpumesh order create --class cpu --regions eu-west,us-east,ap-southeast",
        "gpumesh order watch 1",
        "gpumesh order logs 1 --follow",
        "gpumesh worker status --keypair",
        state["api_url"].as_str().unwrap(),
        state["rpc_url"].as_str().unwrap(),
    ] {
        assert!(
            terminal.contains(want),
            "{want:?} not printed:\n{}",
            up.text()
        );
    }
    assert_eq!(state["workers"].as_array().unwrap().len(), 3, "{state}");

    // A second `up` on the same directory is refused while this one runs; so are its ports.
    let second = gpumesh(home.path(), None)
        .args(["up", "--dir", dir.to_str().unwrap(), "--port", "1"])
        .output()
        .unwrap();
    let second_err = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{second_err}");
    assert!(second_err.contains("already running"), "{second_err}");
    let third = gpumesh(home.path(), None)
        .args([
            "up",
            "--dir",
            home.path().join("other").to_str().unwrap(),
            "--port",
            &port.to_string(),
        ])
        .output()
        .unwrap();
    let third_err = String::from_utf8_lossy(&third.stderr);
    assert_eq!(third.status.code(), Some(1), "{third_err}");
    assert!(
        third_err.contains(&format!("port {port}")) && third_err.contains("in use"),
        "{third_err}"
    );

    // The buyer: create (the spec goes to the service `up` recorded), watch, logs.
    let chain = RpcChain::new(state["rpc_url"].as_str().unwrap());
    let buyer = Pubkey::from_str(state["buyer"].as_str().unwrap()).unwrap();
    let mint = Pubkey::from_str(state["mint"].as_str().unwrap()).unwrap();
    let before = chain.token_balance(&token::ata(&buyer, &mint)).unwrap();
    let spec = spec();
    let created = buyer_json(
        home.path(),
        &state,
        &[
            "order",
            "create",
            "--class",
            "cpu",
            "--regions",
            "eu-west,us-east,ap-southeast",
            "--max-price",
            "3.6/h",
            "--duration",
            "10m",
            "--deposit",
            "10",
            "--spec",
            spec.to_str().unwrap(),
        ],
    );
    assert_eq!(created["id"], 1, "{created}");
    assert_eq!(created["spec_upload"]["uploaded"], true, "{created}");
    assert_eq!(
        created["spec_upload"]["orchestrator"], state["api_url"],
        "{created}"
    );

    let watched = buyer_json(
        home.path(),
        &state,
        &["order", "watch", "1", "--timeout", "180"],
    );
    assert_eq!(watched["completed"], true, "{watched}");
    let result_hash = watched["result_hash"].as_str().unwrap_or_default();
    assert_eq!(result_hash.len(), 64, "{watched}");
    let leases = watched["leases"].as_array().unwrap();
    assert_eq!(leases.len(), 1, "{watched}");
    assert_eq!(leases[0]["price_per_gpu_second"], "0.001", "{watched}");
    let served = watched["served_seconds"].as_u64().unwrap();
    // examples/hello prints three steps a second apart: two to four whole seconds of running, as
    // the engine saw it (start to exit).
    assert!((2..=4).contains(&served), "{served} s served: {watched}");
    let paid = served * PRICE_PER_SECOND;
    assert_eq!(
        watched["paid"],
        gpumesh_client::amount::format(paid, 6),
        "{watched}"
    );
    assert_eq!(
        watched["refunded"],
        gpumesh_client::amount::format(10 * ONE - paid, 6),
        "{watched}"
    );
    // The chain agrees: the buyer's tokens went down by exactly the seconds served.
    assert_eq!(
        chain.token_balance(&token::ata(&buyer, &mint)).unwrap(),
        before - paid,
        "the buyer pays {served} s at {PRICE_PER_SECOND} base units and gets the rest back"
    );
    // And so does the service's record of the settlements.
    let lease = leases[0]["lease"].as_str().unwrap();
    let nonce = leases[0]["nonce"].as_u64().unwrap();
    let history: Value = reqwest::blocking::get(format!(
        "{}/v1/leases/{lease}?nonce={nonce}",
        state["api_url"].as_str().unwrap()
    ))
    .unwrap()
    .json()
    .unwrap();
    let settled = history["settlements"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["served_seconds"].as_u64())
        .max();
    assert_eq!(settled, Some(served), "{history}");

    let logs = gpumesh(home.path(), None)
        .args([
            "order",
            "logs",
            "1",
            "--follow",
            "--url",
            state["rpc_url"].as_str().unwrap(),
            "--keypair",
            state["buyer_keypair"].as_str().unwrap(),
            "--localnet-dir",
            dir.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&logs.stdout);
    assert!(
        logs.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&logs.stderr)
    );
    for line in [
        "hello from gpumesh",
        "greeting: hello from the buyer",
        "step 3",
        "done: /results/hello.txt",
    ] {
        assert!(text.contains(line), "{line:?} not in the logs:\n{text}");
    }
    let json_logs = buyer_json(home.path(), &state, &["order", "logs", "1"]);
    assert_eq!(
        json_logs["jobs"].as_array().map(Vec::len),
        Some(1),
        "{json_logs}"
    );

    // SIGTERM: everything stops, no process of this run and no container of its workers.
    let pid = rustix::process::Pid::from_child(&up.child);
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = up.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "gpumesh up did not stop on SIGTERM:\n{}",
            up.text()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status}:\n{}", up.text());
    let left = processes_naming(dir.to_str().unwrap());
    assert!(left.is_empty(), "processes left: {left:?}");
    for w in state["workers"].as_array().unwrap() {
        let worker = w["worker"].as_str().unwrap();
        let mine = crate::market::containers_of(&docker, worker);
        assert!(mine.is_empty(), "containers of {worker} left: {mine:?}");
    }
    assert!(!state_file.exists(), "up.json stays after the stop");
    eprintln!(
        "gpumesh up: ready after {:.1} s (as the test saw it); order 1 served {served} s, result {result_hash}",
        ready_after.as_secs_f64()
    );
}

#[test]
fn gpumesh_up_without_a_container_engine_says_how_to_start_one() {
    let home = tempfile::tempdir().unwrap();
    let port = free_base_port();
    let out = gpumesh(home.path(), Some("unix:///nonexistent/engine.sock"))
        .args([
            "up",
            "--dir",
            home.path().join("state").to_str().unwrap(),
            "--port",
            &port.to_string(),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("no container engine") && err.contains("scripts/services.sh"),
        "{err}"
    );
    // Nothing was started: the ports are free again.
    assert!(std::net::TcpListener::bind(("127.0.0.1", port)).is_ok());
}
