//! gpumesh-worker: the supplier's side of gpumesh. It finds the machine's GPUs, reads their
//! telemetry, checks them against the market's registration rule, and answers proof-of-compute
//! challenges with a backend: CUDA when built with `--features cuda` and a GPU is present, the
//! CPU otherwise (always available, so tests and GPU-less local networks work). The daemon
//! (`daemon`, binary `gpumesh-worker`) connects to the orchestrator, runs jobs in containers and
//! signs receipts for the time they ran.

pub mod backend;
pub mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;
#[cfg(not(feature = "cuda"))]
#[path = "cuda_stub.rs"]
pub mod cuda;
pub mod daemon;
pub mod examples;
pub mod gemm;
pub mod registration;

pub use backend::{
    BackendError, ComputeBackend, DeviceInfo, DeviceKind, Measurement, Telemetry, best_backend,
};
pub use cpu::CpuBackend;
pub use registration::{RegistrationRefusal, RegistrationRule};
