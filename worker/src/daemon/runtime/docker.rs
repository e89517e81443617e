//! Jobs in containers through the Docker Engine API (bollard), which Docker serves and Podman
//! serves on its compatible socket. A job's container gets its image, command and environment,
//! two bind mounts (`/scratch` and `/results`, nothing else of the host), its GPUs only, CPU,
//! memory and process limits, no network unless its spec exposes ports (then those ports only,
//! published on one host address), no new privileges, and labels that mark it as this worker's.

use super::{Adopted, ExitState, JobPlan, Output, RuntimeError, Signal, Started, job_env, unix_ms};
use crate::daemon::config::{GpuMode, RuntimeConfig};
use crate::daemon::store::JobRef;
use bollard::Docker;
use bollard::container::LogOutput;
use bollard::errors::Error as DockerError;
use bollard::models::{
    ContainerCreateBody, DeviceMapping, DeviceRequest, HostConfig, HostConfigLogConfig, PortBinding,
};
use bollard::query_parameters::{
    AttachContainerOptions, CreateContainerOptions, CreateImageOptions, KillContainerOptions,
    ListContainersOptions, RemoveContainerOptions,
};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use gpumesh_protocol::Key;
use gpumesh_protocol::wire::{LeaseId, LogStream};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Labels on every container the daemon creates.
pub const LABEL_WORKER: &str = "gpumesh.worker";
pub const LABEL_LEASE: &str = "gpumesh.lease";
pub const LABEL_NONCE: &str = "gpumesh.nonce";

/// Capabilities a job never needs (beyond what Docker already drops).
const DROPPED_CAPABILITIES: &[&str] = &["NET_RAW", "MKNOD", "AUDIT_WRITE", "SYS_CHROOT", "SETFCAP"];

pub struct DockerRuntime {
    docker: Docker,
    host: String,
    worker: Key,
    config: RuntimeConfig,
}

fn engine(e: DockerError) -> RuntimeError {
    RuntimeError::Engine(e.to_string())
}

/// The engine has no such container: a 404, or Podman's 500 for one it is removing ("does not
/// exist in database: no such container").
fn is_not_found(e: &DockerError) -> bool {
    match e {
        DockerError::DockerResponseServerError {
            status_code: 404, ..
        } => true,
        DockerError::DockerResponseServerError {
            status_code: 500,
            message,
        } => message.contains("no such container"),
        _ => false,
    }
}

