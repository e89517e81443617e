//! The plain command runtime: the job's command runs on the host in its own process group, with
//! the scratch directory as its working directory and `GPUMESH_RESULTS` naming its results
//! directory. No isolation, no limits, no image (the spec's `image` is not used): for trusted
//! single-tenant machines and tests only, and off unless the config chooses it. A stop signals
//! the whole group; after a daemon restart a job cannot be picked up again, so its group is
//! killed and the job reported lost.

use super::{Adopted, ExitState, JobPlan, Output, RuntimeError, Signal, Started, job_env, unix_ms};
use crate::daemon::store::JobRef;
use futures_util::StreamExt;
use gpumesh_protocol::Key;
use gpumesh_protocol::wire::LogStream;
use nix::sys::signal::{Signal as NixSignal, killpg};
use nix::unistd::Pid;
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::Instant;
use tokio::io::AsyncReadExt;
use tokio::process::{Child, ChildStderr, ChildStdout, Command};

pub struct CommandRuntime {
    _worker: Key,
}

/// A process's start time in clock ticks since boot (`/proc/<pid>/stat`, field 22): with the
/// pid, it names one process even after the pid is reused.
fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let after = stat.rsplit_once(')')?.1;
    after.split_whitespace().nth(19)?.parse().ok()
}

/// Parses a command job's handle, `pid:<pid>:<start time>`.
fn parse_ref(job: &JobRef) -> Option<(u32, u64)> {
    let (pid, ticks) = job.id.strip_prefix("pid:")?.split_once(':')?;
    Some((pid.parse().ok()?, ticks.parse().ok()?))
}

/// Whether the process still runs (the same process, not a zombie).
pub fn is_running(job: &JobRef) -> bool {
    let Some((pid, ticks)) = parse_ref(job) else {
        return false;
    };
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    start_ticks(pid) == Some(ticks) && !matches!(state, Some("Z") | Some("X"))
}

impl CommandRuntime {
    pub fn new(worker: Key) -> Self {
        CommandRuntime { _worker: worker }
    }

    pub fn start(&self, plan: &JobPlan) -> Result<(CommandJob, Started), RuntimeError> {
        let Some((program, args)) = plan.spec.command.split_first() else {
            return Err(RuntimeError::Refused(
                "the command runtime runs the spec's `command`, and this spec has none".into(),
            ));
        };
        let scratch = plan.scratch.display().to_string();
        let results = plan.results.display().to_string();
        let mut cmd = Command::new(program);
        cmd.args(args)
            .env_clear()
            .env(
                "PATH",
                std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()),
            )
            .env("HOME", &scratch)
            .envs(job_env(plan, &scratch, &results))
            .current_dir(&plan.scratch)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = cmd
            .spawn()
            .map_err(|e| RuntimeError::Spawn(format!("{program}: {e}")))?;
        let at = Instant::now();
        let pid = child
            .id()
            .ok_or_else(|| RuntimeError::Spawn("no pid".into()))?;
        let ticks = start_ticks(pid).unwrap_or(0);
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        Ok((
            CommandJob {
                child,
                pid,
                stdout,
                stderr,
            },
            Started {
                job: JobRef {
                    id: format!("pid:{pid}:{ticks}"),
                    engine_started: None,
                },
                at,
                unix_ms: unix_ms(),
                notes: Vec::new(),
            },
        ))
    }

    pub fn adopt(&self, job: &JobRef) -> Adopted {
        if let Some((pid, ticks)) = parse_ref(job)
            && start_ticks(pid) == Some(ticks)
            && let Ok(raw) = i32::try_from(pid)
        {
            let _ = killpg(Pid::from_raw(raw), NixSignal::SIGKILL);
            return Adopted::Lost(
                "a command job cannot be picked up after a daemon restart; its processes were killed".into(),
            );
        }
        Adopted::Lost("its process ended while the daemon was away".into())
    }
}

pub struct CommandJob {
    child: Child,
    pid: u32,
    stdout: Option<ChildStdout>,
    stderr: Option<ChildStderr>,
}

#[derive(Clone)]
pub struct CommandKiller {
    pgid: u32,
}

impl CommandKiller {
    pub fn signal(&self, signal: Signal) {
        let sig = match signal {
            Signal::Term => NixSignal::SIGTERM,
            Signal::Kill => NixSignal::SIGKILL,
        };
        if let Ok(raw) = i32::try_from(self.pgid)
            && let Err(e) = killpg(Pid::from_raw(raw), sig)
        {
            tracing::debug!("{sig} to process group {}: {e}", self.pgid);
        }
    }
}

fn reader<R: tokio::io::AsyncRead + Unpin + Send + 'static>(
    r: Option<R>,
    stream: LogStream,
) -> Output {
    futures_util::stream::unfold(r, move |r| async move {
        let mut r = r?;
        let mut buf = vec![0u8; 64 * 1024];
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => None,
            Ok(n) => {
                buf.truncate(n);
                Some(((stream, buf), Some(r)))
            }
        }
    })
    .boxed()
}

impl CommandJob {
    pub fn output(&mut self) -> Output {
        futures_util::stream::select(
            reader(self.stdout.take(), LogStream::Stdout),
            reader(self.stderr.take(), LogStream::Stderr),
        )
        .boxed()
    }

    pub async fn wait(&mut self) -> Result<ExitState, RuntimeError> {
        let status = self
            .child
            .wait()
            .await
            .map_err(|e| RuntimeError::Spawn(e.to_string()))?;
        Ok(ExitState {
            exit_code: status.code(),
            signal: status.signal(),
            oom_killed: false,
            run_ms: None,
            finished_unix_ms: Some(unix_ms()),
        })
    }

    pub fn killer(&self) -> CommandKiller {
        CommandKiller { pgid: self.pid }
    }

    /// Kills what is left of the group (children the job left behind).
    pub fn cleanup(&self) {
        self.killer().signal(Signal::Kill);
    }
}
