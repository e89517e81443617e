//! Where jobs run: containers through the Docker Engine API (Docker, or Podman's compatible
//! socket), or, for trusted single-tenant machines and tests, a plain process group. Both give
//! the same handles: start, stream output, wait, signal, find again after a restart, clean up.

pub mod command;
pub mod docker;

use super::config::{RuntimeConfig, RuntimeKind};
use super::hardware::GpuSlot;
use super::store::JobRef;
use futures_util::stream::BoxStream;
use gpumesh_protocol::Key;
use gpumesh_protocol::wire::{
    CheckpointRef, ENV_CHECKPOINT_DIR, ENV_RESUME_HASH, ENV_RESUME_UNIX_MS, JobSpec, LeaseId,
    LogStream,
};
use std::path::PathBuf;
use std::time::Instant;

/// Everything a runtime needs to start one lease's job.
#[derive(Debug, Clone)]
pub struct JobPlan {
    pub lease: LeaseId,
    pub worker: Key,
    pub spec: JobSpec,
    /// The GPUs the job gets (the first `spec.gpus` of the lease's).
    pub gpus: Vec<GpuSlot>,
    /// Whether the slots are real GPUs (a CUDA worker) or nominal (a CPU worker).
    pub real_gpus: bool,
    /// Host directories mounted at `/scratch` and `/results`.
    pub scratch: PathBuf,
    pub results: PathBuf,
    pub millicpus: u32,
    pub memory_mib: u64,
    /// Checkpoints to restore before the job starts, newest first (from the assignment).
    pub restore: Vec<CheckpointRef>,
    /// The checkpoint restored into the job's checkpoint directory: the job resumes from it.
    pub resume: Option<CheckpointRef>,
}

impl JobPlan {
    /// The job's checkpoint directory on the host (under scratch), when its spec has one.
    pub fn checkpoint_dir(&self) -> Option<PathBuf> {
        self.spec
            .checkpoint
            .as_ref()
            .map(|c| self.scratch.join(&c.dir))
    }
}

/// A job just started.
#[derive(Debug, Clone)]
pub struct Started {
    pub job: JobRef,
    /// When the start call returned: the job's time is counted from here (never earlier).
    pub at: Instant,
    pub unix_ms: u64,
    /// Lines for the job's log (published ports, …).
    pub notes: Vec<String>,
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitState {
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub oom_killed: bool,
    /// The run's length by the engine's own clock, when it tells.
    pub run_ms: Option<u64>,
    /// When the engine's end time, if it tells (unix ms).
    pub finished_unix_ms: Option<u64>,
}

/// A job found again after the daemon restarted.
pub enum Adopted {
    /// Still running, the same run the daemon started.
    Running(Box<Running>),
    /// It ended while the daemon was away.
    Exited(ExitState),
    /// Not there any more, or not the run the daemon started; the reason in words.
    Lost(String),
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(
        "the container engine at {host} does not answer ({why}); start it (scripts/podman-service.sh starts Podman's Docker-compatible socket) or set [runtime] docker_host"
    )]
    Unreachable { host: String, why: String },
    #[error("image {0} is not on this worker and pulling is off ([runtime] pull_images)")]
    ImageMissing(String),
    #[error("pulling image {image} failed: {why}")]
    Pull { image: String, why: String },
    #[error("the container engine refused: {0}")]
    Engine(String),
    #[error("starting the job's command failed: {0}")]
    Spawn(String),
    #[error("{0}")]
    Refused(String),
}

/// The output of a running job: (stream, bytes) as they come.
pub type Output = BoxStream<'static, (LogStream, Vec<u8>)>;

/// The configured runtime.
pub enum Runtime {
    Docker(docker::DockerRuntime),
    Command(command::CommandRuntime),
}

impl Runtime {
    /// Connects to the engine (checking it answers) or sets up the command runtime.
    pub async fn connect(config: &RuntimeConfig, worker: Key) -> Result<Self, RuntimeError> {
        match config.kind {
            RuntimeKind::Docker => Ok(Runtime::Docker(
                docker::DockerRuntime::connect(config, worker).await?,
            )),
            RuntimeKind::Command => {
                tracing::warn!(
                    "jobs run as plain processes on this host, without isolation ([runtime] kind = \"command\"): only for trusted single-tenant machines"
                );
                Ok(Runtime::Command(command::CommandRuntime::new(worker)))
            }
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Runtime::Docker(_) => "docker",
            Runtime::Command(_) => "command",
        }
    }

