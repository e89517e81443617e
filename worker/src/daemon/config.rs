//! The daemon's configuration: a TOML file for what changes rarely (paths, the market's floor,
//! the on-chain hardware claim, the container runtime), the command line and environment for
//! what names this worker (orchestrator, node key, worker account, program). Every bad value is
//! refused at start with a message that names the setting.

use ed25519_dalek::SigningKey;
use gpumesh_protocol::{GpuClass, Key};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Everything the daemon runs with, checked.
#[derive(Clone)]
pub struct Config {
    /// `ws://` or `wss://` URL of the orchestrator's worker gateway.
    pub orchestrator: String,
    /// The node key (the worker's hot key; signs sessions and receipts).
    pub node_key: SigningKey,
    /// The worker account on chain.
    pub worker: Key,
    /// The program deployment the worker is registered with.
    pub program_id: Key,
    /// The SQLite file that keeps leases, heartbeat chains and receipts across restarts.
    pub state: PathBuf,
    /// Where each job's scratch and results directories live.
    pub work_dir: PathBuf,
    pub hardware: HardwareConfig,
    pub floor: Floor,
    pub claim: Option<Claim>,
    pub runtime: RuntimeConfig,
    pub results: ResultsConfig,
    pub connection: ConnectionConfig,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("orchestrator", &self.orchestrator)
            .field(
                "node_key",
                &Key(self.node_key.verifying_key().to_bytes()).to_string(),
            )
            .field("worker", &self.worker.to_string())
            .field("program_id", &self.program_id.to_string())
            .field("state", &self.state)
            .field("work_dir", &self.work_dir)
            .field("hardware", &self.hardware)
            .field("floor", &self.floor)
            .field("claim", &self.claim)
            .field("runtime", &self.runtime)
            .field("results", &self.results)
            .field("connection", &self.connection)
            .finish()
    }
}

/// Which compute backend to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    /// CUDA when built with it and a GPU answers, else the CPU.
    #[default]
    Auto,
    /// CUDA or refuse to start.
    Cuda,
    /// The CPU backend (class `cpu`, for test networks).
    Cpu,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HardwareConfig {
    #[serde(default)]
    pub backend: BackendChoice,
}

/// The market's floor for offering a machine (`MarketParams::min_worker_vram_mib` and
/// `min_worker_bandwidth_gbps`); the defaults are the market's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Floor {
    #[serde(default = "default_min_vram_mib")]
    pub min_vram_mib: u32,
    #[serde(default = "default_min_bandwidth_gbps")]
    pub min_bandwidth_gbps: f64,
}

fn default_min_vram_mib() -> u32 {
    7_629
}

fn default_min_bandwidth_gbps() -> f64 {
    144.0
}

impl Default for Floor {
    fn default() -> Self {
        Floor {
            min_vram_mib: default_min_vram_mib(),
            min_bandwidth_gbps: default_min_bandwidth_gbps(),
        }
    }
}

/// The worker's hardware claim as registered on chain (`HardwareClaim`): the daemon refuses to
/// start on a machine that does not match it.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claim {
    /// By name: `h100`, `rtx4090`, `cpu`, …
    #[serde(deserialize_with = "class_by_name")]
    pub class: GpuClass,
    pub gpus: u16,
    /// Per GPU.
    pub vram_mib: u32,
    pub bandwidth_gbps: u32,
}

fn class_by_name<'de, D: serde::Deserializer<'de>>(d: D) -> Result<GpuClass, D::Error> {
    let name = String::deserialize(d)?;
    name.parse().map_err(serde::de::Error::custom)
}

/// How jobs run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeKind {
    /// Containers through the Docker Engine API (Docker or Podman's compatible socket).
    #[default]
    Docker,
    /// A plain process group on the host, no isolation: for trusted single-tenant machines and
    /// tests only. Off unless chosen here.
    Command,
}

