//! The daemon's costs with real containers, each path against the container engine alone in the
//! same run:
//!
//! - container start: create → first output line through the engine's API alone (the
//!   baseline), against `StartJob` → first `JobLog` at the orchestrator through the daemon (spec
//!   check, state write, image check, create, attach, start, log hub, WebSocket);
//! - job output: the same bytes read from the engine's attach stream alone (the baseline),
//!   against the daemon's `JobLog` path to the orchestrator's side (in this process);
//! - the daemon process's memory at idle (connected, no lease).
//!
//! Run (needs the engine, like the container tests):
//!
//!   eval "$(scripts/services.sh)" && cargo bench --profile dev -p gpumesh-worker --bench daemon
//!
//! Options: `--runs 10` (container starts per path), `--log-mb 200` (job output), `--idle-s 5`.
//! Prints the CPU model, the engine and the parameters first; `--profile dev` measures the
//! debug build (what the tests run), the default bench profile the release build.

#[path = "../tests/common/mod.rs"]
mod common;

use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig, HostConfigLogConfig};
use bollard::query_parameters::{AttachContainerOptions, RemoveContainerOptions};
use common::*;
use futures_util::StreamExt;
use gpumesh_worker::daemon::config::node_key_json;
use std::time::{Duration, Instant};

struct Args {
    runs: usize,
    log_bytes: u64,
    idle: Duration,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        runs: 10,
        log_bytes: 200_000_000,
        idle: Duration::from_secs(5),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut number = |what: &str| {
            it.next()
                .and_then(|v| v.parse::<u64>().ok())
                .filter(|&n| n > 0)
                .ok_or(format!("{what} needs a positive number"))
        };
        match arg.as_str() {
            "--runs" => args.runs = number("--runs")? as usize,
            "--log-mb" => args.log_bytes = number("--log-mb")? * 1_000_000,
            "--idle-s" => args.idle = Duration::from_secs(number("--idle-s")?),
            // `cargo bench` passes --bench; harness flags do not apply to this binary.
            _ => {}
        }
    }
    Ok(args)
}

fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// A container of the test image running `cmd`, attached before it starts (as the daemon
/// does), with no log file and no network.
async fn start_attached(
    docker: &Docker,
    image: &str,
    cmd: Vec<String>,
) -> (
    String,
    std::pin::Pin<
        Box<
            dyn futures_util::Stream<
                    Item = Result<bollard::container::LogOutput, bollard::errors::Error>,
                > + Send,
        >,
    >,
) {
    let c = docker
        .create_container(
            None::<bollard::query_parameters::CreateContainerOptions>,
            ContainerCreateBody {
                image: Some(image.into()),
                cmd: Some(cmd),
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
    let out = docker
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
    (c.id, out)
}

async fn remove(docker: &Docker, id: &str) {
    docker
        .remove_container(
            id,
            Some(RemoveContainerOptions {
                force: true,
                ..Default::default()
            }),
        )
        .await
        .expect("remove");
}

/// The job both paths start: a line, then a second of running. (A job that exits at once is
/// slower to inspect on Podman while it is being cleaned up, which the daemon does after the
/// start; a real job keeps running.)
fn job() -> Vec<String> {
    vec!["sh".into(), "-c".into(), "echo ready; sleep 1".into()]
}

async fn container_start(docker: &Docker, image: &str, runs: usize) {
    let mut engine_ms = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let (id, mut out) = start_attached(docker, image, job()).await;
        out.next().await.expect("a line").expect("output");
        engine_ms.push(t.elapsed().as_secs_f64() * 1e3);
        // Let it end as the daemon's jobs do (removing a running container holds the engine).
        while out.next().await.is_some() {}
        remove(docker, &id).await;
    }

    let (orch, daemon, _dir) = connected_daemon(&Names::new(), |_| {}).await;
    let mut daemon_ms = Vec::new();
    for i in 0..runs {
        let spec = format!(
            "image = \"{image}\"\ncommand = [\"sh\", \"-c\", \"{}\"]\n",
            job()[2]
        );
        let a = assignment((i % 250) as u8 + 1, &spec, 1, vec![(i % 4) as u16], 5);
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
    let (e50, d50) = (
        percentile(engine_ms.clone(), 0.5),
        percentile(daemon_ms.clone(), 0.5),
    );
    println!(
        "container start, to the first output line ({runs} runs each):\n  engine alone (baseline)        median {e50:.0} ms, p90 {:.0} ms\n  StartJob → JobLog via daemon   median {d50:.0} ms, p90 {:.0} ms\n  ratio daemon / engine (median) {:.2}",
        percentile(engine_ms, 0.9),
        percentile(daemon_ms, 0.9),
        d50 / e50
    );
}

fn flood(bytes: u64) -> Vec<String> {
    vec![
        "sh".into(),
        "-c".into(),
        format!(
            "yes 0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0123456789 | head -c {bytes}"
        ),
    ]
}

async fn log_throughput(docker: &Docker, image: &str, bytes: u64) {
    // The baseline: the engine's attach stream, read as fast as this process can.
    let (id, mut out) = start_attached(docker, image, flood(bytes)).await;
    let mut read = 0u64;
    let mut first = None;
    while let Some(chunk) = out.next().await {
        let chunk = chunk.expect("output");
        first.get_or_insert_with(Instant::now);
        read += chunk.into_bytes().len() as u64;
    }
    let engine_s = first.map_or(0.0, |f| f.elapsed().as_secs_f64());
    remove(docker, &id).await;

    let (orch, daemon, _dir) = connected_daemon(&Names::new(), |c| {
        c.runtime.log_buffer_bytes = 64 << 20;
    })
    .await;
    let spec = format!(
        "image = \"{image}\"\ncommand = [\"sh\", \"-c\", \"{}\"]\n",
        flood(bytes)[2]
    );
    let (lease, exit) = orch
        .run_to_exit(
            assignment(1, &spec, 1, vec![0], 5),
            "the exit",
            Duration::from_secs(600),
        )
        .await;
    let (received, first) = orch.seen(|s| (s.log_bytes, s.first_log_at[&lease]));
    let daemon_s = exit.at.duration_since(first).as_secs_f64();
    daemon.stop().await.expect("stop");
    let (engine_rate, daemon_rate) = (
        read as f64 / 1e6 / engine_s,
        received as f64 / 1e6 / daemon_s,
    );
    println!(
        "job output, {:.0} MB of text:\n  engine attach alone (baseline) {:.1} MB in {engine_s:.2} s = {engine_rate:.0} MB/s\n  JobLog path via daemon         {:.1} MB in {daemon_s:.2} s = {daemon_rate:.0} MB/s ({:.1} MB dropped; {})\n  ratio daemon / engine          {:.2}",
        bytes as f64 / 1e6,
        read as f64 / 1e6,
        received as f64 / 1e6,
        (bytes - received.min(bytes)) as f64 / 1e6,
        exit.status,
        daemon_rate / engine_rate
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

async fn idle_memory(idle: Duration) {
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
    tokio::time::sleep(idle).await;
    let (rss, peak) = rss_kib(child.id());
    child.kill().expect("kill");
    child.wait().expect("wait");
    println!(
        "daemon process at idle (connected, no lease, {} s): RSS {:.1} MiB, peak {:.1} MiB (the peak includes the start-up bandwidth measurement's 128 MiB of buffers)",
        idle.as_secs(),
        rss as f64 / 1024.0,
        peak as f64 / 1024.0
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("daemon bench: {e}");
            std::process::exit(2);
        }
    };
    let docker = engine().await;
    let version = docker
        .version()
        .await
        .ok()
        .and_then(|v| Some(format!("{} {}", v.platform?.name, v.version?)))
        .unwrap_or_else(|| "unknown engine".into());
    println!(
        "gpumesh daemon benchmark on {} ({} cores); engine: {version} at {}; {} build",
        gpumesh_protocol::kernels::cpu_model().unwrap_or_else(|| std::env::consts::ARCH.into()),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::env::var("DOCKER_HOST").unwrap_or_default(),
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
    );
    println!(
        "parameters: --runs {} --log-mb {} --idle-s {}",
        args.runs,
        args.log_bytes / 1_000_000,
        args.idle.as_secs()
    );
    let image = test_image(&docker).await;
    container_start(&docker, image, args.runs).await;
    log_throughput(&docker, image, args.log_bytes).await;
    idle_memory(args.idle).await;
}
