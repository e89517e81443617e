//! One task per lease's job: check the assignment, start the job (or find it again after a
//! restart), pump its output into the log hub, stop it on request (SIGTERM, then SIGKILL after
//! the grace period) or when it outlives its spec's `max_duration_s`, and when it ends: collect
//! and store its results, clean up, and tell the daemon's core how it went. The core owns the
//! clock of served time; this task reports the moments it needs (started, stopped).

use super::config::RuntimeKind;
use super::hardware::Machine;
use super::logs::LogHub;
use super::results::{ResultStore, collect, collect_dir};
use super::runtime::{
    Adopted, ExitState, JobPlan, Runtime, RuntimeError, Signal, Started, unix_ms,
};
use super::store::{ExitRecord, JobRef};
use futures_util::StreamExt;
use gpumesh_protocol::Key;
use gpumesh_protocol::job_spec_hash;
use gpumesh_protocol::wire::{
    CHECKPOINT_REQUEST_FILE, CheckpointRef, JobSpec, LeaseAssignment, LeaseId, LogStream,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// What a job task tells the core.
#[derive(Debug)]
pub enum JobEvent {
    /// The job runs from `started.at`.
    Started { lease: LeaseId, started: Started },
    /// A job started before a restart still runs; its clock goes on from `at` (`unix_ms` on
    /// the wall clock, the same moment).
    Resumed {
        lease: LeaseId,
        at: Instant,
        unix_ms: u64,
    },
    /// The job stopped running (its time stops here). `at` when this process saw it stop;
    /// `exit` from the engine when it tells.
    Stopped {
        lease: LeaseId,
        at: Option<Instant>,
        exit: Option<ExitState>,
    },
    /// Everything is done: results stored, container removed.
    Exited { lease: LeaseId, exit: ExitRecord },
    /// A checkpoint of the job's state is stored.
    Checkpoint(CheckpointRef),
    /// Before the job started: the checkpoint restored (if any) and the ones skipped, why.
    Restore {
        lease: LeaseId,
        restored: Option<[u8; 32]>,
        skipped: Vec<([u8; 32], String)>,
    },
}

/// A request to the job task.
#[derive(Debug)]
pub enum Control {
    Stop {
        grace: Duration,
        why: String,
    },
    /// Take checkpoints (as the spec says) or not (the buyer turned them off).
    Checkpoints(bool),
}

pub struct JobHandle {
    pub control: mpsc::UnboundedSender<Control>,
    pub task: JoinHandle<()>,
}

/// What every job task shares.
#[derive(Clone)]
pub struct JobContext {
    pub runtime: Arc<Runtime>,
    pub hub: Arc<LogHub>,
    pub results: Arc<dyn ResultStore>,
    pub events: mpsc::UnboundedSender<JobEvent>,
    pub work_dir: PathBuf,
    pub default_grace: Duration,
}

/// How the task begins.
pub enum JobStart {
    Fresh(JobPlan),
    Adopt { plan: JobPlan, job: JobRef },
}

/// Checks an assignment against the order's hash and this machine, and plans its job. The
/// error is the refusal's reason, in words.
pub fn plan(
    assignment: &LeaseAssignment,
    machine: &Machine,
    worker: Key,
    work_dir: &Path,
    runtime: RuntimeKind,
) -> Result<JobPlan, String> {
    let Some(file) = &assignment.spec_file else {
        return Err(
            "the assignment carries no spec file, so the job cannot be checked against the order's spec hash".into(),
        );
    };
    let hash = job_spec_hash(file.as_bytes());
    if hash != assignment.spec_hash {
        return Err(format!(
            "the spec file hashes to {}, not to the order's spec hash {}",
            short(&hash),
            short(&assignment.spec_hash)
        ));
    }
    let mut spec = JobSpec::from_toml(file).map_err(|e| e.to_string())?;
    if spec != assignment.spec {
        return Err("the assignment's spec is not the spec file's".into());
    }
    if assignment.checkpoints_off {
        // The buyer turned them off: no snapshot, no restore, no checkpoint directory.
        spec.checkpoint = None;
    }
    if usize::from(assignment.gpus) != assignment.gpu_indices.len() {
        return Err(format!(
            "the lease has {} GPUs but names {} GPU indices",
            assignment.gpus,
            assignment.gpu_indices.len()
        ));
    }
    if spec.gpus > assignment.gpus {
        return Err(format!(
            "the job asks for {} GPUs but the lease has {}",
            spec.gpus, assignment.gpus
        ));
    }
    let mut gpus = Vec::new();
    for (i, index) in assignment.gpu_indices.iter().enumerate() {
        if assignment.gpu_indices[..i].contains(index) {
            return Err(format!("GPU index {index} is named twice"));
        }
        let slot = machine.slot(*index).ok_or_else(|| {
            format!(
                "GPU index {index} does not exist on this worker (it offers {})",
                machine.slots.len()
            )
        })?;
        gpus.push(slot.clone());
    }
    gpus.truncate(usize::from(spec.gpus));
    if runtime == RuntimeKind::Command && spec.command.is_empty() {
        return Err("this worker runs jobs as plain commands and the spec has no `command`".into());
    }
    let dir = lease_dir(work_dir, assignment.lease);
    let spec_has_checkpoint = spec.checkpoint.is_some();
    Ok(JobPlan {
        lease: assignment.lease,
        worker,
        millicpus: spec.millicpus,
        memory_mib: spec.memory_mib,
        spec,
        gpus,
        real_gpus: machine.has_gpus(),
        scratch: dir.join("scratch"),
        results: dir.join("results"),
        restore: if spec_has_checkpoint {
            assignment.restore.clone()
        } else {
            vec![]
        },
        resume: None,
    })
}

fn short(hash: &[u8; 32]) -> String {
    gpumesh_protocol::hex(&hash[..8]) + "…"
}

/// A lease's working directory.
pub fn lease_dir(work_dir: &Path, lease: LeaseId) -> PathBuf {
    work_dir.join(format!("{}-{}", lease.lease, lease.nonce))
}

fn prepare_dirs(plan: &JobPlan) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let checkpoint = plan.checkpoint_dir();
    for dir in [
        Some(&plan.scratch),
        Some(&plan.results),
        checkpoint.as_ref(),
    ]
    .into_iter()
    .flatten()
    {
        std::fs::create_dir_all(dir)?;
        // The job may run as any user inside its container; the lease directory above is the
        // daemon's alone.
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777))?;
    }
    if let Some(parent) = plan.scratch.parent() {
        std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o711))?;
    }
    Ok(())
}