/// How a container gets its GPUs (only the assigned ones, in every mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GpuMode {
    /// A device request for the `nvidia` driver naming the GPUs by UUID (Docker with the NVIDIA
    /// Container Toolkit).
    #[default]
    Nvidia,
    /// A device request for the `cdi` driver, `nvidia.com/gpu=<NVML index>` (Docker ≥ 25 with
    /// CDI specs from `nvidia-ctk cdi generate`).
    Cdi,
    /// The same CDI names as host devices, which Podman's Docker-compatible API passes to its
    /// CDI support (`podman run --device nvidia.com/gpu=0`).
    Podman,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    #[serde(default)]
    pub kind: RuntimeKind,
    /// The engine's address (`unix:///run/podman/podman.sock`, `tcp://…`); default `$DOCKER_HOST`,
    /// else `unix:///var/run/docker.sock`.
    #[serde(default)]
    pub docker_host: Option<String>,
    #[serde(default)]
    pub gpu_mode: GpuMode,
    /// Pull an image the engine does not have (off where no registry is reachable: a missing
    /// image then fails the job at once).
    #[serde(default = "yes")]
    pub pull_images: bool,
    /// CPU and memory for a job whose spec gives none (0: no limit).
    #[serde(default)]
    pub default_millicpus: u32,
    #[serde(default)]
    pub default_memory_mib: u64,
    #[serde(default = "default_pids_limit")]
    pub pids_limit: i64,
    /// Host address the ports a spec exposes are published on.
    #[serde(default = "default_publish_address")]
    pub publish_address: String,
    /// Job output held for the orchestrator per lease; beyond it output is dropped (and counted).
    #[serde(default = "default_log_buffer_bytes")]
    pub log_buffer_bytes: usize,
    /// How long a job gets after SIGTERM when its lease ends without a StopJob naming a grace.
    #[serde(default = "default_stop_grace_ms")]
    pub stop_grace_ms: u32,
}

fn yes() -> bool {
    true
}

fn default_pids_limit() -> i64 {
    4_096
}

fn default_publish_address() -> String {
    "127.0.0.1".into()
}

fn default_log_buffer_bytes() -> usize {
    4 << 20
}

fn default_stop_grace_ms() -> u32 {
    10_000
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            kind: RuntimeKind::default(),
            docker_host: None,
            gpu_mode: GpuMode::default(),
            pull_images: true,
            default_millicpus: 0,
            default_memory_mib: 0,
            pids_limit: default_pids_limit(),
            publish_address: default_publish_address(),
            log_buffer_bytes: default_log_buffer_bytes(),
            stop_grace_ms: default_stop_grace_ms(),
        }
    }
}

/// Where results go once a job ends.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, tag = "store", rename_all = "lowercase")]
pub enum ResultsConfig {
    /// A local directory, one subdirectory per content hash.
    Local { dir: PathBuf },
    /// An S3-compatible bucket (AWS S3, MinIO, Ceph RGW, R2, ...), the same layout under a key
    /// prefix.
    S3(S3Config),
}

/// `[results] store = "s3"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// `s3://bucket` or `s3://bucket/prefix`.
    pub url: String,
    /// The service's URL for a store other than AWS (`http://` is allowed: a store on the
    /// worker's own network); absent: AWS, by region.
    pub endpoint: Option<String>,
    /// Absent: `AWS_REGION`, else `us-east-1`.
    pub region: Option<String>,
    /// An access key, with `secret_access_key_file` (a file holding only the secret). Both
    /// absent: the environment's `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` (or
    /// `AWS_SESSION_TOKEN`, a web identity, the instance's role), as the AWS tools take them.
    pub access_key_id: Option<String>,
    pub secret_access_key_file: Option<PathBuf>,
}

