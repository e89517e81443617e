//! The market running with nothing played by hand: the real `gpumesh orchestrator run` and the
//! real `gpumesh worker run` (a CPU worker whose jobs run in containers through the engine
//! `DOCKER_HOST` names), and a buyer who only types `gpumesh` commands. The order is placed,
//! the job runs in a container, its output reaches the buyer, the worker's receipts are settled,
//! the order completes with the result's hash, and the buyer pays exactly for the seconds served
//! and gets the rest back. Both services stop cleanly on SIGTERM and leave no container behind.

use crate::net::{Net, ONE};
use crate::procs::{Proc, Service, free_port, write_config_with};
use gpumesh_client::chain::ChainExt;
use gpumesh_client::program::state::Order;
use gpumesh_client::{Pubkey, Signer, cluster};
use std::str::FromStr;
use std::time::{Duration, Instant};

/// 3.6 tokens per GPU-hour: 1,000 base units per GPU-second.
const PRICE_PER_SECOND: u64 = 1_000;

/// The engine `DOCKER_HOST` names, with the hello image built; panics (the test fails) without it.
pub fn engine() -> bollard::Docker {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let docker = gpumesh_worker::examples::engine(None).await.unwrap_or_else(|e| {
            panic!("{e}: these tests run jobs in containers; start the engine with `eval \"$(scripts/services.sh)\"`")
        });
        gpumesh_worker::examples::ensure_hello(&docker)
            .await
            .expect("building examples/hello");
        docker
    })
}

/// Names of the engine's containers (running or not) labelled as `worker`'s.
pub fn containers_of(docker: &bollard::Docker, worker: &str) -> Vec<String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        docker
            .list_containers(Some(bollard::query_parameters::ListContainersOptions {
                all: true,
                filters: Some(std::collections::HashMap::from([(
                    "label".to_string(),
                    vec![format!("gpumesh.worker={worker}")],
                )])),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_iter()
            .flat_map(|c| c.names.unwrap_or_default())
            .collect()
    })
}

/// Names of the engine's containers (running or not) that start with `prefix`.
fn containers(docker: &bollard::Docker, prefix: &str) -> Vec<String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        docker
            .list_containers(Some(bollard::query_parameters::ListContainersOptions {
                all: true,
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_iter()
            .flat_map(|c| c.names.unwrap_or_default())
            .map(|n| n.trim_start_matches('/').to_string())
            .filter(|n| n.starts_with(prefix))
            .collect()
    })
}