pub fn spawn(ctx: JobContext, start: JobStart) -> JobHandle {
    let (control, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(supervise(ctx, start, rx));
    JobHandle { control, task }
}

fn note(hub: &LogHub, lease: LeaseId, text: &str) {
    hub.push(
        lease,
        LogStream::Stderr,
        format!("[gpumesh: {text}]\n").as_bytes(),
    );
}

async fn supervise(
    ctx: JobContext,
    start: JobStart,
    mut control: mpsc::UnboundedReceiver<Control>,
) {
    let (plan, mut running, fresh) = match start {
        JobStart::Fresh(mut plan) => {
            if let Err(e) = prepare_dirs(&plan) {
                finish_without_run(
                    &ctx,
                    &plan,
                    format!("refused: the job's directories could not be made: {e}"),
                )
                .await;
                return;
            }
            restore(&ctx, &mut plan).await;
            match ctx.runtime.start(&plan).await {
                Ok((running, started)) => {
                    for line in &started.notes {
                        note(&ctx.hub, plan.lease, line);
                    }
                    let _ = ctx.events.send(JobEvent::Started {
                        lease: plan.lease,
                        started,
                    });
                    (plan, running, true)
                }
                Err(e) => {
                    let status = match &e {
                        RuntimeError::ImageMissing(_) | RuntimeError::Pull { .. } => {
                            format!("image missing: {e}")
                        }
                        RuntimeError::Refused(why) => format!("refused: {why}"),
                        _ => format!("failed to start: {e}"),
                    };
                    finish_without_run(&ctx, &plan, status).await;
                    return;
                }
            }
        }
        JobStart::Adopt { plan, job } => {
            // The moment before the engine is asked: if it says the job runs, it ran until here.
            let (at, unix) = (Instant::now(), unix_ms());
            let adopted = ctx.runtime.adopt(&job).await.map(|a| (a, at, unix));
            match adopted {
                Ok((Adopted::Running(running), at, unix)) => {
                    let _ = ctx.events.send(JobEvent::Resumed {
                        lease: plan.lease,
                        at,
                        unix_ms: unix,
                    });
                    note(
                        &ctx.hub,
                        plan.lease,
                        "the worker daemon restarted; output written while it was away is not forwarded",
                    );
                    (plan, *running, false)
                }
                Ok((Adopted::Exited(exit), _, _)) => {
                    let _ = ctx.events.send(JobEvent::Stopped {
                        lease: plan.lease,
                        at: None,
                        exit: Some(exit.clone()),
                    });
                    let status = describe(&exit, None, false);
                    if let Runtime::Docker(d) = &*ctx.runtime {
                        let _ = d
                            .client()
                            .remove_container(
                                &job.id,
                                Some(bollard::query_parameters::RemoveContainerOptions {
                                    force: true,
                                    v: true,
                                    ..Default::default()
                                }),
                            )
                            .await;
                    }
                    finish(
                        &ctx,
                        &plan,
                        Some(&exit),
                        format!("{status} (while the worker daemon was away)"),
                    )
                    .await;
                    return;
                }
                Ok((Adopted::Lost(why), _, _)) => {
                    let _ = ctx.events.send(JobEvent::Stopped {
                        lease: plan.lease,
                        at: None,
                        exit: None,
                    });
                    finish(&ctx, &plan, None, format!("lost: {why}")).await;
                    return;
                }
                Err(e) => {
                    let _ = ctx.events.send(JobEvent::Stopped {
                        lease: plan.lease,
                        at: None,
                        exit: None,
                    });
                    finish(&ctx, &plan, None, format!("lost: {e}")).await;
                    return;
                }
            }
        }
    };

    let lease = plan.lease;
    let output = running.output();
    let hub = ctx.hub.clone();
    let pump = tokio::spawn(async move {
        let mut output = output;
        while let Some((stream, bytes)) = output.next().await {
            hub.push(lease, stream, &bytes);
        }
    });
    let killer = running.killer();
    let max_duration =
        (plan.spec.max_duration_s > 0).then(|| Duration::from_secs(plan.spec.max_duration_s));
    let overdue = tokio::time::sleep(max_duration.unwrap_or(Duration::from_secs(u32::MAX.into())));
    tokio::pin!(overdue);
    let mut stopping: Option<String> = None;
    let kill_at = tokio::time::sleep(Duration::from_secs(u32::MAX.into()));
    tokio::pin!(kill_at);
    let mut killed = false;
    // Checkpoints: every interval, and when the job asks (a request file it touches, looked for
    // a few times a second).
    let mut checkpoint_every = plan
        .spec
        .checkpoint
        .as_ref()
        .map(|c| Duration::from_secs(c.interval_s.into()));
    let mut checkpoint_poll = tokio::time::interval(CHECKPOINT_POLL);
    checkpoint_poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_checkpoint = (Instant::now(), plan.resume.map(|r| r.hash));
    let exit = {
        let wait = running.wait();
        tokio::pin!(wait);
        loop {
            tokio::select! {
                r = &mut wait => break r,
                _ = checkpoint_poll.tick(), if checkpoint_every.is_some() && stopping.is_none() => {
                    let request = plan.scratch.join(CHECKPOINT_REQUEST_FILE);
                    let asked = std::fs::symlink_metadata(&request).is_ok();
                    let due = checkpoint_every.is_some_and(|every| last_checkpoint.0.elapsed() >= every);
                    if asked || due {
                        if asked {
                            let _ = std::fs::remove_file(&request);
                        }
                        last_checkpoint = (Instant::now(), snapshot(&ctx, &plan, last_checkpoint.1).await);
                    }
                }
                Some(c) = control.recv(), if stopping.is_none() => match c {
                    Control::Stop { grace, why } => {
                        killer.signal(Signal::Term).await;
                        kill_at.as_mut().reset(tokio::time::Instant::now() + grace);
                        stopping = Some(why);
                    }
                    Control::Checkpoints(on) => {
                        checkpoint_every = plan
                            .spec
                            .checkpoint
                            .as_ref()
                            .filter(|_| on)
                            .map(|c| Duration::from_secs(c.interval_s.into()));
                        let state = if on { "on" } else { "off: no more snapshots" };
                        note(&ctx.hub, lease, &format!("the buyer turned checkpoints {state}"));
                    }
                },
                _ = &mut overdue, if max_duration.is_some() && stopping.is_none() => {
                    killer.signal(Signal::Term).await;
                    kill_at.as_mut().reset(tokio::time::Instant::now() + ctx.default_grace);
                    stopping = Some(format!("it reached its max_duration_s of {} s", plan.spec.max_duration_s));
                }
                _ = &mut kill_at, if stopping.is_some() && !killed => {
                    killer.signal(Signal::Kill).await;
                    killed = true;
                }
            }
        }
    };
    let at = Instant::now();
    let exit = match exit {
        Ok(exit) => exit,
        Err(e) => {
            let _ = ctx.events.send(JobEvent::Stopped {
                lease,
                at: Some(at),
                exit: None,
            });
            running.cleanup().await;
            pump.abort();
            finish(&ctx, &plan, None, format!("lost: {e}")).await;
            return;
        }
    };
    let _ = ctx.events.send(JobEvent::Stopped {
        lease,
        at: Some(at),
        exit: fresh.then(|| exit.clone()),
    });
    // The output ends with the job; a process it left behind holding the pipe does not hold
    // the lease up for long.
    let pump_abort = pump.abort_handle();
    if tokio::time::timeout(Duration::from_secs(10), pump)
        .await
        .is_err()
    {
        pump_abort.abort();
    }
    running.cleanup().await;
    let mut status = describe(&exit, stopping.as_deref(), killed);
    if let Some(memory) = (exit.oom_killed && plan.memory_mib > 0).then_some(plan.memory_mib) {
        status.push_str(&format!(" (memory limit {memory} MiB)"));
    }
    finish(&ctx, &plan, Some(&exit), status).await;
}

/// How often a job's checkpoint request file is looked for.
const CHECKPOINT_POLL: Duration = Duration::from_millis(100);

/// Before a fresh start: restores the newest checkpoint offered that passes its hash check into
/// the job's checkpoint directory (the job is then told it resumes) and reports the ones
/// skipped. Nothing restorable: the job starts from nothing.
async fn restore(ctx: &JobContext, plan: &mut JobPlan) {
    let Some(dir) = plan.checkpoint_dir() else {
        return;
    };
    if plan.restore.is_empty() {
        return;
    }
    let mut skipped = Vec::new();
    let mut restored = None;
    for candidate in plan.restore.clone() {
        match ctx.results.get_checkpoint(candidate.hash, &dir).await {
            Ok(got) => {
                note(
                    &ctx.hub,
                    plan.lease,
                    &format!(
                        "resuming from checkpoint {} taken at {} ms by lease {} ({})",
                        short(&candidate.hash),
                        candidate.unix_ms,
                        candidate.lease.lease,
                        got.summary()
                    ),
                );
                restored = Some(candidate);
                break;
            }
            Err(e) => {
                tracing::warn!(lease = %plan.lease.lease, "checkpoint skipped: {e}");
                note(
                    &ctx.hub,
                    plan.lease,
                    &format!("checkpoint {} skipped: {e}", short(&candidate.hash)),
                );
                skipped.push((candidate.hash, e.to_string()));
            }
        }
    }
    if restored.is_none() {
        note(
            &ctx.hub,
            plan.lease,
            "no checkpoint could be restored; the job starts from nothing",
        );
    }
    // The directory must be there and writable for the job, restored or not.
    if let Err(e) = prepare_dirs(plan) {
        tracing::warn!(lease = %plan.lease.lease, "preparing the checkpoint directory: {e}");
    }
    plan.resume = restored;
    let _ = ctx.events.send(JobEvent::Restore {
        lease: plan.lease,
        restored: restored.map(|r| r.hash),
        skipped,
    });
}

/// Takes a snapshot of the job's checkpoint directory and stores it, unless its content is the
/// last one's (`last`). Returns the hash of the newest stored snapshot.
async fn snapshot(ctx: &JobContext, plan: &JobPlan, last: Option<[u8; 32]>) -> Option<[u8; 32]> {
    let dir = plan.checkpoint_dir()?;
    let root = dir.clone();
    let collected = match tokio::task::spawn_blocking(move || collect_dir(&root)).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            note(&ctx.hub, plan.lease, &format!("checkpoint not taken: {e}"));
            return last;
        }
        Err(e) => {
            tracing::warn!("checkpoint task: {e}");
            return last;
        }
    };
    let Some(hash) = collected.hash else {
        return last;
    };
    if Some(hash) == last {
        return last;
    }
    let unix = unix_ms();
    match ctx
        .results
        .put_checkpoint(plan.lease, &dir, &collected)
        .await
    {
        Ok(_) => {
            let size = collected.files.iter().map(|f| f.size).sum();
            let _ = ctx.events.send(JobEvent::Checkpoint(CheckpointRef {
                hash,
                size,
                files: collected.files.len() as u64,
                unix_ms: unix,
                lease: plan.lease,
            }));
            Some(hash)
        }
        Err(e) => {
            // A file changed while it was copied (the job writes in place): the next one.
            tracing::info!(lease = %plan.lease.lease, "checkpoint not stored: {e}");
            last
        }
    }
}

