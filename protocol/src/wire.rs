//! The wire protocol between a worker daemon and the orchestrator service: one WebSocket per
//! worker, one JSON message per text frame, every message tagged with its `type`. The daemon and
//! the service share these types, so neither can drift from the other.
//!
//! A session:
//! 1. The service opens with [`ToWorker::Welcome`]: its protocol version and a fresh random nonce.
//! 2. The daemon answers [`ToOrchestrator::Hello`]: its version, node key, worker account, the
//!    hardware it detected, and a signature by the node key over [`auth_message`] (domain ‖
//!    program id ‖ worker account ‖ nonce). The service checks the signature and the on-chain
//!    worker (registered, node key matches, staked, not jailed) and answers
//!    [`ToWorker::Ready`] with the leases the worker should be serving (a reconnect resumes
//!    them), or [`ToWorker::Error`] and closes.
//! 3. Then, in any order: heartbeats (every `heartbeat_ms`), pings for the round trip, jobs
//!    started and stopped, logs, receipts and their acknowledgements, compute challenges.
//!
//! Rules both sides keep: a frame larger than [`MAX_FRAME_BYTES`] is refused; a message that does
//! not parse, or comes out of order (anything before `Hello` is accepted, a heartbeat whose
//! sequence does not follow), gets an [`ToWorker::Error`] / [`ToOrchestrator::Error`] with a
//! [`ErrorCode`] and at worst closes that one connection. Versions: a side refuses a peer whose
//! major version differs ([`WIRE_VERSION`]).

use crate::challenge::{Challenge, Commitment, OpenRequest, Opening};
use crate::gpu::GpuClass;
use crate::keys::{Key, Signature};
use crate::receipt::{SignedReceipt, SignedWorkerReceipt};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The protocol's version: peers with a different version refuse each other with a clear error.
pub const WIRE_VERSION: u16 = 1;
/// Largest frame either side accepts (a log chunk, a challenge opening of large rows).
pub const MAX_FRAME_BYTES: usize = 1 << 20;
/// Largest chunk of job output in one [`ToOrchestrator::JobLog`].
pub const MAX_LOG_CHUNK_BYTES: usize = 64 * 1024;
/// Domain of the session signature: it can never be mistaken for a receipt or anything else.
pub const AUTH_DOMAIN: &[u8; 16] = b"gpumesh/auth/v1\0";

/// The bytes a daemon signs with its node key to open a session: domain ‖ program id ‖ worker
/// account ‖ the service's nonce. Binding the program and the worker account means a signature
/// for one market deployment or worker is worth nothing for another.
pub fn auth_message(program_id: &Key, worker: &Key, nonce: &[u8; 32]) -> Vec<u8> {
    let mut m = Vec::with_capacity(16 + 32 * 3);
    m.extend_from_slice(AUTH_DOMAIN);
    m.extend_from_slice(&program_id.0);
    m.extend_from_slice(&worker.0);
    m.extend_from_slice(nonce);
    m
}

/// Signs [`auth_message`] with the node key.
pub fn sign_auth(
    node_key: &SigningKey,
    program_id: &Key,
    worker: &Key,
    nonce: &[u8; 32],
) -> Signature {
    Signature(
        node_key
            .sign(&auth_message(program_id, worker, nonce))
            .to_bytes(),
    )
}

/// Checks a session signature (strict Ed25519).
pub fn verify_auth(
    node_key: &Key,
    program_id: &Key,
    worker: &Key,
    nonce: &[u8; 32],
    signature: &Signature,
) -> bool {
    let Ok(key) = VerifyingKey::from_bytes(&node_key.0) else {
        return false;
    };
    let sig = ed25519_dalek::Signature::from_bytes(&signature.0);
    key.verify_strict(&auth_message(program_id, worker, nonce), &sig)
        .is_ok()
}

/// Names one lease instance on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LeaseId {
    pub lease: Key,
    pub nonce: u64,
}

/// What the daemon found on its machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HardwareReport {
    /// The GPU class's code (see `gpumesh_protocol::GpuClass`).
    #[cfg_attr(feature = "openapi", schema(value_type = u8))]
    pub class: GpuClass,
    pub gpus: Vec<GpuReport>,
    /// Memory bandwidth the daemon measured with its compute backend, GB/s.
    pub measured_bandwidth_gbps: f64,
    /// `cuda` or `cpu`.
    pub backend: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GpuReport {
    pub index: u16,
    pub name: String,
    pub vram_mib: u32,
    /// PCI bus id (`0000:3b:00.0`), empty for the CPU backend.
    pub pci: String,
    pub driver: String,
}