#[test]
fn an_order_runs_to_completion_on_a_worker_daemon() {
    let docker = engine();
    let mut net = Net::start();
    let (operator, _) = net.wallet("operator.json", "10", "0");
    let (buyer, buyer_key) = net.wallet("buyer.json", "10", "500");
    let (supplier, supplier_key) = net.wallet("supplier.json", "10", "1000");
    // A test market: a CPU worker's share of host memory is its "VRAM".
    let orch = net.market_with(
        &operator,
        "min_worker_vram_mib = 256\nmin_worker_bandwidth_gbps = 1",
        "",
    );
    let market = net.market.unwrap().to_string();
    cluster::write_keypair(&orch, &net.path("orchestrator.json"), false).unwrap();

    let port = free_port();
    let config = write_config_with(
        &net,
        "orchestrator.toml",
        &market,
        "orchestrator.json",
        port,
        "heartbeat_ms = 200\nreceipt_every_s = 1\nsettle_every_s = 1\nchallenge_target_ms = 0\nchallenge_rows = 8\n",
    );
    let service = Service::start(&net, &config);

    // The supplier registers a 1-GPU CPU worker and stakes for it.
    let node = gpumesh_client::Keypair::new();
    let node_path = net.path("node.json");
    cluster::write_keypair(&node, &node_path, false).unwrap();
    net.ok(
        &supplier,
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
            node_path.to_str().unwrap(),
        ],
    );
    net.ok(&supplier, &["worker", "stake", "100"]);
    let worker = net.addrs().worker(&supplier_key).to_string();

    let daemon_config = net.path("worker.toml");
    std::fs::write(
        &daemon_config,
        format!(
            "state = \"{}\"\nwork_dir = \"{}\"\n[hardware]\nbackend = \"cpu\"\n[floor]\nmin_vram_mib = 256\nmin_bandwidth_gbps = 1\n[claim]\nclass = \"cpu\"\ngpus = 1\nvram_mib = 256\nbandwidth_gbps = 1\n[runtime]\npull_images = false\n",
            net.path("worker-state.db").display(),
            net.path("work").display(),
        ),
    )
    .unwrap();
    let mut daemon = Proc::spawn(
        &net,
        "the worker daemon",
        &[
            "worker",
            "run",
            daemon_config.to_str().unwrap(),
            "--orchestrator",
            &service.url,
            "--node-key",
            node_path.to_str().unwrap(),
            "--worker",
            &worker,
        ],
        &[],
        net.path("worker.log"),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        daemon.check_alive();
        let v = service.get("/v1/workers").unwrap();
        if v["workers"]
            .as_array()
            .is_some_and(|ws| ws.iter().any(|w| w["worker"] == worker.as_str()))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the daemon never connected:\n{}\n{}",
            daemon.log_text(),
            service.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    daemon.check_alive();

    // The buyer orders the hello example and uploads its spec.
    let spec = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/hello.toml");
    let before = net.tokens(&buyer_key);
    let v = net.ok(
        &buyer,
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
    let id = v["id"].to_string();
    assert_eq!(net.tokens(&buyer_key), before - 10 * ONE);
    net.ok(
        &buyer,
        &[
            "order",
            "upload-spec",
            &id,
            spec.to_str().unwrap(),
            "--orchestrator",
            &service.url,
        ],
    );

    // Placed, run, exited: the service's page shows the job's end with its result hash.
    let started = Instant::now();
    let page = service.wait_for(
        &format!("/v1/orders/{order}"),
        Duration::from_secs(90),
        "the job runs and exits",
        |v| {
            v["jobs"]
                .as_array()
                .is_some_and(|j| j.iter().any(|j| j["result_hash"].is_string()))
        },
    );
    let job = page["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["result_hash"].is_string())
        .unwrap()
        .clone();
    assert_eq!(job["worker"], worker.as_str(), "{page}");
    assert_eq!(job["exit_code"], 0, "{page}");
    let lease = job["lease"].as_str().unwrap().to_string();
    let nonce = job["nonce"].as_u64().unwrap();
    let result_hash = job["result_hash"].as_str().unwrap().to_string();
    assert_eq!(result_hash.len(), 64, "{page}");

    // The job's output reached the service (the buyer reads it with a signed request).
    let logs = {
        let key = cluster::read_keypair(&buyer).unwrap();
        let order_key = Pubkey::from_str(&order).unwrap();
        let unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let message = gpumesh_protocol::jobspec::logs_message(&order_key.to_bytes(), unix_ms);
        let r = reqwest::blocking::Client::new()
            .get(format!("{}/v1/orders/{order}/logs", service.url))
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
    let deadline = Instant::now() + Duration::from_secs(60);
    while net
        .chain
        .fetch_opt::<Order>(&Pubkey::from_str(&order).unwrap())
        .unwrap()
        .is_some()
    {
        assert!(
            Instant::now() < deadline,
            "the order never completed:\n{}\n{}",
            service.log_text(),
            daemon.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let completed_after = started.elapsed();
    let history = service
        .get(&format!("/v1/leases/{lease}?nonce={nonce}"))
        .unwrap();
    let settlements = history["settlements"].as_array().unwrap();
    let served = settlements
        .iter()
        .map(|s| s["served_seconds"].as_u64().unwrap())
        .max()
        .expect("a settlement");
    // examples/hello works three one-second steps; served time is whole seconds the engine saw
    // the container run.
    assert!((3..=4).contains(&served), "{served} s served: {history}");
    for s in settlements {
        assert!(s["signature"].as_str().is_some_and(|s| s.len() > 60), "{s}");
    }
    assert_eq!(
        net.tokens(&buyer_key),
        before - served * PRICE_PER_SECOND,
        "the buyer pays {served} s at {PRICE_PER_SECOND} base units and gets the rest back"
    );
    let status = net.ok(&supplier, &["worker", "status"]);
    assert_eq!(status["active_leases"], 0, "{status}");

    // SIGTERM: both exit 0, and no container of this lease is left on the engine.
    let daemon_status = daemon.terminate();
    assert!(daemon_status.success(), "{daemon_status}");
    assert!(service.terminate().success());
    let left = containers(&docker, &format!("gpumesh-{lease}"));
    assert!(left.is_empty(), "containers left behind: {left:?}");
    eprintln!(
        "order {order}: completed {:.1} s after the spec upload, {served} s served, result {result_hash}",
        completed_after.as_secs_f64()
    );
}
