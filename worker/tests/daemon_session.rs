//! The worker daemon's session with the orchestrator, against the orchestrator's side of the
//! protocol (a real WebSocket server in the test): the session signature, heartbeat chains the
//! other side recomputes, receipts that verify, a dropped socket and a killed daemon process
//! that both resume their leases without losing or inventing seconds, the plain command runtime
//! and a compute challenge. Jobs run in real containers (DOCKER_HOST) where a test says so.

mod common;

use common::*;
use gpumesh_protocol::challenge::DEFAULT_ALLOWANCE;
use gpumesh_protocol::results::results_hash;
use gpumesh_protocol::wire::{ErrorCode, StopReason, ToOrchestrator, ToWorker};
use gpumesh_protocol::{AwaitingCommitment, Challenge, GpuClass};
use gpumesh_worker::daemon::DaemonError;
use gpumesh_worker::daemon::config::{RuntimeKind, node_key_json};
use gpumesh_worker::daemon::session::SessionError;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_is_signed_and_a_stranger_or_another_program_is_refused() {
    let names = Names::new();
    let orch = OrchestratorSide::start(names.clone(), Behaviour::default()).await;
    let dir = tempfile::tempdir().expect("dir");

    // The right key: the orchestrator's side checks the signature over its nonce.
    let daemon = start_daemon(cpu_config(
        dir.path(),
        &orch.url,
        &names,
        RuntimeKind::Command,
    ));
    orch.connected(1).await;
    orch.wait("a heartbeat", Duration::from_secs(10), |s| {
        (s.heartbeats > 0).then_some(())
    })
    .await;
    daemon.stop().await.expect("stop");

    // Another node key for the same worker: refused, and the daemon stops with the reason.
    let mut stranger = names.clone();
    stranger.node = gpumesh_protocol::SigningKey::from_bytes(&[42; 32]);
    let other_dir = tempfile::tempdir().expect("dir");
    let daemon = start_daemon(cpu_config(
        other_dir.path(),
        &orch.url,
        &stranger,
        RuntimeKind::Command,
    ));
    let err = tokio::time::timeout(Duration::from_secs(30), daemon.task)
        .await
        .expect("it stops")
        .expect("task")
        .expect_err("refused");
    assert!(
        matches!(
            &err,
            DaemonError::Session(SessionError::Refused {
                code: ErrorCode::AuthFailed,
                ..
            })
        ),
        "{err}"
    );
    assert_eq!(orch.seen(|s| s.auth_failures), 1);

    // A daemon registered with another program refuses the orchestrator before signing.
    let mut elsewhere = names.clone();
    elsewhere.program_id = gpumesh_protocol::Key([7; 32]);
    let third = tempfile::tempdir().expect("dir");
    let daemon = start_daemon(cpu_config(
        third.path(),
        &orch.url,
        &elsewhere,
        RuntimeKind::Command,
    ));
    let err = tokio::time::timeout(Duration::from_secs(30), daemon.task)
        .await
        .expect("it stops")
        .expect("task")
        .expect_err("refused");
    assert!(
        err.to_string()
            .contains("this worker is registered with program"),
        "{err}"
    );
    assert_eq!(orch.seen(|s| (s.connections, s.auth_failures)), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_socket_resumes_the_lease_and_the_chain_stays_whole() {
    let docker = engine().await;
    let image = test_image(&docker).await;
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
    let spec = format!(
        "image = \"{image}\"\ncommand = [\"sh\", \"-c\", \"echo start; sleep 7; echo end\"]\n"
    );
    let a = assignment(1, &spec, 1, vec![0], 1);
    let lease = a.lease;
    orch.start_job(a);
    orch.wait("a first receipt", Duration::from_secs(60), |s| {
        s.max_receipt(lease).filter(|&r| r >= 1)
    })
    .await;

    // The orchestrator stops reading, then drops the socket: the heartbeats sent meanwhile are
    // lost on its side, and the daemon resends them after it reconnects.
    let links_before = orch.seen(|s| {
        s.stall_until = Some(Instant::now() + Duration::from_secs(30));
        s.links[&lease].len()
    });
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    orch.seen(|s| s.stall_until = None);
    orch.drop_connection();
    orch.connected(2).await;
    let resumed = orch
        .wait("links after the reconnect", Duration::from_secs(10), |s| {
            let n = s.links[&lease].len();
            (n > links_before + 3).then_some(n)
        })
        .await;
    assert!(
        orch.seen(|s| s.replayed) >= 1,
        "the lost heartbeats came again"
    );
    // And once more, at once.
    orch.drop_connection();
    orch.connected(3).await;
    let exit = orch
        .wait("the job's exit", Duration::from_secs(60), |s| {
            s.exited.get(&lease).cloned()
        })
        .await;
    assert_eq!((exit.exit_code, exit.status.as_str()), (Some(0), "exited"));
    let (started_ms, _) = orch.seen(|s| s.started[&lease]);
    let served = orch.final_served(lease).await;
    assert!(
        served * 1000 + 1500 >= exit.unix_ms - started_ms,
        "nothing lost to the reconnects"
    );
    assert!(
        served * 1000 <= exit.unix_ms - started_ms,
        "{served} s signed for a run of {} ms",
        exit.unix_ms - started_ms
    );
    // Receipts only grow, and every one was signed over a head the orchestrator recomputed.
    let receipts = orch.seen(|s| {
        s.receipts
            .iter()
            .map(|r| r.served_seconds)
            .collect::<Vec<_>>()
    });
    assert!(receipts.windows(2).all(|w| w[0] <= w[1]), "{receipts:?}");
    assert!(
        orch.seen(|s| s.rtts.len()) > 0,
        "heartbeats carry a measured round trip"
    );
    assert!(orch.problems().is_empty(), "{:?}", orch.problems());
    assert!(resumed > links_before);
    daemon.stop().await.expect("stop");
}

/// The daemon as its own process.
fn spawn_binary(config: &std::path::Path, orch: &OrchestratorSide, log: &std::path::Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log");
    Command::new(env!("CARGO_BIN_EXE_gpumesh-worker"))
        .args(["--config", &config.display().to_string()])
        .args(["--orchestrator", &orch.url])
        .env("GPUMESH_WORKER", orch.names.worker.to_string())
        .env("GPUMESH_PROGRAM_ID", orch.names.program_id.to_string())
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("the daemon binary starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_daemon_restarts_on_its_state_file_and_loses_no_seconds() {
    let docker = engine().await;
    let image = test_image(&docker).await;
    let names = Names::new();
    let orch = OrchestratorSide::start(names.clone(), Behaviour::default()).await;
    let dir = tempfile::tempdir().expect("dir");
    let key = dir.path().join("node.json");
    std::fs::write(&key, node_key_json(&names.node)).expect("key");
    let config = dir.path().join("worker.toml");
    let d = dir.path().display();
    std::fs::write(
        &config,
        format!(
            "node_key = \"{d}/node.json\"\nstate = \"{d}/state.sqlite\"\nwork_dir = \"{d}/jobs\"\n\
             [hardware]\nbackend = \"cpu\"\n[floor]\nmin_vram_mib = 256\nmin_bandwidth_gbps = 0.5\n\
             [claim]\nclass = \"cpu\"\ngpus = 2\nvram_mib = 256\nbandwidth_gbps = 1\n\
             [runtime]\npull_images = false\n[results]\nstore = \"local\"\ndir = \"{d}/results\"\n\
             [connection]\nbackoff_initial_ms = 100\nbackoff_max_ms = 1000\n"
        ),
    )
    .expect("config");
    let log = dir.path().join("daemon.log");
    let mut child = spawn_binary(&config, &orch, &log);
    orch.connected(1).await;
    let spec = format!(
        "image = \"{image}\"\ncommand = [\"sh\", \"-c\", \"echo start; sleep 9; echo done > /results/out.txt; echo end\"]\nresults = [\"out.txt\"]\n"
    );
    let a = assignment(1, &spec, 1, vec![1], 1);
    let lease = a.lease;
    orch.start_job(a);
    let before = orch
        .wait("receipts before the kill", Duration::from_secs(60), |s| {
            s.max_receipt(lease).filter(|&r| r >= 2)
        })
        .await;
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    let killed = Instant::now();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let mut child = spawn_binary(&config, &orch, &log);
    orch.connected(2).await;
    let exit = orch
        .wait("the job's exit", Duration::from_secs(60), |s| {
            s.exited.get(&lease).cloned()
        })
        .await;
    assert_eq!(exit.exit_code, Some(0), "{}", exit.status);
    assert_eq!(
        exit.result_hash,
        results_hash(&[("out.txt", b"done\n")]).expect("hash"),
        "{}",
        exit.status
    );
    let (started_ms, _) = orch.seen(|s| s.started[&lease]);
    let run_ms = exit.unix_ms - started_ms;
    let served = orch.final_served(lease).await;
    assert!(
        served * 1000 + 1500 >= run_ms,
        "{served} s signed for {run_ms} ms: seconds lost"
    );
    // Nothing lost: the seconds while the daemon was down count (the same container ran on),
    // and nothing invented: no more than the run.
    assert!(served >= before);
    assert!(served * 1000 <= run_ms, "{served} s signed for {run_ms} ms");
    assert!(killed.elapsed() > Duration::from_millis(1_500));
    let logs = orch.seen(|s| s.log_text(lease));
    assert!(logs.contains("daemon restarted"), "{logs}");
    let receipts = orch.seen(|s| {
        s.receipts
            .iter()
            .map(|r| r.served_seconds)
            .collect::<Vec<_>>()
    });
    assert!(receipts.windows(2).all(|w| w[0] <= w[1]), "{receipts:?}");
    assert!(orch.problems().is_empty(), "{:?}", orch.problems());

    // SIGTERM stops it cleanly.
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    let status = child.wait().expect("exits");
    assert!(
        status.success(),
        "{status}; log:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_runtime_runs_a_process_group_and_challenges_are_answered() {
    let names = Names::new();
    let orch = OrchestratorSide::start(names.clone(), Behaviour::default()).await;
    let dir = tempfile::tempdir().expect("dir");
    let daemon = start_daemon(cpu_config(
        dir.path(),
        &orch.url,
        &names,
        RuntimeKind::Command,
    ));
    orch.connected(1).await;

    let spec = "image = \"host\"\ncommand = [\"sh\", \"-c\", \"echo on the host; echo $GREETING > $GPUMESH_RESULTS/out.txt; sleep 30 & wait\"]\nresults = [\"out.txt\"]\n[env]\nGREETING = \"hello\"\n";
    let a = assignment(1, spec, 1, vec![0], 1);
    let lease = a.lease;
    orch.start_job(a);
    orch.wait("its output", Duration::from_secs(30), |s| {
        s.log_text(lease).contains("on the host").then_some(())
    })
    .await;
    orch.send(ToWorker::StopJob {
        lease,
        reason: StopReason::LeaseEnded,
        grace_ms: 2_000,
    });
    let exit = orch
        .wait("its exit", Duration::from_secs(30), |s| {
            s.exited.get(&lease).cloned()
        })
        .await;
    assert!(
        exit.status.starts_with("stopped: its lease ended"),
        "{}",
        exit.status
    );
    assert_eq!(
        exit.result_hash,
        results_hash(&[("out.txt", b"hello\n")]).expect("hash")
    );
    // The whole group went: no `sleep 30` is left behind.
    let left = std::fs::read_dir("/proc")
        .expect("proc")
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("cmdline")).ok())
        .filter(|c| c.replace('\0', " ").trim() == "sleep 30")
        .count();
    assert_eq!(left, 0);

    // A compute challenge, answered by the CPU backend and checked by the verifier.
    let challenge = Challenge::new(
        7,
        GpuClass::Cpu,
        256,
        16,
        DEFAULT_ALLOWANCE + Duration::from_secs(60),
        &mut rand::rng(),
    )
    .expect("challenge");
    let round = AwaitingCommitment::new(challenge.clone(), Instant::now());
    orch.send(ToWorker::Challenge(challenge));
    let commitment = orch
        .wait("the commitment", Duration::from_secs(60), |s| {
            s.answers.iter().find_map(|m| match m {
                ToOrchestrator::Commitment(c) => Some(c.clone()),
                _ => None,
            })
        })
        .await;
    let opening = round
        .receive_commitment(&commitment, Instant::now(), &mut rand::rng())
        .expect("in time");
    orch.send(ToWorker::OpenRequest(opening.open_request().clone()));
    let opening = opening.sent(Instant::now());
    let opened = orch
        .wait("the opening", Duration::from_secs(60), |s| {
            s.answers.iter().find_map(|m| match m {
                ToOrchestrator::Opening(o) => Some(o.clone()),
                _ => None,
            })
        })
        .await;
    opening
        .receive_opening(&opened, Instant::now())
        .expect("the verifier accepts the CPU backend's answer");
    // Pings are answered too.
    orch.send(ToWorker::Ping { id: 99, unix_ms: 0 });
    orch.wait("the pong", Duration::from_secs(10), |s| {
        s.pongs.contains(&99).then_some(())
    })
    .await;
    daemon.stop().await.expect("stop");
    assert!(orch.problems().is_empty(), "{:?}", orch.problems());
}