    pub async fn start(&self, plan: &JobPlan) -> Result<(Running, Started), RuntimeError> {
        match self {
            Runtime::Docker(d) => {
                let (job, started) = d.start(plan).await?;
                Ok((Running::Docker(job), started))
            }
            Runtime::Command(c) => {
                let (job, started) = c.start(plan)?;
                Ok((Running::Command(job), started))
            }
        }
    }

    /// Finds a job the daemon started before it restarted.
    pub async fn adopt(&self, job: &JobRef) -> Result<Adopted, RuntimeError> {
        match self {
            Runtime::Docker(d) => d.adopt(job).await,
            Runtime::Command(c) => Ok(c.adopt(job)),
        }
    }

    /// Whether the job still runs (the same run): what a heartbeat may count up to.
    pub async fn is_running(&self, job: &JobRef) -> bool {
        match self {
            Runtime::Docker(d) => d.is_running(job).await,
            Runtime::Command(_) => command::is_running(job),
        }
    }

    /// Removes this worker's containers whose lease `keep` does not want; returns their names.
    pub async fn reap(
        &self,
        keep: &(dyn Fn(LeaseId) -> bool + Sync),
    ) -> Result<Vec<String>, RuntimeError> {
        match self {
            Runtime::Docker(d) => d.reap(keep).await,
            Runtime::Command(_) => Ok(Vec::new()),
        }
    }
}

/// A running job.
pub enum Running {
    Docker(docker::DockerJob),
    Command(command::CommandJob),
}

/// Sends signals to a running job (cloneable, so a stop can race the wait).
#[derive(Clone)]
pub enum Killer {
    Docker(docker::DockerKiller),
    Command(command::CommandKiller),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Term,
    Kill,
}

impl Killer {
    pub async fn signal(&self, signal: Signal) {
        match self {
            Killer::Docker(k) => k.signal(signal).await,
            Killer::Command(k) => k.signal(signal),
        }
    }
}

impl Running {
    /// The job's output; call once.
    pub fn output(&mut self) -> Output {
        match self {
            Running::Docker(j) => j.output(),
            Running::Command(j) => j.output(),
        }
    }

    pub async fn wait(&mut self) -> Result<ExitState, RuntimeError> {
        match self {
            Running::Docker(j) => j.wait().await,
            Running::Command(j) => j.wait().await,
        }
    }

    pub fn killer(&self) -> Killer {
        match self {
            Running::Docker(j) => Killer::Docker(j.killer()),
            Running::Command(j) => Killer::Command(j.killer()),
        }
    }

    /// Removes what is left of the job (container, stray processes).
    pub async fn cleanup(&mut self) {
        match self {
            Running::Docker(j) => j.cleanup().await,
            Running::Command(j) => j.cleanup(),
        }
    }
}

/// The environment every job gets besides its spec's.
pub fn job_env(plan: &JobPlan, scratch: &str, results: &str) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = plan
        .spec
        .env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    env.push(("GPUMESH_LEASE".into(), plan.lease.lease.to_string()));
    env.push(("GPUMESH_LEASE_NONCE".into(), plan.lease.nonce.to_string()));
    env.push(("GPUMESH_SCRATCH".into(), scratch.into()));
    env.push(("GPUMESH_RESULTS".into(), results.into()));
    env.push(("GPUMESH_GPUS".into(), plan.gpus.len().to_string()));
    if let Some(c) = &plan.spec.checkpoint {
        env.push((ENV_CHECKPOINT_DIR.into(), format!("{scratch}/{}", c.dir)));
    }
    if let Some(resume) = &plan.resume {
        env.push((ENV_RESUME_HASH.into(), gpumesh_protocol::hex(&resume.hash)));
        env.push((ENV_RESUME_UNIX_MS.into(), resume.unix_ms.to_string()));
    }
    if plan.real_gpus {
        // UUIDs name the same GPUs inside a container (which renumbers what it sees from 0) and
        // on the host.
        let visible: Vec<String> = plan
            .gpus
            .iter()
            .enumerate()
            .map(|(i, g)| g.uuid.clone().unwrap_or_else(|| i.to_string()))
            .collect();
        env.push(("CUDA_VISIBLE_DEVICES".into(), visible.join(",")));
    } else {
        // A CPU worker: no GPU is the job's, whatever the host has.
        env.push(("CUDA_VISIBLE_DEVICES".into(), String::new()));
    }
    env
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