impl Default for ResultsConfig {
    fn default() -> Self {
        ResultsConfig::Local {
            dir: PathBuf::from("/var/lib/gpumesh/results"),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionConfig {
    /// First reconnect delay; doubles per failed attempt up to `backoff_max_ms`, with jitter.
    #[serde(default = "default_backoff_initial_ms")]
    pub backoff_initial_ms: u64,
    #[serde(default = "default_backoff_max_ms")]
    pub backoff_max_ms: u64,
}

fn default_backoff_initial_ms() -> u64 {
    500
}

fn default_backoff_max_ms() -> u64 {
    30_000
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        ConnectionConfig {
            backoff_initial_ms: default_backoff_initial_ms(),
            backoff_max_ms: default_backoff_max_ms(),
        }
    }
}

impl ConnectionConfig {
    pub fn backoff_initial(&self) -> Duration {
        Duration::from_millis(self.backoff_initial_ms.max(1))
    }
    pub fn backoff_max(&self) -> Duration {
        Duration::from_millis(self.backoff_max_ms.max(self.backoff_initial_ms).max(1))
    }
}

/// The configuration file as written (every field optional; the command line fills the names).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub orchestrator: Option<String>,
    pub node_key: Option<PathBuf>,
    pub worker: Option<String>,
    pub program_id: Option<String>,
    pub state: Option<PathBuf>,
    pub work_dir: Option<PathBuf>,
    #[serde(default)]
    pub hardware: HardwareConfig,
    #[serde(default)]
    pub floor: Floor,
    pub claim: Option<Claim>,
    #[serde(default)]
    pub runtime: RuntimeConfig,
    #[serde(default)]
    pub results: ResultsConfig,
    #[serde(default)]
    pub connection: ConnectionConfig,
}

/// What the command line (or its environment variables) gives; it wins over the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub orchestrator: Option<String>,
    pub node_key: Option<PathBuf>,
    pub worker: Option<String>,
    pub program_id: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {why}")]
    File { path: PathBuf, why: String },
    #[error(
        "{0} is not set: pass --{0} (or its environment variable) or set it in the config file"
    )]
    Missing(&'static str),
    #[error("{what}: {why}")]
    Bad { what: &'static str, why: String },
    #[error("node key {path}: {why}")]
    NodeKey { path: PathBuf, why: String },
}

impl FileConfig {
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
            path: path.to_path_buf(),
            why: e.to_string(),
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::File {
            path: path.to_path_buf(),
            why: e.to_string(),
        })
    }
}

impl Config {
    /// The file's settings with the command line's on top, checked.
    pub fn resolve(file: FileConfig, over: Overrides) -> Result<Self, ConfigError> {
        let orchestrator = over
            .orchestrator
            .or(file.orchestrator)
            .ok_or(ConfigError::Missing("orchestrator"))?;
        if !(orchestrator.starts_with("ws://") || orchestrator.starts_with("wss://")) {
            return Err(ConfigError::Bad {
                what: "orchestrator",
                why: format!("{orchestrator:?} is not a ws:// or wss:// URL"),
            });
        }
        let key_path = over
            .node_key
            .or(file.node_key)
            .ok_or(ConfigError::Missing("node-key"))?;
        let node_key = read_node_key(&key_path)?;
        let worker = parse_key(
            "worker",
            &over
                .worker
                .or(file.worker)
                .ok_or(ConfigError::Missing("worker"))?,
        )?;
        let program_id = parse_key(
            "program-id",
            &over
                .program_id
                .or(file.program_id)
                .ok_or(ConfigError::Missing("program-id"))?,
        )?;
        if Key(node_key.verifying_key().to_bytes()) == worker {
            return Err(ConfigError::Bad {
                what: "worker",
                why: "the worker account is the node key's address; pass the worker account printed by `gpumesh worker register`".into(),
            });
        }
        let config = Config {
            orchestrator,
            node_key,
            worker,
            program_id,
            state: file
                .state
                .unwrap_or_else(|| PathBuf::from("/var/lib/gpumesh/worker.sqlite")),
            work_dir: file
                .work_dir
                .unwrap_or_else(|| PathBuf::from("/var/lib/gpumesh/jobs")),
            hardware: file.hardware,
            floor: file.floor,
            claim: file.claim,
            runtime: file.runtime,
            results: file.results,
            connection: file.connection,
        };
        config.check()?;
        Ok(config)
    }