/// One GPU's state in a heartbeat (NVML on a GPU worker).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GpuTelemetry {
    pub index: u16,
    pub temperature_c: f32,
    pub utilization_pct: f32,
    pub memory_used_mib: u32,
    pub memory_total_mib: u32,
    pub power_w: f32,
    pub sm_clock_mhz: u32,
    pub memory_clock_mhz: u32,
}

/// The machine's state in a heartbeat.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Telemetry {
    pub gpus: Vec<GpuTelemetry>,
    /// For CPU workers, and the host of GPU workers.
    pub cpu_pct: f32,
    pub memory_used_mib: u64,
    pub memory_total_mib: u64,
}

impl Telemetry {
    /// The bytes a heartbeat chain link's payload digest covers: this telemetry's JSON.
    pub fn digest_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// A lease's place in one heartbeat: the next link of its hash chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseBeat {
    pub lease: LeaseId,
    /// The chain link's sequence number (1 for the lease's first heartbeat).
    pub seq: u64,
    /// Seconds the job has really been running on this lease so far.
    pub served_seconds: u64,
    /// The chain head after this link (see [`crate::heartbeat`]); the service recomputes it.
    pub head: [u8; 32],
}

/// Sent every `heartbeat_ms`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// Counts heartbeats on this connection from 1.
    pub seq: u64,
    pub unix_ms: u64,
    pub telemetry: Telemetry,
    /// One entry per lease the worker serves.
    pub leases: Vec<LeaseBeat>,
    /// The last round trip the daemon measured from a ping, µs.
    pub rtt_us: Option<u32>,
}

/// A job as the buyer specified it (TOML on disk, see [`JobSpec::from_toml`]). Its hash on chain
/// is [`crate::job_spec_hash`] of the file's bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// A container image, e.g. `localhost/gpumesh-hello:latest`.
    pub image: String,
    /// The command and its arguments; empty runs the image's own entry point.
    #[serde(default)]
    pub command: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// GPUs the job uses (at most what the order leased on this worker).
    #[serde(default = "one")]
    pub gpus: u16,
    /// Container ports to expose (e.g. a Jupyter server).
    #[serde(default)]
    pub ports: Vec<u16>,
    /// Paths inside the container, under `/results`, whose content is hashed and uploaded.
    #[serde(default)]
    pub results: Vec<String>,
    /// The longest the job may run, seconds (0: as long as the lease).
    #[serde(default)]
    pub max_duration_s: u64,
    /// CPU cores (thousandths: 1500 = 1.5 cores) and memory the container may use (0: the
    /// daemon's defaults).
    #[serde(default)]
    pub millicpus: u32,
    #[serde(default)]
    pub memory_mib: u64,
    /// Snapshots of a directory the job keeps its state in, so that a job moved to another
    /// worker resumes from the latest one instead of starting over (absent: no checkpoints).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<CheckpointSpec>,
}

fn one() -> u16 {
    1
}

/// Where a job keeps its state and how often the daemon snapshots it (`[checkpoint]` in a spec
/// file). The daemon takes a snapshot every `interval_s` seconds and whenever the job touches
/// [`CHECKPOINT_REQUEST_FILE`] under `/scratch`; it hashes the directory (the same content
/// address as results, `gpumesh_protocol::results`), stores it in the results store, and only
/// then reports it ([`ToOrchestrator::Checkpoint`]). A job moved to another worker finds the
/// latest good snapshot restored into the directory before it starts, and is told so by
/// [`ENV_RESUME_HASH`] and [`ENV_RESUME_UNIX_MS`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointSpec {
    /// The state directory, relative to `/scratch` (e.g. `ckpt` is `/scratch/ckpt`).
    pub dir: String,
    /// Seconds between snapshots (a snapshot whose content did not change is not stored again).
    #[serde(default = "default_checkpoint_interval")]
    pub interval_s: u32,
}

fn default_checkpoint_interval() -> u32 {
    60
}

/// Shortest and longest checkpoint interval a spec may ask for, seconds.
pub const CHECKPOINT_INTERVAL_S: std::ops::RangeInclusive<u32> = 1..=86_400;
/// A file under `/scratch` the job touches to ask for a snapshot now (the daemon removes it
/// when it takes the snapshot).
pub const CHECKPOINT_REQUEST_FILE: &str = ".gpumesh-checkpoint";
/// The job's checkpoint directory inside its container (`/scratch/<dir>`).
pub const ENV_CHECKPOINT_DIR: &str = "GPUMESH_CHECKPOINT_DIR";
/// Set when the job resumes: the restored checkpoint's content hash (hex).
pub const ENV_RESUME_HASH: &str = "GPUMESH_RESUME_HASH";
/// Set when the job resumes: when the restored checkpoint was taken (Unix ms).
pub const ENV_RESUME_UNIX_MS: &str = "GPUMESH_RESUME_UNIX_MS";
/// Checkpoints an assignment offers to restore, newest first: the newest, and the ones before
/// it in case it fails its hash check.
pub const RESTORE_CANDIDATES: usize = 4;

