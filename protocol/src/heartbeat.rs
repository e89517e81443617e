//! The heartbeat hash chain: each heartbeat a worker sends on a lease links to the one before by
//! hash, so the chain head a receipt signs commits to every heartbeat up to it. Whoever holds the
//! heartbeats (the orchestrator, a buyer auditing a dispute) can recompute the head and see that
//! nothing was dropped, reordered or made up afterwards.
//!
//! The algorithm, as written down here and nowhere else:
//! - genesis = BLAKE3 keyed with `derive_key("gpumesh 2026-11 heartbeat genesis v1")` over
//!   lease (32 bytes) ‖ lease nonce (u64 LE): one chain per lease instance;
//! - head(n) = BLAKE3 keyed with `derive_key("gpumesh 2026-11 heartbeat link v1")` over
//!   head(n − 1) ‖ seq (u64 LE) ‖ unix time in ms (u64 LE) ‖ served seconds (u64 LE) ‖
//!   payload digest (32 bytes), where seq counts from 1 and the payload digest is the BLAKE3 hash
//!   of the heartbeat's encoded telemetry (what the wire protocol carries).

use serde::{Deserialize, Serialize};
use std::sync::OnceLock;

const GENESIS_CONTEXT: &str = "gpumesh 2026-11 heartbeat genesis v1";
const LINK_CONTEXT: &str = "gpumesh 2026-11 heartbeat link v1";

fn key(context: &'static str, cell: &'static OnceLock<[u8; 32]>) -> &'static [u8; 32] {
    cell.get_or_init(|| blake3::derive_key(context, b""))
}

/// The first head of a lease instance's chain.
pub fn genesis(lease: &[u8; 32], lease_nonce: u64) -> [u8; 32] {
    static KEY: OnceLock<[u8; 32]> = OnceLock::new();
    let mut h = blake3::Hasher::new_keyed(key(GENESIS_CONTEXT, &KEY));
    h.update(lease);
    h.update(&lease_nonce.to_le_bytes());
    *h.finalize().as_bytes()
}

/// One heartbeat's place in the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    /// 1 for the first heartbeat of a lease instance, then one more each time.
    pub seq: u64,
    pub unix_ms: u64,
    /// Cumulative seconds served on the lease when it was sent.
    pub served_seconds: u64,
    /// BLAKE3 of the heartbeat's encoded telemetry.
    pub payload_digest: [u8; 32],
}

impl Link {
    /// The head after this link, given the head before it.
    pub fn head_after(&self, previous: &[u8; 32]) -> [u8; 32] {
        static KEY: OnceLock<[u8; 32]> = OnceLock::new();
        let mut h = blake3::Hasher::new_keyed(key(LINK_CONTEXT, &KEY));
        h.update(previous);
        h.update(&self.seq.to_le_bytes());
        h.update(&self.unix_ms.to_le_bytes());
        h.update(&self.served_seconds.to_le_bytes());
        h.update(&self.payload_digest);
        *h.finalize().as_bytes()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error(
        "heartbeat {got} arrived where {expected} was due: one was dropped, repeated or reordered"
    )]
    OutOfOrder { expected: u64, got: u64 },
    #[error("heartbeat {seq} goes back in time or in served seconds")]
    Backwards { seq: u64 },
    #[error("the recomputed head does not match the claimed one")]
    HeadMismatch,
}

/// A lease instance's chain as a worker extends it or an auditor replays it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatChain {
    head: [u8; 32],
    last: Option<Link>,
}

impl HeartbeatChain {
    pub fn new(lease: &[u8; 32], lease_nonce: u64) -> Self {
        Self {
            head: genesis(lease, lease_nonce),
            last: None,
        }
    }

    pub fn head(&self) -> [u8; 32] {
        self.head
    }

    /// Continues a chain from a point the caller did not replay itself (a service that restarted
    /// takes the worker's next head as the base): the next link must carry `seq + 1`.
    pub fn resume(seq: u64, served_seconds: u64, unix_ms: u64, head: [u8; 32]) -> Self {
        Self {
            head,
            last: Some(Link {
                seq,
                unix_ms,
                served_seconds,
                payload_digest: [0; 32],
            }),
        }
    }

    /// The sequence number the next heartbeat must carry.
    pub fn next_seq(&self) -> u64 {
        self.last.map_or(1, |l| l.seq + 1)
    }

    /// Seconds served as of the last heartbeat.
    pub fn served_seconds(&self) -> u64 {
        self.last.map_or(0, |l| l.served_seconds)
    }

    /// The last heartbeat pushed, if any.
    pub fn last(&self) -> Option<Link> {
        self.last
    }

    /// Appends a heartbeat; refuses one that is out of order or goes backwards.
    pub fn push(&mut self, link: Link) -> Result<[u8; 32], ChainError> {
        let expected = self.next_seq();
        if link.seq != expected {
            return Err(ChainError::OutOfOrder {
                expected,
                got: link.seq,
            });
        }
        if let Some(last) = self.last
            && (link.unix_ms < last.unix_ms || link.served_seconds < last.served_seconds)
        {
            return Err(ChainError::Backwards { seq: link.seq });
        }
        self.head = link.head_after(&self.head);
        self.last = Some(link);
        Ok(self.head)
    }

    /// Replays `links` from genesis and checks they end at `claimed`.
    pub fn verify(
        lease: &[u8; 32],
        lease_nonce: u64,
        links: &[Link],
        claimed: &[u8; 32],
    ) -> Result<(), ChainError> {
        let mut chain = Self::new(lease, lease_nonce);
        for link in links {
            chain.push(*link)?;
        }
        if chain.head == *claimed {
            Ok(())
        } else {
            Err(ChainError::HeadMismatch)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(seq: u64, served: u64) -> Link {
        Link {
            seq,
            unix_ms: 1_000 * seq,
            served_seconds: served,
            payload_digest: *blake3::hash(&seq.to_le_bytes()).as_bytes(),
        }
    }

    #[test]
    fn the_head_commits_to_every_heartbeat_in_order() {
        let lease = [4; 32];
        let mut chain = HeartbeatChain::new(&lease, 2);
        let links: Vec<Link> = (1..=5).map(|s| link(s, s)).collect();
        for l in &links {
            chain.push(*l).expect("in order");
        }
        let head = chain.head();
        HeartbeatChain::verify(&lease, 2, &links, &head).expect("replays");
        // Another instance of the same lease has another chain.
        assert_eq!(
            HeartbeatChain::verify(&lease, 3, &links, &head),
            Err(ChainError::HeadMismatch)
        );
        // A dropped, a changed or a reordered heartbeat is caught.
        let mut dropped = links.clone();
        dropped.remove(2);
        assert!(HeartbeatChain::verify(&lease, 2, &dropped, &head).is_err());
        let mut changed = links.clone();
        changed[1].payload_digest[0] ^= 1;
        assert_eq!(
            HeartbeatChain::verify(&lease, 2, &changed, &head),
            Err(ChainError::HeadMismatch)
        );
        let mut swapped = links;
        swapped.swap(0, 1);
        assert!(matches!(
            HeartbeatChain::verify(&lease, 2, &swapped, &head),
            Err(ChainError::OutOfOrder { .. })
        ));
    }

    #[test]
    fn time_and_service_never_go_backwards() {
        let mut chain = HeartbeatChain::new(&[0; 32], 0);
        chain.push(link(1, 10)).expect("first");
        assert_eq!(
            chain.push(link(2, 9)),
            Err(ChainError::Backwards { seq: 2 })
        );
        assert_eq!(chain.next_seq(), 2);
        assert_eq!(chain.served_seconds(), 10);
    }
}
