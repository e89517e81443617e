//! The worker daemon running real jobs in real containers (Podman's Docker-compatible socket or
//! Docker, at DOCKER_HOST; `scripts/podman-service.sh` starts Podman), talking to the
//! orchestrator's side of the protocol over a real WebSocket. Without an engine these tests fail
//! with a message that says how to start one.

mod common;

use bollard::query_parameters::{CreateContainerOptions, RemoveContainerOptions};
use common::*;
use gpumesh_protocol::hex;
use gpumesh_protocol::results::results_hash;
use gpumesh_protocol::wire::{LogStream, StopReason, ToWorker};
use gpumesh_worker::daemon::config::RuntimeKind;
use gpumesh_worker::daemon::runtime::docker::{LABEL_LEASE, LABEL_NONCE, LABEL_WORKER};
use gpumesh_worker::daemon::store::{Identity, Store};
use std::collections::HashMap;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_runs_and_its_logs_seconds_and_results_come_back() {
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
    let hello = orch.seen(|s| s.hellos[0].clone());
    assert_eq!(hello.class, gpumesh_protocol::GpuClass::Cpu);
    assert_eq!((hello.backend.as_str(), hello.gpus.len()), ("cpu", 4));

    let spec = format!(
        "image = \"{image}\"\ncommand = [\"sh\", \"-c\", \"echo hello from gpumesh; echo to stderr >&2; sleep 4; echo done > /results/hello.txt; echo bye\"]\nresults = [\"hello.txt\"]\n[env]\nGREETING = \"hi\"\n"
    );
    let a = assignment(1, &spec, 1, vec![2], 1);
    let lease = a.lease;
    let sent = Instant::now();
    orch.start_job(a);
    orch.wait("the job's first log line", Duration::from_secs(60), |s| {
        s.log_text(lease)
            .contains("hello from gpumesh")
            .then_some(())
    })
    .await;
    let first_line = sent.elapsed();
    let exit = orch
        .wait("the job's exit", Duration::from_secs(60), |s| {
            s.exited.get(&lease).cloned()
        })
        .await;
    assert_eq!(exit.exit_code, Some(0), "{}", exit.status);
    assert!(exit.status.starts_with("exited"), "{}", exit.status);
    assert!(exit.status.contains("1 result file"), "{}", exit.status);
    let want = results_hash(&[("hello.txt", b"done\n")]).expect("hash");
    assert_eq!(exit.result_hash, want);
    let stored = dir.path().join("results").join(hex(&want.expect("some")));
    assert_eq!(
        std::fs::read(stored.join("files/hello.txt")).expect("stored"),
        b"done\n"
    );

    let (logs, streams) = orch.seen(|s| {
        let l = s.logs[&lease].clone();
        (
            s.log_text(lease),
            l.iter().map(|(_, st, _)| *st).collect::<Vec<_>>(),
        )
    });
    assert!(
        logs.contains("hello from gpumesh") && logs.contains("bye"),
        "{logs}"
    );
    assert!(
        streams.contains(&LogStream::Stderr),
        "stderr is its own stream"
    );

    // The final receipt: the seconds it ran, no more; heartbeats after the exit stay there.
    let (started_ms, _) = orch.seen(|s| s.started[&lease]);
    let final_served = orch.final_served(lease).await;
    let run_ms = exit.unix_ms - started_ms;
    assert!(
        final_served * 1000 <= run_ms,
        "{final_served} s signed for {run_ms} ms: no more than the run"
    );
    assert!(
        final_served * 1000 + 1500 >= run_ms,
        "{final_served} s signed for {run_ms} ms: the rounding and the start call at most lost"
    );
    let beats = orch.seen(|s| s.links[&lease].len());
    orch.wait("two more heartbeats", Duration::from_secs(10), |s| {
        (s.links[&lease].len() >= beats + 2).then_some(())
    })
    .await;
    assert_eq!(orch.seen(|s| s.last_served(lease)), Some(final_served));
    assert!(
        orch.seen(|s| s.links[&lease]
            .iter()
            .filter(|(l, _)| l.served_seconds == 0)
            .count())
            >= 1
            || first_line < Duration::from_secs(1),
        "heartbeats before the job ran show 0 s"
    );

    // The lease ends: no more heartbeats for it, and its state goes once receipts are acked.
    orch.send(ToWorker::StopJob {
        lease,
        reason: StopReason::LeaseEnded,
        grace_ms: 1_000,
    });
    orch.seen(|s| s.leases.remove(&lease));
    let beats = orch.seen(|s| s.links[&lease].len());
    let hb = orch.seen(|s| s.heartbeats);
    orch.wait("heartbeats go on", Duration::from_secs(10), |s| {
        (s.heartbeats >= hb + 3).then_some(())
    })
    .await;
    assert!(orch.seen(|s| s.links[&lease].len()) <= beats + 1);
    daemon.stop().await.expect("clean stop");
    assert!(orch.problems().is_empty(), "{:?}", orch.problems());
    let store = Store::open(
        &dir.path().join("state.sqlite"),
        &Identity {
            worker: names.worker,
            program_id: names.program_id,
            node_key: names.node_key,
        },
    )
    .await
    .expect("state");
    assert_eq!(
        store.counts().await.expect("counts"),
        (0, 0, 0),
        "nothing left to keep"
    );
    assert!(
        !dir.path()
            .join("jobs")
            .join(format!("{}-{}", lease.lease, lease.nonce))
            .exists()
    );
    eprintln!("StartJob → first log line through the daemon: {first_line:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_jobs_end_cleanly_with_a_clear_status() {
    let docker = engine().await;
    let image = test_image(&docker).await;
    let names = Names::new();
    let orch = OrchestratorSide::start(names.clone(), Behaviour::default()).await;
    let dir = tempfile::tempdir().expect("dir");
    let mut config = cpu_config(dir.path(), &orch.url, &names, RuntimeKind::Docker);
    config.runtime.log_buffer_bytes = 256 * 1024;
    let daemon = start_daemon(config);
    orch.connected(1).await;

    let job = |cmd: &str| format!("image = \"{image}\"\ncommand = [\"sh\", \"-c\", \"{cmd}\"]\n");
    let too_many = assignment(
        1,
        &format!("image = \"{image}\"\ngpus = 2\n"),
        1,
        vec![0],
        5,
    );
    let host_path = assignment(
        2,
        &format!("image = \"{image}\"\nresults = [\"/etc/passwd\"]\n"),
        1,
        vec![0],
        5,
    );
    let missing = assignment(
        3,
        "image = \"localhost/gpumesh-no-such-image:1\"\ncommand = [\"true\"]\n",
        1,
        vec![1],
        5,
    );
    let quick = assignment(4, &job("echo quick; exit 3"), 1, vec![2], 5);
    for a in [&too_many, &host_path, &missing, &quick] {
        orch.start_job(a.clone());
    }
    let status = |lease| {
        let orch = &orch;
        async move {
            orch.wait("an exit", Duration::from_secs(60), |s| {
                s.exited.get(&lease).cloned()
            })
            .await
        }
    };
    let e = status(too_many.lease).await;
    assert!(
        e.status.contains("refused") && e.status.contains("asks for 2 GPUs but the lease has 1"),
        "{}",
        e.status
    );
    let e = status(host_path.lease).await;
    assert!(
        e.status.contains("refused") && e.status.contains("relative path under /results"),
        "{}",
        e.status
    );
    let e = status(missing.lease).await;
    assert!(
        e.status.contains("image missing")
            && e.status.contains("localhost/gpumesh-no-such-image:1"),
        "{}",
        e.status
    );
    let e = status(quick.lease).await;
    assert_eq!(
        (e.exit_code, e.status.as_str()),
        (Some(3), "exited with code 3")
    );
    assert!(orch.seen(|s| s.log_text(quick.lease)).contains("quick"));

    // A job that ignores SIGTERM is killed after the grace period.
    let stubborn = assignment(
        6,
        &job("trap '' TERM; echo stubborn; while true; do sleep 1; done"),
        1,
        vec![2],
        5,
    );
    let polite = assignment(
        7,
        &job("trap 'echo leaving; exit 0' TERM; echo polite; while true; do sleep 0.2; done"),
        1,
        vec![3],
        5,
    );
    orch.start_job(stubborn.clone());
    orch.start_job(polite.clone());
    // GPU 2 is taken now: a lease naming it is refused.
    let taken = assignment(5, &job("echo busy"), 1, vec![2], 5);
    orch.wait("both jobs running", Duration::from_secs(60), |s| {
        (s.log_text(stubborn.lease).contains("stubborn")
            && s.log_text(polite.lease).contains("polite"))
        .then_some(())
    })
    .await;
    orch.start_job(taken.clone());
    let e = status(taken.lease).await;
    assert!(e.status.contains("GPU 2 is serving lease"), "{}", e.status);
    let stop_sent = Instant::now();
    for (a, grace) in [(&stubborn, 1_500), (&polite, 10_000)] {
        orch.send(ToWorker::StopJob {
            lease: a.lease,
            reason: StopReason::LeaseEnded,
            grace_ms: grace,
        });
    }
    let e = status(polite.lease).await;
    assert!(
        e.status.starts_with("stopped: its lease ended"),
        "{}",
        e.status
    );
    assert!(orch.seen(|s| s.log_text(polite.lease)).contains("leaving"));
    let e = status(stubborn.lease).await;
    let took = e.at.duration_since(stop_sent);
    assert!(
        e.status.starts_with("killed after the grace period"),
        "{}",
        e.status
    );
    assert!(
        took >= Duration::from_millis(1_400) && took < Duration::from_secs(15),
        "{took:?}"
    );

    // A flood with a slow orchestrator: output is dropped and marked, the daemon lives on.
    let flood = assignment(
        8,
        &job("yes gpumesh-flood-line-0123456789 | head -c 60000000; echo flood-done"),
        1,
        vec![0],
        1,
    );
    orch.start_job(flood.clone());
    orch.wait("the flood's first output", Duration::from_secs(60), |s| {
        s.logs.contains_key(&flood.lease).then_some(())
    })
    .await;
    orch.seen(|s| s.stall_until = Some(Instant::now() + Duration::from_secs(4)));
    let e = orch
        .wait("the flood's exit", Duration::from_secs(120), |s| {
            s.exited.get(&flood.lease).cloned()
        })
        .await;
    eprintln!(
        "flood: {}; {} bytes reached the orchestrator",
        e.status,
        orch.seen(|s| s.log_bytes)
    );
    assert_eq!(e.exit_code, Some(0), "{}", e.status);
    assert!(e.status.contains("bytes of output dropped"), "{}", e.status);
    let logs = orch.seen(|s| s.log_text(flood.lease));
    assert!(
        logs.contains("bytes of output dropped here"),
        "a marker stands for the dropped output"
    );
    let hb = orch.seen(|s| s.heartbeats);
    orch.wait("heartbeats after the flood", Duration::from_secs(10), |s| {
        (s.heartbeats >= hb + 2).then_some(())
    })
    .await;
    daemon.stop().await.expect("clean stop");
    assert!(orch.problems().is_empty(), "{:?}", orch.problems());
    // Every container of these jobs is gone.
    let left = docker
        .list_containers(Some(bollard::query_parameters::ListContainersOptions {
            all: true,
            filters: Some(HashMap::from([(
                "label".to_string(),
                vec![format!("{LABEL_WORKER}={}", names.worker)],
            )])),
            ..Default::default()
        }))
        .await
        .expect("list");
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_no_lease_wants_are_reaped_at_start() {
    let docker = engine().await;
    let image = test_image(&docker).await;
    let names = Names::new();
    let other = Names::new();
    let create = |worker: gpumesh_protocol::Key, n: u8| {
        let docker = docker.clone();
        async move {
            let labels = HashMap::from([
                (LABEL_WORKER.to_string(), worker.to_string()),
                (
                    LABEL_LEASE.to_string(),
                    gpumesh_protocol::Key([n; 32]).to_string(),
                ),
                (LABEL_NONCE.to_string(), "1".to_string()),
            ]);
            let c = docker
                .create_container(
                    Some(CreateContainerOptions::default()),
                    bollard::models::ContainerCreateBody {
                        image: Some(image.into()),
                        cmd: Some(vec!["sleep".into(), "600".into()]),
                        labels: Some(labels),
                        host_config: Some(bollard::models::HostConfig {
                            network_mode: Some("none".into()),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                )
                .await
                .expect("create");
            docker.start_container(&c.id, None).await.expect("start");
            c.id
        }
    };
    let orphan = create(names.worker, 9).await;
    let foreign = create(other.worker, 9).await;
    let orch = OrchestratorSide::start(names.clone(), Behaviour::default()).await;
    let dir = tempfile::tempdir().expect("dir");
    let daemon = start_daemon(cpu_config(
        dir.path(),
        &orch.url,
        &names,
        RuntimeKind::Docker,
    ));
    orch.connected(1).await;
    assert!(
        docker.inspect_container(&orphan, None).await.is_err(),
        "this worker's orphan is gone"
    );
    assert!(
        docker.inspect_container(&foreign, None).await.is_ok(),
        "another worker's container stays"
    );
    daemon.stop().await.expect("stop");
    docker
        .remove_container(
            &foreign,
            Some(RemoveContainerOptions {
                force: true,
                ..Default::default()
            }),
        )
        .await
        .expect("cleanup");
}

/// Builds examples/hello's image through the engine's API, as `examples/hello/build.sh` does.
async fn build_hello(docker: &bollard::Docker) {
    gpumesh_worker::examples::ensure_hello(docker)
        .await
        .expect("building examples/hello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hello_example_runs_as_documented() {
    let docker = engine().await;
    build_hello(&docker).await;
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
    // The spec file's exact bytes, as the buyer's order hashed them.
    let spec = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/hello.toml"),
    )
    .expect("examples/hello.toml");
    let a = assignment(1, &spec, 1, vec![0], 1);
    let lease = a.lease;
    orch.start_job(a);
    let exit = orch
        .wait("the hello job's exit", Duration::from_secs(60), |s| {
            s.exited.get(&lease).cloned()
        })
        .await;
    assert_eq!(exit.exit_code, Some(0), "{}", exit.status);
    assert_eq!(
        exit.result_hash,
        results_hash(&[("hello.txt", b"hello from the buyer, after 3 steps\n")]).expect("hash")
    );
    let logs = orch.seen(|s| s.log_text(lease));
    assert!(
        logs.contains(&format!("hello from gpumesh, lease {}", lease.lease)),
        "{logs}"
    );
    assert!(
        logs.contains("step 3") && logs.contains("CUDA_VISIBLE_DEVICES=[]"),
        "{logs}"
    );
    let served = orch.final_served(lease).await;
    let (started_ms, _) = orch.seen(|s| s.started[&lease]);
    let run_ms = exit.unix_ms - started_ms;
    assert!(
        served * 1000 <= run_ms && served * 1000 + 1500 >= run_ms,
        "{served} s for {run_ms} ms"
    );
    daemon.stop().await.expect("stop");
    assert!(orch.problems().is_empty(), "{:?}", orch.problems());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leftover_container_of_the_same_lease_is_replaced() {
    use gpumesh_worker::daemon::config::RuntimeConfig;
    use gpumesh_worker::daemon::runtime::docker::{DockerRuntime, container_name};
    use gpumesh_worker::daemon::runtime::{JobPlan, Running};
    let docker = engine().await;
    let image = test_image(&docker).await;
    let names = Names::new();
    let a = assignment(
        3,
        &format!("image = \"{image}\"\ncommand = [\"echo\", \"second\"]\n"),
        1,
        vec![0],
        5,
    );
    // What a daemon stopped between create and start leaves behind.
    docker
        .create_container(
            Some(CreateContainerOptions {
                name: Some(container_name(a.lease)),
                ..Default::default()
            }),
            bollard::models::ContainerCreateBody {
                image: Some(image.into()),
                cmd: Some(vec!["echo".into(), "first".into()]),
                ..Default::default()
            },
        )
        .await
        .expect("leftover");
    let dir = tempfile::tempdir().expect("dir");
    let runtime = DockerRuntime::connect(&RuntimeConfig::default(), names.worker)
        .await
        .expect("engine");
    let plan = JobPlan {
        lease: a.lease,
        worker: names.worker,
        spec: a.spec.clone(),
        gpus: vec![],
        real_gpus: false,
        scratch: dir.path().join("scratch"),
        results: dir.path().join("results"),
        millicpus: 0,
        memory_mib: 0,
        restore: vec![],
        resume: None,
    };
    std::fs::create_dir_all(&plan.scratch).expect("scratch");
    std::fs::create_dir_all(&plan.results).expect("results");
    let (job, started) = runtime.start(&plan).await.expect("replaces the leftover");
    let mut job = Running::Docker(job);
    use futures_util::StreamExt;
    let output: Vec<u8> = job
        .output()
        .flat_map(|(_, b)| futures_util::stream::iter(b))
        .collect()
        .await;
    assert_eq!(String::from_utf8_lossy(&output), "second\n");
    let exit = job.wait().await.expect("exit");
    assert_eq!(exit.exit_code, Some(0));
    assert!(exit.run_ms.is_some(), "the engine's run time");
    assert!(started.job.engine_started.is_some());
    job.cleanup().await;
    assert!(
        docker
            .inspect_container(&container_name(a.lease), None)
            .await
            .is_err()
    );
}