/// A stored checkpoint: its content hash, what it holds, when and where it was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointRef {
    /// Content address of the directory (see [`crate::results`]).
    pub hash: [u8; 32],
    /// Bytes and files in it.
    pub size: u64,
    pub files: u64,
    /// When the daemon took it (Unix ms).
    pub unix_ms: u64,
    /// The lease instance whose job wrote it.
    pub lease: LeaseId,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobSpecError {
    #[error("job spec: {0}")]
    Parse(String),
    #[error("job spec: `image` is empty; name a container image")]
    NoImage,
    #[error("job spec: `gpus` is 0; a job uses at least one GPU")]
    NoGpus,
    #[error("job spec: result path {0:?} must be a relative path under /results without `..`")]
    BadResultPath(String),
    #[error("job spec: environment variable name {0:?} is not a valid name")]
    BadEnvName(String),
    #[error("job spec: checkpoint dir {0:?} must be a relative path under /scratch without `..`")]
    BadCheckpointDir(String),
    #[error("job spec: checkpoint interval_s {0} is outside 1 to 86400 seconds")]
    BadCheckpointInterval(u32),
}

/// A relative path of plain components (no `/` at the start, no `.` or `..`).
fn plain_relative(path: &str) -> bool {
    let p = std::path::Path::new(path);
    !path.is_empty()
        && !p.is_absolute()
        && p.components()
            .all(|c| matches!(c, std::path::Component::Normal(_)))
}

impl JobSpec {
    /// Parses and checks a spec file.
    pub fn from_toml(text: &str) -> Result<Self, JobSpecError> {
        let spec: JobSpec = toml::from_str(text).map_err(|e| JobSpecError::Parse(e.to_string()))?;
        spec.validate()?;
        Ok(spec)
    }

    pub fn validate(&self) -> Result<(), JobSpecError> {
        if self.image.trim().is_empty() {
            return Err(JobSpecError::NoImage);
        }
        if self.gpus == 0 {
            return Err(JobSpecError::NoGpus);
        }
        for path in &self.results {
            if !plain_relative(path) {
                return Err(JobSpecError::BadResultPath(path.clone()));
            }
        }
        if let Some(c) = &self.checkpoint {
            if !plain_relative(&c.dir) || c.dir == CHECKPOINT_REQUEST_FILE {
                return Err(JobSpecError::BadCheckpointDir(c.dir.clone()));
            }
            if !CHECKPOINT_INTERVAL_S.contains(&c.interval_s) {
                return Err(JobSpecError::BadCheckpointInterval(c.interval_s));
            }
        }
        for name in self.env.keys() {
            let ok = !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit());
            if !ok {
                return Err(JobSpecError::BadEnvName(name.clone()));
            }
        }
        Ok(())
    }
}

/// A lease the worker is to serve: start (or keep running) its job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaseAssignment {
    pub lease: LeaseId,
    pub order: Key,
    /// GPUs leased, and which of the machine's GPU indices the job gets.
    pub gpus: u16,
    pub gpu_indices: Vec<u16>,
    pub spec: JobSpec,
    /// The spec file's bytes hash to this (the order's on-chain hash); the daemon checks it.
    pub spec_hash: [u8; 32],
    /// How often to send a signed receipt, seconds.
    pub receipt_every_s: u32,
    /// The spec file's exact text, as the buyer wrote it. A hash covers bytes, not a parsed
    /// value, so this is what the daemon hashes and compares with `spec_hash` (and parses again
    /// to compare with `spec`); it refuses a job without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec_file: Option<String>,
    /// In [`ToWorker::Ready`]: where the service's copy of this lease's heartbeat chain ends.
    /// The daemon resends the heartbeats after it that the service missed when the last
    /// connection dropped, so the chain stays whole; absent (a new lease, or a service that does
    /// not report it), nothing is resent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<ChainPosition>,
    /// Checkpoints of the order to restore before the job starts, newest first (at most
    /// [`RESTORE_CANDIDATES`]): the daemon restores the first that passes its hash check and
    /// reports each it skipped. Empty: the job starts from nothing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restore: Vec<CheckpointRef>,
    /// The buyer turned the order's checkpoints off: the daemon takes none (whatever the spec
    /// says) and restores none.
    #[serde(default, skip_serializing_if = "is_false")]
    pub checkpoints_off: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// The last link of a lease's heartbeat chain that one side holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainPosition {
    /// The last link's sequence number (0: none yet, the head is the genesis).
    pub seq: u64,
    pub head: [u8; 32],
}