/// Inspects a container; None when it does not exist. Podman reports a container that has
/// exited but is not cleaned up yet in a state Docker's API does not have (`stopped`), which
/// does not parse; that lasts until its cleanup, so look again for a while.
pub async fn inspect(
    docker: &Docker,
    id: &str,
) -> Result<Option<bollard::models::ContainerInspectResponse>, DockerError> {
    let mut attempt = 0;
    loop {
        match docker.inspect_container(id, None).await {
            Ok(i) => return Ok(Some(i)),
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(DockerError::JsonDataError { .. } | DockerError::JsonSerdeError { .. })
                if attempt < 50 =>
            {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Parses the engine's RFC 3339 times (`2026-11-30T08:30:16.340416536Z`); Docker writes
/// `0001-01-01T00:00:00Z` for "never".
pub fn engine_time_ms(text: &str) -> Option<u64> {
    let t = chrono::DateTime::parse_from_rfc3339(text).ok()?;
    u64::try_from(t.timestamp_millis())
        .ok()
        .filter(|&ms| ms > 0)
}

/// The container for a job (pure: tests check what a job would get).
pub fn container_config(plan: &JobPlan, config: &RuntimeConfig) -> ContainerCreateBody {
    let env = job_env(plan, "/scratch", "/results")
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let labels = HashMap::from([
        (LABEL_WORKER.to_string(), plan.worker.to_string()),
        (LABEL_LEASE.to_string(), plan.lease.lease.to_string()),
        (LABEL_NONCE.to_string(), plan.lease.nonce.to_string()),
    ]);
    let binds = vec![
        format!("{}:/scratch:rw", plan.scratch.display()),
        format!("{}:/results:rw", plan.results.display()),
    ];
    let millicpus = if plan.millicpus > 0 {
        plan.millicpus
    } else {
        config.default_millicpus
    };
    let memory_mib = if plan.memory_mib > 0 {
        plan.memory_mib
    } else {
        config.default_memory_mib
    };
    let memory = (memory_mib > 0).then(|| i64::try_from(memory_mib << 20).unwrap_or(i64::MAX));

    let (mut device_requests, mut devices) = (None, None);
    if plan.real_gpus && !plan.gpus.is_empty() {
        let nvml_names: Vec<String> = plan
            .gpus
            .iter()
            .map(|g| {
                format!(
                    "nvidia.com/gpu={}",
                    g.nvml_index.unwrap_or(u32::from(g.index))
                )
            })
            .collect();
        match config.gpu_mode {
            GpuMode::Nvidia => {
                let ids = plan
                    .gpus
                    .iter()
                    .map(|g| g.uuid.clone().unwrap_or_else(|| g.index.to_string()))
                    .collect();
                device_requests = Some(vec![DeviceRequest {
                    driver: Some("nvidia".into()),
                    device_ids: Some(ids),
                    capabilities: Some(vec![vec!["gpu".into()]]),
                    ..Default::default()
                }]);
            }
            GpuMode::Cdi => {
                device_requests = Some(vec![DeviceRequest {
                    driver: Some("cdi".into()),
                    device_ids: Some(nvml_names),
                    ..Default::default()
                }]);
            }
            GpuMode::Podman => {
                devices = Some(
                    nvml_names
                        .into_iter()
                        .map(|name| DeviceMapping {
                            path_on_host: Some(name),
                            path_in_container: Some(String::new()),
                            cgroup_permissions: Some("rwm".into()),
                        })
                        .collect(),
                );
            }
        }
    }

    let ports: Vec<String> = plan.spec.ports.iter().map(|p| format!("{p}/tcp")).collect();
    let (network_mode, exposed_ports, port_bindings) = if ports.is_empty() {
        ("none".to_string(), None, None)
    } else {
        let bindings = ports
            .iter()
            .map(|p| {
                (
                    p.clone(),
                    Some(vec![PortBinding {
                        host_ip: Some(config.publish_address.clone()),
                        // The engine picks a free host port; the job's log says which.
                        host_port: Some(String::new()),
                    }]),
                )
            })
            .collect();
        ("bridge".to_string(), Some(ports), Some(bindings))
    };

    ContainerCreateBody {
        image: Some(plan.spec.image.clone()),
        cmd: (!plan.spec.command.is_empty()).then(|| plan.spec.command.clone()),
        env: Some(env),
        labels: Some(labels),
        exposed_ports,
        attach_stdin: Some(false),
        open_stdin: Some(false),
        tty: Some(false),
        host_config: Some(HostConfig {
            binds: Some(binds),
            network_mode: Some(network_mode),
            port_bindings,
            nano_cpus: (millicpus > 0).then(|| i64::from(millicpus) * 1_000_000),
            memory,
            // No swap beyond the memory limit.
            memory_swap: memory,
            pids_limit: (config.pids_limit > 0).then_some(config.pids_limit),
            device_requests,
            devices,
            security_opt: Some(vec!["no-new-privileges".into()]),
            cap_drop: Some(DROPPED_CAPABILITIES.iter().map(|c| c.to_string()).collect()),
            privileged: Some(false),
            // The daemon takes the output from the attach stream; an engine-side log file would
            // only fill the disk when a job floods its output.
            log_config: Some(HostConfigLogConfig {
                typ: Some("none".into()),
                config: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The engine at `docker_host` (default `$DOCKER_HOST`, else Docker's socket), its API version
/// negotiated and a ping answered; with the address it used.
pub async fn connect_engine(docker_host: Option<&str>) -> Result<(Docker, String), RuntimeError> {
    let host = docker_host
        .map(str::to_string)
        .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "unix:///var/run/docker.sock".into());
    let unreachable = |why: String| RuntimeError::Unreachable {
        host: host.clone(),
        why,
    };
    let docker = Docker::connect_with_host(&host).map_err(|e| unreachable(e.to_string()))?;
    let docker = tokio::time::timeout(Duration::from_secs(10), docker.negotiate_version())
        .await
        .map_err(|_| unreachable("no answer in 10 s".into()))?
        .map_err(|e| unreachable(e.to_string()))?;
    docker
        .ping()
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    Ok((docker, host))
}

/// Every container (running or not) that passes `filters`. Podman reports a container that is
/// being stopped in a state (`stopped`) the Docker API's listing does not define, and the whole
/// listing then fails to decode: such a listing is asked again (a few times, 200 ms apart), as
/// the state passes within moments.
pub async fn list_all(
    docker: &Docker,
    filters: HashMap<String, Vec<String>>,
) -> Result<Vec<bollard::models::ContainerSummary>, RuntimeError> {
    let mut tries = 0;
    loop {
        let listed = docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filters.clone()),
                ..Default::default()
            }))
            .await;
        match listed {
            Err(bollard::errors::Error::JsonDataError { .. }) if tries < 10 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => return other.map_err(engine),
        }
    }
}

/// The container's name for a lease instance.
pub fn container_name(lease: LeaseId) -> String {
    format!("gpumesh-{}-{}", lease.lease, lease.nonce)
}

impl DockerRuntime {
    pub async fn connect(config: &RuntimeConfig, worker: Key) -> Result<Self, RuntimeError> {
        let (docker, host) = connect_engine(config.docker_host.as_deref()).await?;
        Ok(DockerRuntime {
            docker,
            host,
            worker,
            config: config.clone(),
        })
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn client(&self) -> &Docker {
        &self.docker
    }

    async fn ensure_image(&self, image: &str) -> Result<(), RuntimeError> {
        match self.docker.inspect_image(image).await {
            Ok(_) => return Ok(()),
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(engine(e)),
        }
        if !self.config.pull_images {
            return Err(RuntimeError::ImageMissing(image.into()));
        }
        tracing::info!("pulling {image}");
        let mut pull = self.docker.create_image(
            Some(CreateImageOptions {
                from_image: Some(image.into()),
                ..Default::default()
            }),
            None,
            None,
        );
        while let Some(step) = pull.next().await {
            step.map_err(|e| RuntimeError::Pull {
                image: image.into(),
                why: e.to_string(),
            })?;
        }
        self.docker
            .inspect_image(image)
            .await
            .map(|_| ())
            .map_err(|e| RuntimeError::Pull {
                image: image.into(),
                why: e.to_string(),
            })
    }

    pub async fn start(&self, plan: &JobPlan) -> Result<(DockerJob, Started), RuntimeError> {
        self.ensure_image(&plan.spec.image).await?;
        let name = container_name(plan.lease);
        let options = || {
            Some(CreateContainerOptions {
                name: Some(name.clone()),
                ..Default::default()
            })
        };
        let created = match self
            .docker
            .create_container(options(), container_config(plan, &self.config))
            .await
        {
            Ok(created) => created,
            // A container of this name is a leftover of an earlier attempt at this lease
            // instance (the daemon stopped between creating and reporting it): replace it.
            // (Docker answers 409, Podman 500 "already in use": look instead of parsing.)
            Err(e) => {
                if !matches!(inspect(&self.docker, &name).await, Ok(Some(_))) {
                    return Err(engine(e));
                }
                self.remove(&name).await.map_err(engine)?;
                self.docker
                    .create_container(options(), container_config(plan, &self.config))
                    .await
                    .map_err(engine)?
            }
        };
        let id = created.id;
        // Attached before the start, so no output is missed however short the job.
        let output = match self.attach(&id).await {
            Ok(output) => output,
            Err(e) => {
                let _ = self.remove(&id).await;
                return Err(engine(e));
            }
        };
        if let Err(e) = self.docker.start_container(&id, None).await {
            let _ = self.remove(&id).await;
            return Err(engine(e));
        }
        let at = Instant::now();
        let unix = unix_ms();
        let inspected = match inspect(&self.docker, &id).await {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!("inspecting container {id} after its start: {e}");
                None
            }
        };
        let engine_started = inspected
            .as_ref()
            .and_then(|i| i.state.as_ref())
            .and_then(|s| s.started_at.clone());
        let mut notes = Vec::new();
        if let Some(ports) = inspected
            .and_then(|i| i.network_settings)
            .and_then(|n| n.ports)
        {
            let mut ports: Vec<_> = ports.into_iter().collect();
            ports.sort_by(|a, b| a.0.cmp(&b.0));
            for (port, bindings) in ports {
                for b in bindings.unwrap_or_default() {
                    notes.push(format!(
                        "port {port} published at {}:{}",
                        b.host_ip.unwrap_or_default(),
                        b.host_port.unwrap_or_default()
                    ));
                }
            }
        }
        let job = DockerJob {
            docker: self.docker.clone(),
            id: id.clone(),
            output: Some(output),
        };
        Ok((
            job,
            Started {
                job: JobRef { id, engine_started },
                at,
                unix_ms: unix,
                notes,
            },
        ))
    }

    async fn attach(
        &self,
        id: &str,
    ) -> Result<BoxStream<'static, Result<LogOutput, DockerError>>, DockerError> {
        let attached = self
            .docker
            .attach_container(
                id,
                Some(AttachContainerOptions {
                    stream: true,
                    stdout: true,
                    stderr: true,
                    ..Default::default()
                }),
            )
            .await?;
        Ok(attached.output)
    }

    async fn remove(&self, id: &str) -> Result<(), DockerError> {
        self.docker
            .remove_container(
                id,
                Some(RemoveContainerOptions {
                    force: true,
                    v: true,
                    ..Default::default()
                }),
            )
            .await
    }

    pub async fn adopt(&self, job: &JobRef) -> Result<Adopted, RuntimeError> {
        let Some(inspected) = inspect(&self.docker, &job.id).await.map_err(engine)? else {
            return Ok(Adopted::Lost(
                "its container is gone (removed, or the engine lost it)".into(),
            ));
        };
        let state = inspected.state.unwrap_or_default();
        if state.started_at != job.engine_started {
            let _ = self.remove(&job.id).await;
            return Ok(Adopted::Lost(
                "its container was restarted outside the daemon, so its time cannot be counted"
                    .into(),
            ));
        }
        if state.running == Some(true) {
            let output = self.attach(&job.id).await.map_err(engine)?;
            return Ok(Adopted::Running(Box::new(super::Running::Docker(
                DockerJob {
                    docker: self.docker.clone(),
                    id: job.id.clone(),
                    output: Some(output),
                },
            ))));
        }
        Ok(Adopted::Exited(exit_state(&state)))
    }

    /// Whether the container runs the same run (a state Docker's API does not know, as
    /// Podman's `stopped`, counts as not running).
    pub async fn is_running(&self, job: &JobRef) -> bool {
        match self.docker.inspect_container(&job.id, None).await {
            Ok(i) => i
                .state
                .is_some_and(|s| s.running == Some(true) && s.started_at == job.engine_started),
            Err(_) => false,
        }
    }

    pub async fn reap(
        &self,
        keep: &(dyn Fn(LeaseId) -> bool + Sync),
    ) -> Result<Vec<String>, RuntimeError> {
        let filters = HashMap::from([(
            "label".to_string(),
            vec![format!("{LABEL_WORKER}={}", self.worker)],
        )]);
        let list = list_all(&self.docker, filters).await?;
        let mut removed = Vec::new();
        for c in list {
            let labels = c.labels.unwrap_or_default();
            let lease = labels
                .get(LABEL_LEASE)
                .and_then(|l| l.parse::<Key>().ok())
                .zip(labels.get(LABEL_NONCE).and_then(|n| n.parse::<u64>().ok()))
                .map(|(lease, nonce)| LeaseId { lease, nonce });
            if lease.is_some_and(keep) {
                continue;
            }
            let Some(id) = c.id else { continue };
            let name = c
                .names
                .and_then(|n| n.into_iter().next())
                .unwrap_or_else(|| id.clone());
            match self.remove(&id).await {
                Ok(()) => removed.push(name.trim_start_matches('/').to_string()),
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(engine(e)),
            }
        }
        Ok(removed)
    }
}

fn exit_state(state: &bollard::models::ContainerState) -> ExitState {
    let started = state.started_at.as_deref().and_then(engine_time_ms);
    let finished = state.finished_at.as_deref().and_then(engine_time_ms);
    let code = state.exit_code.and_then(|c| i32::try_from(c).ok());
    ExitState {
        exit_code: code,
        // The engine reports a signal death as 128 + the signal.
        signal: code.filter(|c| (129..=159).contains(c)).map(|c| c - 128),
        oom_killed: state.oom_killed == Some(true),
        run_ms: started.zip(finished).map(|(s, f)| f.saturating_sub(s)),
        finished_unix_ms: finished,
    }
}

/// A running container.
pub struct DockerJob {
    docker: Docker,
    id: String,
    /// The attach stream (stdout and stderr multiplexed), until taken.
    output: Option<BoxStream<'static, Result<LogOutput, DockerError>>>,
}

#[derive(Clone)]
pub struct DockerKiller {
    docker: Docker,
    id: String,
}

impl DockerKiller {
    pub async fn signal(&self, signal: Signal) {
        let name = match signal {
            Signal::Term => "SIGTERM",
            Signal::Kill => "SIGKILL",
        };
        if let Err(e) = self
            .docker
            .kill_container(
                &self.id,
                Some(KillContainerOptions {
                    signal: name.into(),
                }),
            )
            .await
        {
            tracing::debug!("{name} to container {}: {e}", self.id);
        }
    }
}

impl DockerJob {
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn output(&mut self) -> Output {
        let Some(stream) = self.output.take() else {
            return futures_util::stream::empty().boxed();
        };
        stream
            .take_while(|item| {
                if let Err(e) = item {
                    tracing::debug!("log stream ended: {e}");
                }
                std::future::ready(item.is_ok())
            })
            .filter_map(|item| {
                std::future::ready(match item {
                    Ok(LogOutput::StdOut { message }) | Ok(LogOutput::Console { message }) => {
                        Some((LogStream::Stdout, message.to_vec()))
                    }
                    Ok(LogOutput::StdErr { message }) => {
                        Some((LogStream::Stderr, message.to_vec()))
                    }
                    _ => None,
                })
            })
            .boxed()
    }

    pub async fn wait(&mut self) -> Result<ExitState, RuntimeError> {
        let gone =
            || RuntimeError::Engine(format!("container {} disappeared while it ran", self.id));
        let code = loop {
            let answer = self.docker.wait_container(&self.id, None).next().await;
            match answer {
                Some(Ok(r)) => break r.status_code,
                Some(Err(DockerError::DockerContainerWaitError { code, .. })) => break code,
                Some(Err(e)) if is_not_found(&e) => return Err(gone()),
                // A timeout or a dropped connection: look, and wait again if it still runs.
                Some(Err(e)) => tracing::debug!("waiting for {}: {e}", self.id),
                None => {}
            }
            let state = inspect(&self.docker, &self.id)
                .await
                .map_err(engine)?
                .ok_or_else(gone)?
                .state
                .unwrap_or_default();
            if state.running != Some(true) {
                break state.exit_code.unwrap_or(-1);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        // The engine's own times and the memory kill, when it tells.
        let state = inspect(&self.docker, &self.id)
            .await
            .ok()
            .flatten()
            .and_then(|i| i.state)
            .unwrap_or_default();
        let mut exit = exit_state(&state);
        exit.exit_code = i32::try_from(code).ok();
        exit.signal = exit
            .exit_code
            .filter(|c| (129..=159).contains(c))
            .map(|c| c - 128);
        Ok(exit)
    }

    pub fn killer(&self) -> DockerKiller {
        DockerKiller {
            docker: self.docker.clone(),
            id: self.id.clone(),
        }
    }

    pub async fn cleanup(&mut self) {
        if let Err(e) = self
            .docker
            .remove_container(
                &self.id,
                Some(RemoveContainerOptions {
                    force: true,
                    v: true,
                    ..Default::default()
                }),
            )
            .await
            && !is_not_found(&e)
        {
            tracing::warn!("removing container {}: {e}", self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::hardware::GpuSlot;
    use gpumesh_protocol::wire::JobSpec;

    fn plan(spec: &str, gpus: Vec<GpuSlot>, real: bool) -> JobPlan {
        JobPlan {
            lease: LeaseId {
                lease: Key([1; 32]),
                nonce: 7,
            },
            worker: Key([2; 32]),
            spec: JobSpec::from_toml(spec).expect("spec"),
            gpus,
            real_gpus: real,
            scratch: "/var/lib/gpumesh/jobs/x/scratch".into(),
            results: "/var/lib/gpumesh/jobs/x/results".into(),
            millicpus: 1_500,
            memory_mib: 2_048,
            restore: vec![],
            resume: None,
        }
    }

    fn slot(index: u16) -> GpuSlot {
        GpuSlot {
            index,
            uuid: Some(format!("GPU-{index}{index}")),
            nvml_index: Some(u32::from(index) + 10),
        }
    }

    #[test]
    fn a_gpu_job_gets_its_gpus_its_mounts_and_nothing_else() {
        let p = plan(
            "image = \"localhost/train\"\ncommand = [\"python\", \"train.py\"]\ngpus = 2\n[env]\nEPOCHS = \"3\"\n",
            vec![slot(2), slot(3)],
            true,
        );
        let c = container_config(&p, &RuntimeConfig::default());
        let host = c.host_config.clone().expect("host config");
        assert_eq!(
            host.binds.expect("binds"),
            vec![
                "/var/lib/gpumesh/jobs/x/scratch:/scratch:rw",
                "/var/lib/gpumesh/jobs/x/results:/results:rw"
            ]
        );
        assert_eq!(host.network_mode.as_deref(), Some("none"));
        assert_eq!(host.nano_cpus, Some(1_500_000_000));
        assert_eq!(host.memory, Some(2_048 << 20));
        assert_eq!(host.privileged, Some(false));
        let request = &host.device_requests.expect("gpus")[0];
        assert_eq!(request.driver.as_deref(), Some("nvidia"));
        assert_eq!(
            request.device_ids.clone().expect("ids"),
            vec!["GPU-22", "GPU-33"]
        );
        let env = c.env.expect("env");
        assert!(
            env.contains(&"CUDA_VISIBLE_DEVICES=GPU-22,GPU-33".to_string()),
            "{env:?}"
        );
        assert!(env.contains(&"EPOCHS=3".to_string()));
        assert!(env.contains(&"GPUMESH_RESULTS=/results".to_string()));
        assert_eq!(c.cmd.expect("cmd"), vec!["python", "train.py"]);
        let labels = c.labels.expect("labels");
        assert_eq!(labels[LABEL_WORKER], Key([2; 32]).to_string());
        assert_eq!(labels[LABEL_NONCE], "7");

        let cdi = RuntimeConfig {
            gpu_mode: GpuMode::Cdi,
            ..Default::default()
        };
        let host = container_config(&p, &cdi).host_config.expect("host");
        assert_eq!(
            host.device_requests.expect("cdi")[0]
                .device_ids
                .clone()
                .expect("ids"),
            vec!["nvidia.com/gpu=12", "nvidia.com/gpu=13"]
        );
        let podman = RuntimeConfig {
            gpu_mode: GpuMode::Podman,
            ..Default::default()
        };
        let host = container_config(&p, &podman).host_config.expect("host");
        assert!(host.device_requests.is_none());
        assert_eq!(
            host.devices.expect("devices")[1].path_on_host.as_deref(),
            Some("nvidia.com/gpu=13")
        );
    }

    #[test]
    fn a_cpu_job_gets_no_gpu_and_ports_only_when_asked() {
        let p = plan(
            "image = \"localhost/jupyter\"\nports = [8888]\n",
            vec![slot(0)],
            false,
        );
        let c = container_config(&p, &RuntimeConfig::default());
        let host = c.host_config.clone().expect("host");
        assert!(host.device_requests.is_none() && host.devices.is_none());
        assert_eq!(host.network_mode.as_deref(), Some("bridge"));
        assert_eq!(c.exposed_ports, Some(vec!["8888/tcp".to_string()]));
        let binding = &host.port_bindings.expect("ports")["8888/tcp"];
        assert_eq!(
            binding.clone().expect("binding")[0].host_ip.as_deref(),
            Some("127.0.0.1")
        );
        assert!(
            c.env
                .expect("env")
                .contains(&"CUDA_VISIBLE_DEVICES=".to_string())
        );
        assert!(c.cmd.is_none(), "the image's own entry point");
    }

    #[test]
    fn engine_times_parse() {
        assert_eq!(
            engine_time_ms("2026-11-30T08:30:16.340416536Z"),
            Some(1_796_027_416_340)
        );
        assert_eq!(engine_time_ms("0001-01-01T00:00:00Z"), None);
        assert_eq!(engine_time_ms("yesterday"), None);
    }
}
