//! Stand-in for the CUDA backend in builds without the `cuda` feature: same names, and every
//! entry point says how to get the real one.

use crate::backend::{BackendError, ComputeBackend, DeviceInfo, Measurement, Telemetry};
use gpumesh_protocol::{Challenge, Commitment, OpenRequest, Opening};

/// Lists CUDA devices; in this build always the "not compiled" error.
pub fn detect() -> Result<Vec<DeviceInfo>, BackendError> {
    Err(BackendError::CudaNotCompiled)
}

/// Never constructed in this build.
pub struct CudaBackend {
    info: DeviceInfo,
}

impl CudaBackend {
    pub fn new(_ordinal: u32) -> Result<Self, BackendError> {
        Err(BackendError::CudaNotCompiled)
    }
}

impl ComputeBackend for CudaBackend {
    fn describe(&self) -> &DeviceInfo {
        &self.info
    }
    fn measure(&mut self) -> Result<Measurement, BackendError> {
        Err(BackendError::CudaNotCompiled)
    }
    fn telemetry(&self) -> Result<Telemetry, BackendError> {
        Err(BackendError::CudaNotCompiled)
    }
    fn commit(&mut self, _challenge: &Challenge) -> Result<Commitment, BackendError> {
        Err(BackendError::CudaNotCompiled)
    }
    fn open(&mut self, _request: &OpenRequest) -> Result<Opening, BackendError> {
        Err(BackendError::CudaNotCompiled)
    }
}
