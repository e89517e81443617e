//! Receipts, the proof of service time that money moves on. A worker's node key signs the
//! canonical message of `gpumesh-layout` (the same bytes the program rebuilds and checks); the
//! orchestrator verifies the signature before it queues a receipt, and the chain checks it again
//! through the Ed25519 precompile when the receipt settles. Signing needs only this crate: a
//! worker daemon links no Solana runtime.

use crate::keys::{Key, Signature};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use gpumesh_layout::receipt::{Fields, MESSAGE_LEN};
use serde::{Deserialize, Serialize};

pub use gpumesh_layout::receipt::DOMAIN;

/// A receipt as the worker hands it over: what it claims, who signed, and the signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedReceipt {
    /// The program deployment it is for.
    pub program_id: Key,
    /// The lease account.
    pub lease: Key,
    /// The lease instance's nonce (`Lease::nonce` on chain).
    pub lease_nonce: u64,
    /// Cumulative seconds served on the lease.
    pub served_seconds: u64,
    /// Head of the worker's heartbeat chain when it signed (see [`crate::heartbeat`]).
    pub chain_head: [u8; 32],
    /// The worker's node key, which signed.
    pub node_key: Key,
    pub signature: Signature,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    #[error("the receipt's node key is not a valid Ed25519 public key")]
    BadKey,
    #[error("the receipt's signature does not verify against its node key")]
    BadSignature,
    #[error("the receipt is signed by {found}, not by the worker's node key {expected}")]
    WrongSigner { expected: Key, found: Key },
}

impl SignedReceipt {
    /// Signs a claim of `served_seconds` on one lease instance with the worker's node key.
    pub fn sign(
        node_key: &SigningKey,
        program_id: Key,
        lease: Key,
        lease_nonce: u64,
        served_seconds: u64,
        chain_head: [u8; 32],
    ) -> Self {
        let fields = Fields {
            program_id: program_id.0,
            lease: lease.0,
            lease_nonce,
            served_seconds,
            chain_head,
        };
        let signature = node_key.sign(&fields.message());
        Self {
            program_id,
            lease,
            lease_nonce,
            served_seconds,
            chain_head,
            node_key: Key(node_key.verifying_key().to_bytes()),
            signature: Signature(signature.to_bytes()),
        }
    }

    fn fields(&self) -> Fields {
        Fields {
            program_id: self.program_id.0,
            lease: self.lease.0,
            lease_nonce: self.lease_nonce,
            served_seconds: self.served_seconds,
            chain_head: self.chain_head,
        }
    }

    /// The exact bytes the node key signed.
    pub fn message(&self) -> [u8; MESSAGE_LEN] {
        self.fields().message()
    }

    /// Checks the signature (strict Ed25519: no malleable or small-order keys), and that the
    /// signer is `expected` when given (the worker's node key as registered on chain).
    pub fn verify(&self, expected: Option<&Key>) -> Result<(), ReceiptError> {
        if let Some(expected) = expected
            && *expected != self.node_key
        {
            return Err(ReceiptError::WrongSigner {
                expected: *expected,
                found: self.node_key,
            });
        }
        let key = VerifyingKey::from_bytes(&self.node_key.0).map_err(|_| ReceiptError::BadKey)?;
        let signature = ed25519_dalek::Signature::from_bytes(&self.signature.0);
        key.verify_strict(&self.message(), &signature)
            .map_err(|_| ReceiptError::BadSignature)
    }
}

/// The most leases one [`SignedWorkerReceipt`] covers.
pub const MAX_RECEIPT_LEASES: usize = gpumesh_layout::worker_receipt::MAX_LEASES;

/// One lease's claim inside a [`SignedWorkerReceipt`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptEntry {
    pub lease: Key,
    pub lease_nonce: u64,
    pub served_seconds: u64,
    pub chain_head: [u8; 32],
}

/// One signature of a worker's node key over every lease it serves (`gpumesh_layout::
/// worker_receipt`): a settlement pays all of them for one signature's fee.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedWorkerReceipt {
    pub program_id: Key,
    /// The worker account (not the node key): the chain checks the signer against its node key.
    pub worker: Key,
    /// 1 ..= `MAX_LEASES` entries, no lease twice.
    pub entries: Vec<ReceiptEntry>,
    pub node_key: Key,
    pub signature: Signature,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkerReceiptError {
    #[error(
        "a worker receipt covers 1 to {max} leases, this one {got}: split the leases over several",
        max = gpumesh_layout::worker_receipt::MAX_LEASES
    )]
    Count { got: usize },
    #[error("the worker receipt names lease {0} twice")]
    Duplicate(Key),
    #[error(transparent)]
    Receipt(#[from] ReceiptError),
}

impl SignedWorkerReceipt {
    /// Signs `entries` for worker account `worker` with its node key.
    pub fn sign(
        node_key: &SigningKey,
        program_id: Key,
        worker: Key,
        entries: Vec<ReceiptEntry>,
    ) -> Result<Self, WorkerReceiptError> {
        Self::check_entries(&entries)?;
        let mut r = Self {
            program_id,
            worker,
            entries,
            node_key: Key(node_key.verifying_key().to_bytes()),
            signature: Signature([0; 64]),
        };
        r.signature = Signature(node_key.sign(&r.message()).to_bytes());
        Ok(r)
    }

