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
}
