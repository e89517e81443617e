//! gpumesh-layout: the bytes and limits that both sides of the chain must agree on, written once.
//! The on-chain program builds the receipt message it checks from here; the worker daemon signs
//! the same bytes through `gpumesh-protocol` without linking any Solana crate. No dependencies
//! and no `std`, so it compiles for SBF as it is.

#![no_std]

/// Slots in the market's per-class reference-price table: GPU class codes are below this.
pub const GPU_CLASS_SLOTS: usize = 16;

/// Region codes are bit positions of a `u64` region set, so they are below this.
pub const REGION_SLOTS: u8 = 64;

/// The message a worker's node key signs to claim served time on one lease instance.
pub mod receipt {
    /// Domain separator: a receipt signature can never be mistaken for any other signed message.
    pub const DOMAIN: [u8; 20] = *b"gpumesh/receipt/v2\0\0";
    /// Length of the message.
    pub const MESSAGE_LEN: usize = 20 + 32 + 32 + 8 + 8 + 32;

    const PROGRAM: usize = 20;
    const LEASE: usize = PROGRAM + 32;
    const NONCE: usize = LEASE + 32;
    const SECONDS: usize = NONCE + 8;
    const HEAD: usize = SECONDS + 8;

    /// What a receipt claims.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Fields {
        /// The program deployment the receipt is for.
        pub program_id: [u8; 32],
        /// The lease account's address: it pins the market, the order and the worker.
        pub lease: [u8; 32],
        /// The lease instance's nonce: the same address comes back when the same order and
        /// worker meet again, and an old receipt must not pay on the new instance.
        pub lease_nonce: u64,
        /// Cumulative seconds served on the lease.
        pub served_seconds: u64,
        /// Head of the worker's heartbeat hash chain when it signed.
        pub chain_head: [u8; 32],
    }

    impl Fields {
        /// The bytes signed: domain ‖ program id ‖ lease ‖ nonce (LE) ‖ seconds (LE) ‖ chain head.
        pub fn message(&self) -> [u8; MESSAGE_LEN] {
            let mut m = [0u8; MESSAGE_LEN];
            m[..PROGRAM].copy_from_slice(&DOMAIN);
            m[PROGRAM..LEASE].copy_from_slice(&self.program_id);
            m[LEASE..NONCE].copy_from_slice(&self.lease);
            m[NONCE..SECONDS].copy_from_slice(&self.lease_nonce.to_le_bytes());
            m[SECONDS..HEAD].copy_from_slice(&self.served_seconds.to_le_bytes());
            m[HEAD..].copy_from_slice(&self.chain_head);
            m
        }

        /// Reads a message back; `None` unless it has this layout and domain.
        pub fn parse(message: &[u8]) -> Option<Fields> {
            if message.len() != MESSAGE_LEN || message[..PROGRAM] != DOMAIN {
                return None;
            }
            let key = |at: usize| -> Option<[u8; 32]> { message.get(at..at + 32)?.try_into().ok() };
            let word = |at: usize| -> Option<u64> {
                Some(u64::from_le_bytes(
                    message.get(at..at + 8)?.try_into().ok()?,
                ))
            };
            Some(Fields {
                program_id: key(PROGRAM)?,
                lease: key(LEASE)?,
                lease_nonce: word(NONCE)?,
                served_seconds: word(SECONDS)?,
                chain_head: key(HEAD)?,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::receipt::*;

    #[test]
    fn the_receipt_layout_is_stable_and_round_trips() {
        let f = Fields {
            program_id: [1; 32],
            lease: [2; 32],
            lease_nonce: 5,
            served_seconds: 7,
            chain_head: [3; 32],
        };
        let m = f.message();
        assert_eq!(MESSAGE_LEN, 132);
        assert_eq!(&m[..18], b"gpumesh/receipt/v2");
        assert_eq!(m[20], 1);
        assert_eq!(m[52], 2);
        assert_eq!(&m[84..92], &5u64.to_le_bytes());
        assert_eq!(&m[92..100], &7u64.to_le_bytes());
        assert_eq!(m[131], 3);
        assert_eq!(Fields::parse(&m), Some(f));
        assert_eq!(Fields::parse(&m[..131]), None);
        let mut other = m;
        other[0] ^= 1;
        assert_eq!(Fields::parse(&other), None);
    }
}
