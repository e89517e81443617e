//! gpumesh-protocol: what crosses the wire between a worker and the orchestrator, and how each
//! side checks it. Today: GPU classes and the proof-of-compute challenge; heartbeats and
//! receipts (proof of service time) join as sibling modules.

pub mod challenge;
pub mod exact;
pub mod generator;
pub mod gpu;
pub mod kernels;
pub mod merkle;
pub mod region;
pub mod verify;

pub use challenge::{Challenge, ChallengeError, Commitment, OpenRequest, OpenedRow, Opening};
pub use gpu::{GpuClass, GpuClassError, GpuSpec};
pub use merkle::{Digest, MerkleTree};
pub use region::{Region, RegionError};
pub use verify::{AwaitingCommitment, AwaitingOpening, Rejection, Verified};
