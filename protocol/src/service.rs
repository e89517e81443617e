//! The worker's side of serving one lease instance: the heartbeat chain it extends and the
//! receipts it signs from it. A receipt always claims the seconds of the last heartbeat and signs
//! the chain head after it, so what the worker signs is exactly what its heartbeats showed.

use crate::heartbeat::{ChainError, HeartbeatChain, Link};
use crate::keys::Key;
use crate::receipt::SignedReceipt;
use ed25519_dalek::SigningKey;

/// One lease instance being served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseService {
    program_id: Key,
    lease: Key,
    lease_nonce: u64,
    chain: HeartbeatChain,
}

impl LeaseService {
    pub fn new(program_id: Key, lease: Key, lease_nonce: u64) -> Self {
        Self {
            program_id,
            lease,
            lease_nonce,
            chain: HeartbeatChain::new(&lease.0, lease_nonce),
        }
    }

    /// Picks a lease instance up again from its chain as stored (a daemon's restart).
    pub fn resume(program_id: Key, lease: Key, lease_nonce: u64, chain: HeartbeatChain) -> Self {
        Self {
            program_id,
            lease,
            lease_nonce,
            chain,
        }
    }

    /// The chain as it stands, to store (it is `Serialize`) and resume from.
    pub fn chain(&self) -> &HeartbeatChain {
        &self.chain
    }

    pub fn lease(&self) -> Key {
        self.lease
    }

    pub fn lease_nonce(&self) -> u64 {
        self.lease_nonce
    }

    /// Seconds served as of the last heartbeat.
    pub fn served_seconds(&self) -> u64 {
        self.chain.served_seconds()
    }

    pub fn head(&self) -> [u8; 32] {
        self.chain.head()
    }

    /// The sequence number of the last heartbeat recorded (0 before the first).
    pub fn seq(&self) -> u64 {
        self.chain.next_seq() - 1
    }

    /// Records a heartbeat: `served_seconds` so far at `unix_ms`, with its encoded telemetry.
    /// Returns the new chain head; refuses one that goes back in time or in service.
    pub fn heartbeat(
        &mut self,
        unix_ms: u64,
        served_seconds: u64,
        telemetry: &[u8],
    ) -> Result<[u8; 32], ChainError> {
        self.chain.push(Link {
            seq: self.chain.next_seq(),
            unix_ms,
            served_seconds,
            payload_digest: *blake3::hash(telemetry).as_bytes(),
        })
    }

    /// This lease's claim in a worker receipt: what [`Self::receipt`] would sign.
    pub fn entry(&self) -> crate::receipt::ReceiptEntry {
        crate::receipt::ReceiptEntry {
            lease: self.lease,
            lease_nonce: self.lease_nonce,
            served_seconds: self.chain.served_seconds(),
            chain_head: self.chain.head(),
        }
    }

    /// A receipt for everything served so far, signed with the worker's node key.
    pub fn receipt(&self, node_key: &SigningKey) -> SignedReceipt {
        SignedReceipt::sign(
            node_key,
            self.program_id,
            self.lease,
            self.lease_nonce,
            self.chain.served_seconds(),
            self.chain.head(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipts_claim_what_the_heartbeats_showed() {
        let node = SigningKey::from_bytes(&[3; 32]);
        let mut s = LeaseService::new(Key([1; 32]), Key([2; 32]), 9);
        s.heartbeat(1_000, 1, b"t=61C").expect("first");
        let head = s.heartbeat(2_000, 2, b"t=62C").expect("second");
        let r = s.receipt(&node);
        assert_eq!(
            (r.served_seconds, r.chain_head, r.lease_nonce),
            (2, head, 9)
        );
        r.verify(Some(&Key(node.verifying_key().to_bytes())))
            .expect("signed");
        assert!(
            s.heartbeat(3_000, 1, b"").is_err(),
            "service never goes back"
        );
        // Stored and resumed, the chain goes on where it stopped.
        let stored = serde_json::to_string(s.chain()).expect("store");
        let chain = serde_json::from_str(&stored).expect("load");
        let mut resumed = LeaseService::resume(Key([1; 32]), Key([2; 32]), 9, chain);
        let mut again = s.clone();
        assert_eq!(
            resumed.heartbeat(3_000, 3, b"t=63C"),
            again.heartbeat(3_000, 3, b"t=63C")
        );
        assert_eq!(resumed, again);
    }
}
