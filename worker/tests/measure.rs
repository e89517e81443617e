//! Measurements of the daemon (not pass/fail checks, so ignored by default):
//!
//!   cargo test --release -p gpumesh-worker --test measure -- --ignored --nocapture --test-threads 1
//!
//! needs DOCKER_HOST like the other container tests. Prints container start latency (create →
//! first output line, through the engine alone and through the daemon), job output throughput
//! through the JobLog path, and the daemon process's memory at idle.

mod common;

use bollard::models::{ContainerCreateBody, HostConfig, HostConfigLogConfig};
use bollard::query_parameters::{AttachContainerOptions, RemoveContainerOptions};
use common::*;
use futures_util::StreamExt;
use gpumesh_worker::daemon::config::{RuntimeKind, node_key_json};
use std::time::{Duration, Instant};

fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run with --ignored --nocapture"]
async fn measure_container_start_latency() {
    let docker = engine().await;
    let image = test_image(&docker).await;
    let mut engine_ms = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        let c = docker
            .create_container(
                None::<bollard::query_parameters::CreateContainerOptions>,
                ContainerCreateBody {
                    image: Some(image.into()),
                    cmd: Some(vec!["echo".into(), "ready".into()]),
                    host_config: Some(HostConfig {
                        network_mode: Some("none".into()),
                        log_config: Some(HostConfigLogConfig {
                            typ: Some("none".into()),
                            config: None,
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            )
            .await
            .expect("create");
        let mut out = docker
            .attach_container(
                &c.id,
                Some(AttachContainerOptions {
                    stream: true,
                    stdout: true,
                    stderr: true,
                    ..Default::default()
                }),
            )
            .await
            .expect("attach")
            .output;
        docker.start_container(&c.id, None).await.expect("start");
        out.next().await.expect("a line").expect("output");
        engine_ms.push(t.elapsed().as_secs_f64() * 1e3);
        docker
            .remove_container(
                &c.id,
                Some(RemoveContainerOptions {
                    force: true,
                    ..Default::default()
                }),
            )
            .await
            .expect("remove");
    }

    let names = Names::new();
    let orch = OrchestratorSide::start(names.clone(), Behaviour::default()).await;
    let dir = tempfile::tempdir().expect("dir");
    let daemon = start_daemon(cpu_config(
        dir.path(),
        &orch.url,
        &names,
        RuntimeKind::Docker,
    ));
    orch.connected(1).await;
    let mut daemon_ms = Vec::new();
    for i in 0..10u8 {
        let spec = format!("image = \"{image}\"\ncommand = [\"echo\", \"ready\"]\n");
        let a = assignment(i + 1, &spec, 1, vec![u16::from(i % 4)], 5);
        let lease = a.lease;
        let t = Instant::now();
        orch.start_job(a);
        orch.wait("the first line", Duration::from_secs(30), |s| {
            s.log_text(lease).contains("ready").then_some(())
        })
        .await;
        daemon_ms.push(t.elapsed().as_secs_f64() * 1e3);
        orch.wait("the exit", Duration::from_secs(30), |s| {
            s.exited.get(&lease).map(|_| ())
        })
        .await;
    }
    daemon.stop().await.expect("stop");
    println!(
        "container start, create → first output line: engine alone median {:.0} ms (p90 {:.0}); StartJob → first JobLog through the daemon median {:.0} ms (p90 {:.0}); 10 runs each",
        percentile(engine_ms.clone(), 0.5),
        percentile(engine_ms, 0.9),
        percentile(daemon_ms.clone(), 0.5),
        percentile(daemon_ms, 0.9)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run with --ignored --nocapture"]
async fn measure_log_throughput() {
    let docker = engine().await;
    let image = test_image(&docker).await;
    let bytes = 200_000_000u64;
    let names = Names::new();
    let orch = OrchestratorSide::start(names.clone(), Behaviour::default()).await;
    let dir = tempfile::tempdir().expect("dir");
    let mut config = cpu_config(dir.path(), &orch.url, &names, RuntimeKind::Docker);
    config.runtime.log_buffer_bytes = 64 << 20;
    let daemon = start_daemon(config);
    orch.connected(1).await;
    let spec = format!(
        "image = \"{image}\"\ncommand = [\"sh\", \"-c\", \"yes 0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0123456789 | head -c {bytes}\"]\n"
    );
    let a = assignment(1, &spec, 1, vec![0], 5);
    let lease = a.lease;
    orch.start_job(a);
    let exit = orch
        .wait("the exit", Duration::from_secs(300), |s| {
            s.exited.get(&lease).cloned()
        })
        .await;
    let (received, first) = orch.seen(|s| (s.log_bytes, s.first_log_at[&lease]));
    let secs = exit.at.duration_since(first).as_secs_f64();
    daemon.stop().await.expect("stop");
    println!(
        "job output through the JobLog path: {:.1} MB in {secs:.2} s = {:.0} MB/s ({:.1} MB dropped; status: {})",
        received as f64 / 1e6,
        received as f64 / 1e6 / secs,
        (bytes - received.min(bytes)) as f64 / 1e6,
        exit.status
    );
}

fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run with --ignored --nocapture"]
async fn measure_daemon_memory_at_idle() {
    engine().await;
    let names = Names::new();
    let orch = OrchestratorSide::start(names.clone(), Behaviour::default()).await;
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("node.json"), node_key_json(&names.node)).expect("key");
    let d = dir.path().display();
    std::fs::write(
        dir.path().join("worker.toml"),
        format!(
            "node_key = \"{d}/node.json\"\nstate = \"{d}/state.sqlite\"\nwork_dir = \"{d}/jobs\"\n[hardware]\nbackend = \"cpu\"\n[floor]\nmin_vram_mib = 256\nmin_bandwidth_gbps = 0.5\n[runtime]\npull_images = false\n[results]\nstore = \"local\"\ndir = \"{d}/results\"\n"
        ),
    )
    .expect("config");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_gpumesh-worker"))
        .args([
            "--config",
            &format!("{d}/worker.toml"),
            "--orchestrator",
            &orch.url,
        ])
        .args(["--worker", &names.worker.to_string()])
        .args(["--program-id", &names.program_id.to_string()])
        .env("RUST_LOG", "warn")
        .spawn()
        .expect("daemon");
    orch.connected(1).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (rss, peak) = rss_kib(child.id());
    child.kill().expect("kill");
    child.wait().expect("wait");
    println!(
        "daemon at idle (connected, no lease, 5 s): RSS {:.1} MiB, peak {:.1} MiB (the peak includes the start-up bandwidth measurement's 128 MiB of buffers)",
        rss as f64 / 1024.0,
        peak as f64 / 1024.0
    );
}