    /// Range checks the file cannot express.
    pub fn check(&self) -> Result<(), ConfigError> {
        if let Some(claim) = &self.claim
            && (claim.gpus == 0 || claim.vram_mib == 0 || claim.bandwidth_gbps == 0)
        {
            return Err(ConfigError::Bad {
                what: "claim",
                why: "gpus, vram_mib and bandwidth_gbps must be above 0 (copy them from `gpumesh worker show`)".into(),
            });
        }
        if !(self.floor.min_bandwidth_gbps.is_finite() && self.floor.min_bandwidth_gbps >= 0.0) {
            return Err(ConfigError::Bad {
                what: "floor.min_bandwidth_gbps",
                why: "must be a number ≥ 0".into(),
            });
        }
        if self.runtime.log_buffer_bytes < gpumesh_protocol::wire::MAX_LOG_CHUNK_BYTES {
            return Err(ConfigError::Bad {
                what: "runtime.log_buffer_bytes",
                why: format!(
                    "must hold at least one log chunk ({} bytes)",
                    gpumesh_protocol::wire::MAX_LOG_CHUNK_BYTES
                ),
            });
        }
        if self.runtime.pids_limit < 0 {
            return Err(ConfigError::Bad {
                what: "runtime.pids_limit",
                why: "must be ≥ 0 (0: no limit)".into(),
            });
        }
        self.runtime
            .publish_address
            .parse::<std::net::IpAddr>()
            .map_err(|e| ConfigError::Bad {
                what: "runtime.publish_address",
                why: format!("{:?}: {e}", self.runtime.publish_address),
            })?;
        if let ResultsConfig::S3(s3) = &self.results {
            super::s3::parse_url(&s3.url).map_err(|why| ConfigError::Bad {
                what: "results.url",
                why,
            })?;
            if let Some(endpoint) = &s3.endpoint
                && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
            {
                return Err(ConfigError::Bad {
                    what: "results.endpoint",
                    why: format!("{endpoint:?} is not an http:// or https:// URL"),
                });
            }
            if s3.access_key_id.is_some() != s3.secret_access_key_file.is_some() {
                return Err(ConfigError::Bad {
                    what: "results.access_key_id",
                    why: "set access_key_id and secret_access_key_file together, or neither (the \
                          environment's AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are used then)"
                        .into(),
                });
            }
        }
        Ok(())
    }
}

fn parse_key(what: &'static str, text: &str) -> Result<Key, ConfigError> {
    text.parse().map_err(
        |e: gpumesh_protocol::keys::ParseKeyError| ConfigError::Bad {
            what,
            why: e.to_string(),
        },
    )
}