/// The exit in words.
fn describe(exit: &ExitState, stopping: Option<&str>, killed: bool) -> String {
    let how = if exit.oom_killed {
        "killed: out of memory".to_string()
    } else if let Some(signal) = exit.signal {
        format!("killed by signal {signal}")
    } else {
        match exit.exit_code {
            Some(0) => "exited".to_string(),
            Some(code) => format!("exited with code {code}"),
            None => "ended".to_string(),
        }
    };
    match (stopping, killed) {
        (Some(why), true) => {
            format!("killed after the grace period: {why}; it ignored SIGTERM ({how})")
        }
        (Some(why), false) => format!("stopped: {why} ({how})"),
        (None, _) => how,
    }
}

/// A job that never ran: its directories go, the refusal is reported.
async fn finish_without_run(ctx: &JobContext, plan: &JobPlan, status: String) {
    let _ = ctx.events.send(JobEvent::Stopped {
        lease: plan.lease,
        at: None,
        exit: None,
    });
    remove_dir(&lease_dir(&ctx.work_dir, plan.lease)).await;
    let _ = ctx.events.send(JobEvent::Exited {
        lease: plan.lease,
        exit: ExitRecord {
            unix_ms: unix_ms(),
            exit_code: None,
            status,
            result_hash: None,
        },
    });
}

