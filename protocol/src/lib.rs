//! gpumesh-protocol: what crosses the wire between a worker and the orchestrator, and how each
//! side checks it: GPU classes and regions, proof of service time (receipts signed with the
//! worker's node key, the heartbeat hash chain), the job-spec hash, the results' content address, and proof of compute (the
//! seeded matrix-product challenge). It links no Solana crate: a worker daemon signs receipts
//! with this crate alone.

pub mod challenge;
pub mod exact;
pub mod generator;
pub mod gpu;
pub mod heartbeat;
pub mod jobspec;
pub mod kernels;
pub mod keys;
pub mod merkle;
pub mod receipt;
pub mod region;
pub mod results;
pub mod service;
pub mod verify;
pub mod wire;

pub use challenge::{Challenge, ChallengeError, Commitment, OpenRequest, OpenedRow, Opening};
pub use ed25519_dalek::SigningKey;
pub use gpu::{GpuClass, GpuClassError, GpuSpec};
pub use heartbeat::{HeartbeatChain, Link};
pub use jobspec::job_spec_hash;
pub use keys::{Key, Signature};
pub use merkle::{Digest, MerkleTree};
pub use receipt::{
    MAX_RECEIPT_LEASES, ReceiptEntry, ReceiptError, SignedReceipt, SignedWorkerReceipt,
    WorkerReceiptError,
};
pub use region::{Region, RegionError, RegionSet};
pub use results::{ResultsError, ResultsHasher};
pub use service::LeaseService;
pub use verify::{AwaitingCommitment, AwaitingOpening, Rejection, Verified};

/// Lowercase hexadecimal of `bytes`, as hashes are written in the API, the stores and the CLI.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The 32 bytes a 64-digit hexadecimal string (as [`hex`] writes a hash) stands for.
pub fn unhex32(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}