    fn check_entries(entries: &[ReceiptEntry]) -> Result<(), WorkerReceiptError> {
        use gpumesh_layout::worker_receipt::MAX_LEASES;
        if entries.is_empty() || entries.len() > MAX_LEASES {
            return Err(WorkerReceiptError::Count { got: entries.len() });
        }
        for (i, e) in entries.iter().enumerate() {
            if entries[..i].iter().any(|o| o.lease == e.lease) {
                return Err(WorkerReceiptError::Duplicate(e.lease));
            }
        }
        Ok(())
    }

    /// The exact bytes the node key signs (empty for a receipt with no or too many entries,
    /// which no signature can then cover).
    pub fn message(&self) -> Vec<u8> {
        use gpumesh_layout::worker_receipt::{self as w, Entry};
        let entries: Vec<Entry> = self
            .entries
            .iter()
            .map(|e| Entry {
                lease: e.lease.0,
                lease_nonce: e.lease_nonce,
                served_seconds: e.served_seconds,
                chain_head: e.chain_head,
            })
            .collect();
        let mut out = vec![0u8; w::message_len(entries.len())];
        match w::write(&self.program_id.0, &self.worker.0, &entries, &mut out) {
            Some(len) => {
                out.truncate(len);
                out
            }
            None => vec![],
        }
    }

    /// Checks the entries, the signature (strict Ed25519), and that the signer is `expected`
    /// when given (the worker's node key as registered on chain).
    pub fn verify(&self, expected: Option<&Key>) -> Result<(), WorkerReceiptError> {
        Self::check_entries(&self.entries)?;
        if let Some(expected) = expected
            && *expected != self.node_key
        {
            return Err(ReceiptError::WrongSigner {
                expected: *expected,
                found: self.node_key,
            }
            .into());
        }
        let key = VerifyingKey::from_bytes(&self.node_key.0).map_err(|_| ReceiptError::BadKey)?;
        let signature = ed25519_dalek::Signature::from_bytes(&self.signature.0);
        key.verify_strict(&self.message(), &signature)
            .map_err(|_| ReceiptError::BadSignature.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_receipt_signs_every_entry_and_verifies_only_as_signed() {
        let node = key(9);
        let entry = |lease: u8, served| ReceiptEntry {
            lease: Key([lease; 32]),
            lease_nonce: 1,
            served_seconds: served,
            chain_head: [lease; 32],
        };
        let r = SignedWorkerReceipt::sign(
            &node,
            Key([1; 32]),
            Key([2; 32]),
            vec![entry(3, 60), entry(4, 90)],
        )
        .unwrap();
        assert!(
            r.verify(Some(&Key(node.verifying_key().to_bytes())))
                .is_ok()
        );
        assert_eq!(r.message().len(), 85 + 2 * 80);
        let mut changed = r.clone();
        changed.entries[1].served_seconds += 1;
        assert!(matches!(
            changed.verify(None),
            Err(WorkerReceiptError::Receipt(ReceiptError::BadSignature))
        ));
        let mut moved = r.clone();
        moved.worker = Key([5; 32]);
        assert!(moved.verify(None).is_err(), "bound to the worker account");
        assert!(matches!(
            r.verify(Some(&Key([7; 32]))),
            Err(WorkerReceiptError::Receipt(
                ReceiptError::WrongSigner { .. }
            ))
        ));
        assert!(matches!(
            SignedWorkerReceipt::sign(
                &node,
                Key([1; 32]),
                Key([2; 32]),
                vec![entry(3, 1), entry(3, 2)]
            ),
            Err(WorkerReceiptError::Duplicate(_))
        ));
        assert!(matches!(
            SignedWorkerReceipt::sign(&node, Key([1; 32]), Key([2; 32]), vec![]),
            Err(WorkerReceiptError::Count { got: 0 })
        ));
        let seventeen = (0..17).map(|i| entry(i, 1)).collect();
        assert!(SignedWorkerReceipt::sign(&node, Key([1; 32]), Key([2; 32]), seventeen).is_err());
    }

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    #[test]
    fn a_signed_receipt_verifies_and_any_change_breaks_it() {
        let node = key(1);
        let r = SignedReceipt::sign(&node, Key([9; 32]), Key([2; 32]), 4, 60, [3; 32]);
        r.verify(Some(&Key(node.verifying_key().to_bytes())))
            .expect("verifies");
        let mut seconds = r.clone();
        seconds.served_seconds += 1;
        assert_eq!(seconds.verify(None), Err(ReceiptError::BadSignature));
        let mut nonce = r.clone();
        nonce.lease_nonce += 1;
        assert_eq!(nonce.verify(None), Err(ReceiptError::BadSignature));
        let stranger = Key(key(2).verifying_key().to_bytes());
        assert!(matches!(
            r.verify(Some(&stranger)),
            Err(ReceiptError::WrongSigner { .. })
        ));
        assert_eq!(&r.message()[..18], b"gpumesh/receipt/v2");
    }

    #[test]
    fn receipts_cross_the_wire_as_json() {
        let r = SignedReceipt::sign(&key(5), Key([9; 32]), Key([2; 32]), 4, 60, [3; 32]);
        let text = serde_json::to_string(&r).expect("serialize");
        let back: SignedReceipt = serde_json::from_str(&text).expect("deserialize");
        assert_eq!(back, r);
        back.verify(None).expect("still verifies");
    }
}