async fn remove_dir(dir: &Path) {
    let dir = dir.to_path_buf();
    let _ = tokio::task::spawn_blocking(move || {
        if dir.exists()
            && let Err(e) = std::fs::remove_dir_all(&dir)
        {
            tracing::warn!("removing {}: {e}", dir.display());
        }
    })
    .await;
}

/// After the job: results collected and stored, directories removed, the core told.
async fn finish(ctx: &JobContext, plan: &JobPlan, exit: Option<&ExitState>, mut status: String) {
    let lease = plan.lease;
    let dropped = ctx.hub.dropped(lease);
    if dropped > 0 {
        status.push_str(&format!("; {dropped} bytes of output dropped"));
    }
    let mut result_hash = None;
    let mut stored = true;
    if !plan.spec.results.is_empty() && plan.results.is_dir() {
        let (root, listed) = (plan.results.clone(), plan.spec.results.clone());
        let collected = tokio::task::spawn_blocking(move || collect(&root, &listed)).await;
        match collected {
            Ok(Ok(collected)) => {
                status.push_str(&format!("; {}", collected.summary()));
                match ctx.results.put(lease, &plan.results, &collected).await {
                    Ok(at) => {
                        result_hash = collected.hash;
                        if !at.is_empty() {
                            tracing::info!(lease = %lease.lease, "results stored at {at}");
                        }
                    }
                    Err(e) => {
                        stored = false;
                        status.push_str(&format!("; results not stored: {e}"));
                    }
                }
            }
            Ok(Err(e)) => {
                stored = false;
                status.push_str(&format!("; results not collected: {e}"));
            }
            Err(e) => {
                stored = false;
                status.push_str(&format!("; results not collected: {e}"));
            }
        }
    }
    if stored {
        remove_dir(&lease_dir(&ctx.work_dir, lease)).await;
    } else {
        // Keep the results for the operator; scratch goes.
        remove_dir(&plan.scratch).await;
    }
    let _ = ctx.events.send(JobEvent::Exited {
        lease,
        exit: ExitRecord {
            unix_ms: exit
                .and_then(|e| e.finished_unix_ms)
                .unwrap_or_else(unix_ms),
            exit_code: exit.and_then(|e| e.exit_code),
            status,
            result_hash,
        },
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Measurement;
    use crate::daemon::hardware::GpuSlot;
    use gpumesh_protocol::GpuClass;
    use gpumesh_protocol::wire::HardwareReport;

    fn machine(slots: u16, gpus: bool) -> Machine {
        Machine {
            report: HardwareReport {
                class: GpuClass::Cpu,
                gpus: vec![],
                measured_bandwidth_gbps: 1.0,
                backend: if gpus { "cuda" } else { "cpu" }.into(),
            },
            slots: (0..slots)
                .map(|index| GpuSlot {
                    index,
                    uuid: gpus.then(|| format!("GPU-{index}")),
                    nvml_index: None,
                })
                .collect(),
            measurement: Measurement {
                memory_bandwidth_gbs: 1.0,
                int8_tops: 1.0,
                gemm_n: 1,
            },
        }
    }

    fn assignment(file: &str, gpus: u16, indices: Vec<u16>) -> LeaseAssignment {
        LeaseAssignment {
            lease: LeaseId {
                lease: Key([1; 32]),
                nonce: 1,
            },
            order: Key([2; 32]),
            gpus,
            gpu_indices: indices,
            spec: JobSpec::from_toml(file)
                .unwrap_or_else(|_| JobSpec::from_toml("image = \"x\"\n").expect("x")),
            spec_hash: job_spec_hash(file.as_bytes()),
            receipt_every_s: 5,
            spec_file: Some(file.into()),
            chain: None,
            restore: vec![],
            checkpoints_off: false,
        }
    }

    fn try_plan(a: &LeaseAssignment, m: &Machine) -> Result<JobPlan, String> {
        plan(a, m, Key([3; 32]), Path::new("/w"), RuntimeKind::Docker)
    }

    #[test]
    fn assignments_are_checked_against_the_hash_the_lease_and_the_machine() {
        let m = machine(4, true);
        let ok = assignment("image = \"i\"\ngpus = 2\n", 3, vec![3, 1, 0]);
        let p = try_plan(&ok, &m).expect("valid");
        assert_eq!(
            p.gpus.iter().map(|g| g.index).collect::<Vec<_>>(),
            vec![3, 1]
        );
        assert_eq!(
            p.results,
            PathBuf::from(format!("/w/{}-1/results", Key([1; 32])))
        );

        let too_many = assignment("image = \"i\"\ngpus = 2\n", 1, vec![0]);
        let err = try_plan(&too_many, &m).unwrap_err();
        assert!(err.contains("asks for 2 GPUs but the lease has 1"), "{err}");

        let mut tampered = ok.clone();
        tampered.spec_file = Some("image = \"evil\"\ngpus = 2\n".into());
        assert!(
            try_plan(&tampered, &m)
                .unwrap_err()
                .contains("not to the order's spec hash")
        );

        let mut swapped = ok.clone();
        swapped.spec.image = "evil".into();
        assert!(
            try_plan(&swapped, &m)
                .unwrap_err()
                .contains("not the spec file's")
        );

        let mut none = ok.clone();
        none.spec_file = None;
        assert!(try_plan(&none, &m).unwrap_err().contains("no spec file"));

        let host_path = assignment("image = \"i\"\nresults = [\"/etc/passwd\"]\n", 1, vec![0]);
        let err = try_plan(&host_path, &m).unwrap_err();
        assert!(err.contains("relative path under /results"), "{err}");

        let absent = assignment("image = \"i\"\n", 1, vec![7]);
        assert!(
            try_plan(&absent, &m)
                .unwrap_err()
                .contains("does not exist on this worker")
        );
        let twice = assignment("image = \"i\"\n", 2, vec![1, 1]);
        assert!(try_plan(&twice, &m).unwrap_err().contains("named twice"));
        let count = assignment("image = \"i\"\n", 2, vec![1]);
        assert!(
            try_plan(&count, &m)
                .unwrap_err()
                .contains("names 1 GPU indices")
        );
        let no_command = assignment("image = \"i\"\n", 1, vec![0]);
        let err = plan(
            &no_command,
            &m,
            Key([3; 32]),
            Path::new("/w"),
            RuntimeKind::Command,
        )
        .unwrap_err();
        assert!(err.contains("no `command`"), "{err}");
    }

    #[test]
    fn exits_are_described_in_words() {
        let exit = |code: Option<i32>, signal: Option<i32>, oom: bool| ExitState {
            exit_code: code,
            signal,
            oom_killed: oom,
            run_ms: None,
            finished_unix_ms: None,
        };
        assert_eq!(describe(&exit(Some(0), None, false), None, false), "exited");
        assert_eq!(
            describe(&exit(Some(3), None, false), None, false),
            "exited with code 3"
        );
        assert_eq!(
            describe(
                &exit(Some(137), Some(9), false),
                Some("the lease ended"),
                true
            ),
            "killed after the grace period: the lease ended; it ignored SIGTERM (killed by signal 9)"
        );
        assert_eq!(
            describe(
                &exit(Some(143), Some(15), false),
                Some("the lease ended"),
                false
            ),
            "stopped: the lease ended (killed by signal 15)"
        );
        assert_eq!(
            describe(&exit(Some(137), None, true), None, false),
            "killed: out of memory"
        );
    }
}
