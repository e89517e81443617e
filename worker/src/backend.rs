//! The one interface every compute backend offers: say what the device is, measure it, read its
//! telemetry, and answer a challenge in two steps (commit, then open the rows asked for).

use gpumesh_protocol::challenge::{ChallengeError, PROTOCOL_VERSION};
use gpumesh_protocol::{Challenge, Commitment, GpuClass, OpenRequest, Opening};
use serde::{Deserialize, Serialize};

/// What the device is, as detected (never as claimed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceInfo {
    pub kind: DeviceKind,
    /// e.g. "NVIDIA H200", or the CPU model.
    pub name: String,
    /// "GPU-xxxxxxxx-xxxx-…" as nvidia-smi prints it; None on the CPU.
    pub uuid: Option<String>,
    /// PCI vendor (0x10de for NVIDIA) and device IDs, when NVML could tell.
    pub pci_vendor_id: Option<u16>,
    pub pci_device_id: Option<u16>,
    pub pci_bus_id: Option<String>,
    /// Device memory (system memory is not counted for the CPU: 0).
    pub vram_bytes: u64,
    /// Streaming multiprocessors, or CPU threads for the CPU backend.
    pub multiprocessors: u32,
    pub compute_capability: Option<(u32, u32)>,
    /// The class this device most likely is, from its name and memory.
    pub class: Option<GpuClass>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeviceKind {
    Cpu,
    Cuda { ordinal: u32 },
}

/// Measured (not datasheet) capability.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    /// Device-memory copy bandwidth (bytes read + bytes written per second), GB/s.
    pub memory_bandwidth_gbs: f64,
    /// Exact int8 matrix-product throughput, tera-ops per second (multiply-add = 2 ops).
    pub int8_tops: f64,
    /// The matrix size the throughput was measured at.
    pub gemm_n: u32,
}

/// Live readings, sent with heartbeats.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Telemetry {
    pub temperature_c: Option<u32>,
    pub power_w: Option<f64>,
    pub utilization_pct: Option<u32>,
    pub memory_used_bytes: Option<u64>,
    pub sm_clock_mhz: Option<u32>,
    pub memory_clock_mhz: Option<u32>,
}

/// Everything a backend can fail with; each message says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("built without CUDA support; rebuild with --features cuda")]
    CudaNotCompiled,
    #[error(
        "no NVIDIA driver found (libcuda.so not loadable); install the NVIDIA driver or use the CPU backend"
    )]
    NoDriver,
    #[error("the NVIDIA driver reports no GPU; check `nvidia-smi` or use the CPU backend")]
    NoDevice,
    #[error(
        "CUDA library {library} not loadable; add its directory (CUDA toolkit lib64 or the pip wheel's nvidia/*/lib) to LD_LIBRARY_PATH"
    )]
    MissingLibrary { library: &'static str },
    #[error(
        "CUDA driver call failed: {0}; check `nvidia-smi` and the driver version (CUDA 13 needs driver ≥ 580)"
    )]
    Driver(String),
    #[error("compiling the GPU kernels with NVRTC failed: {0}")]
    Kernel(String),
    #[error("cuBLASLt int8 product failed: {0}; check that cuBLAS ≥ 13 is on LD_LIBRARY_PATH")]
    Blas(String),
    #[error("NVML telemetry failed: {0}; check that libnvidia-ml.so comes with the driver")]
    Telemetry(String),
    #[error("telemetry is not available on the {0} backend")]
    NoTelemetry(&'static str),
    #[error(
        "challenge {n}×{n} needs {needed} bytes of device memory but {free} are free; free the GPU or refuse the challenge"
    )]
    OutOfMemory { n: u32, needed: u64, free: u64 },
    #[error("invalid challenge: {0}")]
    Challenge(#[from] ChallengeError),
    #[error(
        "challenge message version {got} is not supported (this worker speaks {PROTOCOL_VERSION}); upgrade the worker"
    )]
    UnsupportedVersion { got: u16 },
    #[error(
        "open request for challenge {requested} but the last commitment was for {committed:?}; commit first"
    )]
    NotCommitted {
        requested: u64,
        committed: Option<u64>,
    },
    #[error("open request asks for row {row} of a {n}-row answer")]
    RowOutOfRange { row: u32, n: u32 },
}

/// A device that can answer proof-of-compute challenges.
pub trait ComputeBackend: Send {
    /// What the device is.
    fn describe(&self) -> &DeviceInfo;

    /// Measures memory bandwidth and int8 product throughput (takes up to a few seconds).
    fn measure(&mut self) -> Result<Measurement, BackendError>;

    /// Current telemetry, where the device reports any.
    fn telemetry(&self) -> Result<Telemetry, BackendError>;

    /// Answer 1: generates A and B from the seed, computes C = A·B exactly, hashes its rows and
    /// returns the Merkle root. The backend keeps C (and the tree) until the next commit.
    fn commit(&mut self, challenge: &Challenge) -> Result<Commitment, BackendError>;

    /// Answer 2: the requested rows of the last committed answer, with their Merkle paths.
    fn open(&mut self, request: &OpenRequest) -> Result<Opening, BackendError>;
}

/// Checks an incoming challenge the way the verifier built it.
pub(crate) fn check_challenge(challenge: &Challenge) -> Result<(), BackendError> {
    if challenge.version != PROTOCOL_VERSION {
        return Err(BackendError::UnsupportedVersion {
            got: challenge.version,
        });
    }
    gpumesh_protocol::challenge::check_size(challenge.n)?;
    Ok(())
}

/// Checks an open request against the committed answer.
pub(crate) fn check_open_request(
    request: &OpenRequest,
    committed: Option<(u64, u32)>,
) -> Result<u32, BackendError> {
    if request.version != PROTOCOL_VERSION {
        return Err(BackendError::UnsupportedVersion {
            got: request.version,
        });
    }
    let Some((_, n)) = committed.filter(|(id, _)| *id == request.challenge_id) else {
        return Err(BackendError::NotCommitted {
            requested: request.challenge_id,
            committed: committed.map(|(id, _)| id),
        });
    };
    if let Some(&row) = request.rows.iter().find(|&&row| row >= n) {
        return Err(BackendError::RowOutOfRange { row, n });
    }
    Ok(n)
}

/// The fastest backend this build and machine offer: the first CUDA GPU, else the CPU. The
/// reason the GPU was not used comes back with the CPU backend so the daemon can log it.
pub fn best_backend() -> (Box<dyn ComputeBackend>, Option<BackendError>) {
    match crate::cuda::CudaBackend::new(0) {
        Ok(gpu) => (Box::new(gpu), None),
        Err(why) => (Box::new(crate::cpu::CpuBackend::new()), Some(why)),
    }
}