/// Reads a Solana keypair file: a JSON array of 64 bytes, the ed25519 secret then its public
/// key. The public half must match the secret (a file cut and pasted together is refused).
pub fn read_node_key(path: &Path) -> Result<SigningKey, ConfigError> {
    let err = |why: String| ConfigError::NodeKey {
        path: path.to_path_buf(),
        why,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    parse_node_key(&text).map_err(err)
}

/// Parses a Solana keypair file's text.
pub fn parse_node_key(text: &str) -> Result<SigningKey, String> {
    let bytes: Vec<u8> = serde_json::from_str(text.trim()).map_err(|e| {
        format!("not a JSON array of bytes ({e}); create one with `gpumesh keys new -o node.json`")
    })?;
    let bytes: [u8; 64] = bytes.try_into().map_err(|b: Vec<u8>| {
        format!(
            "{} bytes where a keypair has 64 (32 secret, 32 public)",
            b.len()
        )
    })?;
    let mut secret = [0u8; 32];
    secret.copy_from_slice(&bytes[..32]);
    let key = SigningKey::from_bytes(&secret);
    if key.verifying_key().to_bytes()[..] != bytes[32..] {
        return Err("the public half does not belong to the secret half".into());
    }
    Ok(key)
}

/// Writes a key as a Solana keypair file (tests and tools).
pub fn node_key_json(key: &SigningKey) -> String {
    let mut bytes = key.to_bytes().to_vec();
    bytes.extend_from_slice(&key.verifying_key().to_bytes());
    serde_json::to_string(&bytes).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_keys_are_read_as_solana_keypair_files() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let text = node_key_json(&key);
        assert_eq!(
            parse_node_key(&text).expect("valid").to_bytes(),
            key.to_bytes()
        );
        let mut bytes: Vec<u8> = serde_json::from_str(&text).expect("json");
        bytes[40] ^= 1;
        let err = parse_node_key(&serde_json::to_string(&bytes).expect("json")).unwrap_err();
        assert!(err.contains("does not belong"), "{err}");
        let err = parse_node_key("[1,2,3]").unwrap_err();
        assert!(err.contains("3 bytes"), "{err}");
        let err = parse_node_key("secret").unwrap_err();
        assert!(err.contains("JSON array"), "{err}");
    }

    #[test]
    fn the_file_is_checked_and_the_command_line_wins() {
        let dir = std::env::temp_dir().join(format!("gpumesh-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let key_path = dir.join("node.json");
        std::fs::write(&key_path, node_key_json(&SigningKey::from_bytes(&[3; 32]))).expect("key");
        let file: FileConfig = toml::from_str(&format!(
            "orchestrator = \"ws://a\"\nnode_key = {key_path:?}\nworker = \"{}\"\nprogram_id = \"{}\"\n[floor]\nmin_bandwidth_gbps = 5\n[claim]\nclass = \"cpu\"\ngpus = 1\nvram_mib = 1000\nbandwidth_gbps = 10\n[runtime]\nkind = \"command\"\n[results]\nstore = \"local\"\ndir = \"/tmp/r\"\n",
            Key([1; 32]),
            Key([2; 32])
        ))
        .expect("parses");
        let over = Overrides {
            orchestrator: Some("ws://b".into()),
            ..Default::default()
        };
        let config = Config::resolve(file.clone(), over).expect("valid");
        assert_eq!(config.orchestrator, "ws://b");
        assert_eq!(config.runtime.kind, RuntimeKind::Command);
        assert_eq!(config.claim.map(|c| c.class), Some(GpuClass::Cpu));
        assert_eq!(config.floor.min_vram_mib, 7_629);

        let bad = Overrides {
            orchestrator: Some("http://b".into()),
            ..Default::default()
        };
        let err = Config::resolve(file.clone(), bad).unwrap_err().to_string();
        assert!(err.contains("ws://"), "{err}");
        let err = toml::from_str::<FileConfig>("[runtime]\nprivileged = true\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field"), "{err}");
        let with_worker = file.clone();
        let mut no_worker = file;
        no_worker.worker = None;
        let err = Config::resolve(no_worker, Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("--worker"), "{err}");

        // An S3 store: read from the file, each bad setting named.
        let s3 = |results: &str| {
            let mut file = with_worker.clone();
            file.results = toml::from_str::<FileConfig>(&format!("[results]\n{results}"))
                .map_err(|e| e.to_string())?
                .results;
            Config::resolve(file, Overrides::default()).map_err(|e| e.to_string())
        };
        let ok = s3("store = \"s3\"\nurl = \"s3://results/fleet\"\nendpoint = \"http://10.0.0.5:9000\"\naccess_key_id = \"AK\"\nsecret_access_key_file = \"/etc/gpumesh/s3-secret\"\n").expect("valid");
        match ok.results {
            ResultsConfig::S3(c) => {
                assert_eq!(c.url, "s3://results/fleet");
                assert_eq!(c.endpoint.as_deref(), Some("http://10.0.0.5:9000"));
            }
            other => panic!("{other:?}"),
        }
        for (results, says) in [
            ("store = \"s3\"\nurl = \"results/fleet\"\n", "results.url"),
            (
                "store = \"s3\"\nurl = \"s3://b\"\nendpoint = \"10.0.0.5:9000\"\n",
                "results.endpoint",
            ),
            (
                "store = \"s3\"\nurl = \"s3://b\"\naccess_key_id = \"AK\"\n",
                "secret_access_key_file",
            ),
            (
                "store = \"s3\"\nurl = \"s3://b\"\nsecret = \"x\"\n",
                "unknown field",
            ),
            ("store = \"ftp\"\n", "unknown variant"),
        ] {
            let err = s3(results).expect_err(results);
            assert!(err.contains(says), "{results}: {err}");
        }
        std::fs::remove_dir_all(&dir).ok();
    }
}
