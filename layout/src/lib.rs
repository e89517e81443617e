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

/// The message a worker's node key signs to claim served time on all its leases at once: one
/// signature settles every lease the worker serves, so the signature fees per GPU-hour fall
/// with the number of GPUs and leases a settlement covers.
pub mod worker_receipt {
    /// Domain separator, distinct from the single-lease receipt's.
    pub const DOMAIN: [u8; 20] = *b"gpumesh/wreceipt/v1\0";
    /// Most leases one worker receipt covers.
    pub const MAX_LEASES: usize = 16;
    /// domain ‖ program id ‖ worker account ‖ entry count (u8).
    pub const HEADER_LEN: usize = 20 + 32 + 32 + 1;
    /// lease ‖ nonce (LE) ‖ cumulative seconds (LE) ‖ chain head.
    pub const ENTRY_LEN: usize = 32 + 8 + 8 + 32;

    const PROGRAM: usize = 20;
    const WORKER: usize = PROGRAM + 32;
    const COUNT: usize = WORKER + 32;

    /// The length of a message with `count` entries.
    pub const fn message_len(count: usize) -> usize {
        HEADER_LEN + count * ENTRY_LEN
    }

    /// One lease's claim, as in a single-lease receipt.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Entry {
        pub lease: [u8; 32],
        pub lease_nonce: u64,
        pub served_seconds: u64,
        pub chain_head: [u8; 32],
    }

    /// Writes the message into `out` (at least `message_len(entries.len())` bytes); returns its
    /// length, or `None` for no entries, too many, or too small a buffer.
    pub fn write(
        program_id: &[u8; 32],
        worker: &[u8; 32],
        entries: &[Entry],
        out: &mut [u8],
    ) -> Option<usize> {
        let len = message_len(entries.len());
        if entries.is_empty() || entries.len() > MAX_LEASES || out.len() < len {
            return None;
        }
        out[..PROGRAM].copy_from_slice(&DOMAIN);
        out[PROGRAM..WORKER].copy_from_slice(program_id);
        out[WORKER..COUNT].copy_from_slice(worker);
        out[COUNT] = entries.len() as u8;
        for (i, e) in entries.iter().enumerate() {
            let at = HEADER_LEN + i * ENTRY_LEN;
            out[at..at + 32].copy_from_slice(&e.lease);
            out[at + 32..at + 40].copy_from_slice(&e.lease_nonce.to_le_bytes());
            out[at + 40..at + 48].copy_from_slice(&e.served_seconds.to_le_bytes());
            out[at + 48..at + 80].copy_from_slice(&e.chain_head);
        }
        Some(len)
    }

    /// A message read back, without copying its entries.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Parsed<'a> {
        pub program_id: &'a [u8],
        pub worker: &'a [u8],
        entries: &'a [u8],
    }

    impl<'a> Parsed<'a> {
        /// `None` unless `message` has this layout and domain, 1 ..= MAX_LEASES entries and
        /// exactly the length they take.
        pub fn new(message: &'a [u8]) -> Option<Self> {
            if message.len() < HEADER_LEN || message[..PROGRAM] != DOMAIN {
                return None;
            }
            let count = message[COUNT] as usize;
            if count == 0 || count > MAX_LEASES || message.len() != message_len(count) {
                return None;
            }
            Some(Parsed {
                program_id: &message[PROGRAM..WORKER],
                worker: &message[WORKER..COUNT],
                entries: &message[HEADER_LEN..],
            })
        }

        pub fn count(&self) -> usize {
            self.entries.len() / ENTRY_LEN
        }

        pub fn entry(&self, i: usize) -> Option<Entry> {
            let e = self.entries.get(i * ENTRY_LEN..(i + 1) * ENTRY_LEN)?;
            let key = |at: usize| -> Option<[u8; 32]> { e.get(at..at + 32)?.try_into().ok() };
            let word = |at: usize| -> Option<u64> {
                Some(u64::from_le_bytes(e.get(at..at + 8)?.try_into().ok()?))
            };
            Some(Entry {
                lease: key(0)?,
                lease_nonce: word(32)?,
                served_seconds: word(40)?,
                chain_head: key(48)?,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::receipt::*;

    #[test]
    fn the_worker_receipt_layout_is_stable_and_round_trips() {
        use super::worker_receipt::{self as w, Entry, Parsed};
        let entries = [
            Entry {
                lease: [4; 32],
                lease_nonce: 1,
                served_seconds: 60,
                chain_head: [5; 32],
            },
            Entry {
                lease: [6; 32],
                lease_nonce: 2,
                served_seconds: 90,
                chain_head: [7; 32],
            },
        ];
        let mut buf = [0u8; w::message_len(2)];
        assert_eq!(w::write(&[1; 32], &[2; 32], &entries, &mut buf), Some(245));
        assert_eq!(&buf[..19], b"gpumesh/wreceipt/v1");
        assert_eq!(buf[20], 1);
        assert_eq!(buf[52], 2);
        assert_eq!(buf[84], 2, "the entry count");
        assert_eq!(buf[85], 4, "the first lease");
        assert_eq!(&buf[117..125], &1u64.to_le_bytes());
        assert_eq!(&buf[125..133], &60u64.to_le_bytes());
        let p = Parsed::new(&buf).unwrap();
        assert_eq!((p.program_id, p.worker), (&[1u8; 32][..], &[2u8; 32][..]));
        assert_eq!(p.count(), 2);
        assert_eq!(p.entry(0), Some(entries[0]));
        assert_eq!(p.entry(1), Some(entries[1]));
        assert_eq!(p.entry(2), None);
        // Truncated, padded, a wrong count, another domain, no entries, too many: refused.
        assert!(Parsed::new(&buf[..244]).is_none());
        let mut longer = [0u8; 246];
        longer[..245].copy_from_slice(&buf);
        assert!(Parsed::new(&longer).is_none());
        let mut wrong = buf;
        wrong[84] = 3;
        assert!(Parsed::new(&wrong).is_none());
        wrong = buf;
        wrong[0] ^= 1;
        assert!(Parsed::new(&wrong).is_none());
        assert_eq!(w::write(&[1; 32], &[2; 32], &[], &mut buf), None);
        let many = [entries[0]; w::MAX_LEASES + 1];
        let mut big = [0u8; w::message_len(w::MAX_LEASES + 1)];
        assert_eq!(w::write(&[1; 32], &[2; 32], &many, &mut big), None);
        // A single-lease receipt is never a worker receipt, nor the reverse.
        let single = Fields {
            program_id: [1; 32],
            lease: [4; 32],
            lease_nonce: 1,
            served_seconds: 60,
            chain_head: [5; 32],
        }
        .message();
        assert!(Parsed::new(&single).is_none());
        assert_eq!(Fields::parse(&buf[..MESSAGE_LEN]), None);
    }

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