/// Why a job stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The lease ended (completed, cancelled, preempted, the buyer left).
    LeaseEnded,
    /// The service declared the worker down; the lease went to another worker.
    DeclaredDown,
    /// The job's spec cannot run here (more GPUs than leased, a missing image, …).
    Refused,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogStream {
    Stdout,
    Stderr,
}

/// Machine-readable error classes; the message says what to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    VersionMismatch,
    Malformed,
    TooLarge,
    OutOfOrder,
    AuthFailed,
    NotRegistered,
    Jailed,
    HardwareMismatch,
    BadReceipt,
    UnknownLease,
    Internal,
}

/// Orchestrator → worker.
// A message lives from one frame's parse to its handling; boxing the assignment would only
// make every producer write `Box::new`.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToWorker {
    Welcome {
        version: u16,
        nonce: [u8; 32],
        /// The program deployment and market the service runs.
        program_id: Key,
        market: Key,
        heartbeat_ms: u32,
        /// The service settles worker receipts: with each round of lease receipts, send one
        /// [`ToOrchestrator::WorkerReceipt`] over all the leases served (one signature pays
        /// them all on chain). Absent from an older service: send none.
        #[serde(default)]
        worker_receipts: bool,
    },
    Ready {
        worker: Key,
        /// Leases the worker should be serving (a reconnect resumes them).
        leases: Vec<LeaseAssignment>,
    },
    StartJob(LeaseAssignment),
    StopJob {
        lease: LeaseId,
        reason: StopReason,
        /// How long the job gets after SIGTERM before it is killed.
        grace_ms: u32,
    },
    /// The buyer turned the lease's order's checkpoints on or off: the job's snapshots stop
    /// (or go on as its spec says).
    Checkpoints {
        lease: LeaseId,
        enabled: bool,
    },
    /// The receipt is stored: the worker may forget receipts up to these seconds.
    ReceiptAck {
        lease: LeaseId,
        served_seconds: u64,
    },
    Ping {
        id: u64,
        unix_ms: u64,
    },
    Challenge(Challenge),
    OpenRequest(OpenRequest),
    Error {
        code: ErrorCode,
        message: String,
    },
}

/// Worker → orchestrator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToOrchestrator {
    Hello {
        version: u16,
        node_key: Key,
        worker: Key,
        hardware: HardwareReport,
        /// [`sign_auth`] over the Welcome's nonce.
        signature: Signature,
        /// The daemon's name and version, for the operator.
        agent: String,
    },
    Heartbeat(Heartbeat),
    Pong {
        id: u64,
    },
    JobStarted {
        lease: LeaseId,
        unix_ms: u64,
    },
    JobLog {
        lease: LeaseId,
        stream: LogStream,
        /// Counts chunks of this lease's output from 1, so a gap or a repeat is visible.
        seq: u64,
        data: String,
    },
    JobExited {
        lease: LeaseId,
        unix_ms: u64,
        exit_code: Option<i32>,
        /// What happened, in words (`exited`, `killed after the grace period`, `image missing`).
        status: String,
        /// Content hash of the results directory (BLAKE3 over its sorted files), if any.
        result_hash: Option<[u8; 32]>,
    },
    /// A snapshot of the job's checkpoint directory is stored (in the results store, under its
    /// hash): the order may resume from it.
    Checkpoint(CheckpointRef),
    /// Before the job started, this checkpoint was restored into its directory.
    CheckpointRestored {
        lease: LeaseId,
        hash: [u8; 32],
    },
    /// A checkpoint offered for restore was not restored: missing from the store, incomplete,
    /// or its content does not hash to its address. It is never offered again.
    CheckpointSkipped {
        lease: LeaseId,
        hash: [u8; 32],
        reason: String,
    },
    Receipt(SignedReceipt),
    /// The same claims as the round's lease receipts, under one signature over all the leases
    /// (only to a service whose Welcome asked for it); no acknowledgement of its own.
    WorkerReceipt(SignedWorkerReceipt),
    Commitment(Commitment),
    Opening(Opening),
    Error {
        code: ErrorCode,
        message: String,
    },
}

/// Encodes a message as one frame's text.
pub fn encode<T: Serialize>(message: &T) -> String {
    serde_json::to_string(message).unwrap_or_default()
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("frame of {0} bytes is over the {MAX_FRAME_BYTES}-byte limit")]
    TooLarge(usize),
    #[error("frame does not parse as a gpumesh message: {0}")]
    Malformed(String),
}

