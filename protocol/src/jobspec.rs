//! The job-spec hash that goes on chain with an order. There is one algorithm, so the buyer, the
//! orchestrator and anyone auditing an order compute the same 32 bytes from the same file:
//! BLAKE3 keyed with `derive_key("gpumesh 2026-11 job spec v1")` over the spec file's exact
//! bytes. The key separates it from every other BLAKE3 use in gpumesh (the proof-of-compute
//! Merkle tree, the heartbeat chain).

use std::sync::OnceLock;

const CONTEXT: &str = "gpumesh 2026-11 job spec v1";

/// The hash of a job specification, as the order stores it.
pub fn job_spec_hash(spec: &[u8]) -> [u8; 32] {
    static KEY: OnceLock<[u8; 32]> = OnceLock::new();
    let key = KEY.get_or_init(|| blake3::derive_key(CONTEXT, b""));
    *blake3::keyed_hash(key, spec).as_bytes()
}

/// Domain of a buyer's signature over a spec upload.
pub const UPLOAD_DOMAIN: &[u8; 24] = b"gpumesh/spec-upload/v1\0\0";

/// The bytes a buyer's wallet signs to upload a job spec for an order: domain ‖ order account ‖
/// the spec's hash. The orchestrator accepts the upload only from the order's buyer and only when
/// the hash is the one on chain.
pub fn upload_message(order: &[u8; 32], spec: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(24 + 64);
    m.extend_from_slice(UPLOAD_DOMAIN);
    m.extend_from_slice(order);
    m.extend_from_slice(&job_spec_hash(spec));
    m
}

/// Domain of [`logs_message`].
pub const LOGS_DOMAIN: &[u8; 24] = b"gpumesh/job-logs/v1\0\0\0\0\0";

/// How far from the service's clock a signed logs request may be dated, ms.
pub const LOGS_SIGNATURE_WINDOW_MS: u64 = 300_000;

/// The bytes a buyer's wallet signs to read an order's job output (the stored tail or the live
/// feed): domain ‖ order account ‖ the request's Unix time in ms (little-endian). The service
/// accepts it from the order's buyer within [`LOGS_SIGNATURE_WINDOW_MS`] of its own clock.
pub fn logs_message(order: &[u8; 32], unix_ms: u64) -> Vec<u8> {
    let mut m = Vec::with_capacity(24 + 32 + 8);
    m.extend_from_slice(LOGS_DOMAIN);
    m.extend_from_slice(order);
    m.extend_from_slice(&unix_ms.to_le_bytes());
    m
}

/// Domain of [`checkpoints_message`].
pub const CHECKPOINTS_DOMAIN: &[u8; 24] = b"gpumesh/checkpoints/v1\0\0";

/// The bytes a buyer's wallet signs to turn an order's checkpoints on or off: domain ‖ order
/// account ‖ 1 (on) or 0 (off) ‖ the request's Unix time in ms (little-endian). The service
/// accepts it from the order's buyer within [`LOGS_SIGNATURE_WINDOW_MS`] of its own clock.
pub fn checkpoints_message(order: &[u8; 32], enabled: bool, unix_ms: u64) -> Vec<u8> {
    let mut m = Vec::with_capacity(24 + 32 + 1 + 8);
    m.extend_from_slice(CHECKPOINTS_DOMAIN);
    m.extend_from_slice(order);
    m.push(u8::from(enabled));
    m.extend_from_slice(&unix_ms.to_le_bytes());
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_keyed_and_depends_on_every_byte() {
        let spec = b"image = \"pytorch/pytorch\"\n";
        let h = job_spec_hash(spec);
        assert_ne!(h, *blake3::hash(spec).as_bytes(), "not the plain hash");
        let mut other = spec.to_vec();
        other[0] ^= 1;
        assert_ne!(job_spec_hash(&other), h);
        assert_eq!(job_spec_hash(spec), h, "deterministic");
    }

    #[test]
    fn signed_messages_are_apart_by_domain_and_bound_to_their_fields() {
        let order = [7u8; 32];
        let logs = logs_message(&order, 1_000);
        assert_eq!(logs.len(), 24 + 32 + 8);
        assert_ne!(logs, logs_message(&order, 1_001));
        assert_ne!(logs, logs_message(&[8; 32], 1_000));
        assert_ne!(logs[..24], upload_message(&order, b"x")[..24]);
        let off = checkpoints_message(&order, false, 1_000);
        assert_ne!(off, checkpoints_message(&order, true, 1_000));
        assert_ne!(off[..24], logs[..24]);
    }
}