impl DecodeError {
    pub fn code(&self) -> ErrorCode {
        match self {
            DecodeError::TooLarge(_) => ErrorCode::TooLarge,
            DecodeError::Malformed(_) => ErrorCode::Malformed,
        }
    }
}

/// Decodes one frame, refusing oversized ones before parsing.
pub fn decode<T: serde::de::DeserializeOwned>(frame: &str) -> Result<T, DecodeError> {
    if frame.len() > MAX_FRAME_BYTES {
        return Err(DecodeError::TooLarge(frame.len()));
    }
    serde_json::from_str(frame).map_err(|e| DecodeError::Malformed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_signature_binds_the_program_the_worker_and_the_nonce() {
        let node = SigningKey::from_bytes(&[7; 32]);
        let key = Key(node.verifying_key().to_bytes());
        let (program, worker, nonce) = (Key([1; 32]), Key([2; 32]), [3; 32]);
        let sig = sign_auth(&node, &program, &worker, &nonce);
        assert!(verify_auth(&key, &program, &worker, &nonce, &sig));
        assert!(!verify_auth(&key, &program, &worker, &[4; 32], &sig));
        assert!(!verify_auth(&key, &program, &Key([5; 32]), &nonce, &sig));
        assert!(!verify_auth(&key, &Key([6; 32]), &worker, &nonce, &sig));
        assert!(!verify_auth(&Key([9; 32]), &program, &worker, &nonce, &sig));
    }

    #[test]
    fn messages_round_trip_and_bad_frames_get_a_code() {
        let hb = ToOrchestrator::Heartbeat(Heartbeat {
            seq: 1,
            unix_ms: 5,
            telemetry: Telemetry::default(),
            leases: vec![LeaseBeat {
                lease: LeaseId {
                    lease: Key([1; 32]),
                    nonce: 2,
                },
                seq: 1,
                served_seconds: 3,
                head: [4; 32],
            }],
            rtt_us: Some(900),
        });
        let text = encode(&hb);
        assert!(text.contains("\"type\":\"heartbeat\""), "{text}");
        assert_eq!(decode::<ToOrchestrator>(&text), Ok(hb));
        assert_eq!(
            decode::<ToOrchestrator>("{\"type\":\"nope\"}").map_err(|e| e.code()),
            Err(ErrorCode::Malformed)
        );
        let huge = "x".repeat(MAX_FRAME_BYTES + 1);
        assert_eq!(
            decode::<ToWorker>(&huge).map_err(|e| e.code()),
            Err(ErrorCode::TooLarge)
        );
    }

    #[test]
    fn job_specs_are_checked() {
        let ok = JobSpec::from_toml(
            "image = \"localhost/hello\"\ncommand = [\"sh\", \"-c\", \"echo hi\"]\nresults = [\"out.txt\"]\n[env]\nMODE = \"fast\"\n",
        )
        .expect("valid");
        assert_eq!((ok.gpus, ok.results.len()), (1, 1));
        assert_eq!(ok.checkpoint, None, "a spec without [checkpoint] has none");
        let ckpt =
            JobSpec::from_toml("image = \"x\"\n[checkpoint]\ndir = \"ckpt\"\n").expect("valid");
        assert_eq!(
            ckpt.checkpoint,
            Some(CheckpointSpec {
                dir: "ckpt".into(),
                interval_s: 60
            })
        );
        for (text, want) in [
            ("image = \"\"\n", "empty"),
            ("image = \"x\"\ngpus = 0\n", "at least one GPU"),
            (
                "image = \"x\"\nresults = [\"/etc/passwd\"]\n",
                "relative path",
            ),
            ("image = \"x\"\nresults = [\"../up\"]\n", "relative path"),
            (
                "image = \"x\"\n[env]\n\"1BAD\" = \"v\"\n",
                "not a valid name",
            ),
            ("image = \"x\"\nmounts = [\"/\"]\n", "unknown field"),
            (
                "image = \"x\"\n[checkpoint]\ndir = \"../etc\"\n",
                "under /scratch",
            ),
            (
                "image = \"x\"\n[checkpoint]\ndir = \"/ckpt\"\n",
                "under /scratch",
            ),
            (
                "image = \"x\"\n[checkpoint]\ndir = \"c\"\ninterval_s = 0\n",
                "outside 1 to 86400",
            ),
        ] {
            let err = JobSpec::from_toml(text).unwrap_err().to_string();
            assert!(err.contains(want), "{text}: {err}");
        }
    }
}
