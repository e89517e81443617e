//! Receipts off chain: the worker signs the canonical message with its node key; the
//! orchestrator checks the signature, then submits receipts in batches behind one Ed25519
//! precompile instruction that carries one signature entry per receipt, in order.

use anchor_lang::prelude::Pubkey;
use gpumesh::instructions::ReceiptArgs;
use gpumesh::receipt::{RECEIPT_MESSAGE_LEN, ed25519, receipt_message};
use solana_instruction::Instruction;
use solana_keypair::Keypair;
use solana_signer::Signer;

/// A receipt as the worker hands it over: what it claims, who signed, and the signature.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SignedReceipt {
    pub lease: Pubkey,
    /// The lease instance's nonce (`Lease::nonce`), which the signature covers.
    pub lease_nonce: u64,
    pub served_seconds: u64,
    pub chain_head: [u8; 32],
    pub node_key: Pubkey,
    #[serde(with = "serde_sig")]
    pub signature: [u8; 64],
}

mod serde_sig {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(sig: &[u8; 64], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(sig)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 64], D::Error> {
        let v: Vec<u8> = Deserialize::deserialize(d)?;
        v.try_into()
            .map_err(|_| serde::de::Error::custom("a signature is 64 bytes"))
    }
}

impl SignedReceipt {
    /// Signs a receipt with the worker's node key.
    pub fn sign(
        node_key: &Keypair,
        lease: Pubkey,
        lease_nonce: u64,
        served_seconds: u64,
        chain_head: [u8; 32],
    ) -> Self {
        let message = receipt_message(
            &gpumesh::ID,
            &lease,
            lease_nonce,
            served_seconds,
            &chain_head,
        );
        let signature = node_key.sign_message(&message);
        Self {
            lease,
            lease_nonce,
            served_seconds,
            chain_head,
            node_key: node_key.pubkey(),
            signature: signature.into(),
        }
    }

    /// The exact bytes the node key signed.
    pub fn message(&self) -> [u8; RECEIPT_MESSAGE_LEN] {
        receipt_message(
            &gpumesh::ID,
            &self.lease,
            self.lease_nonce,
            self.served_seconds,
            &self.chain_head,
        )
    }

    /// Checks the signature off chain (the orchestrator does this before it queues a receipt).
    pub fn verify(&self) -> bool {
        let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(&self.node_key.to_bytes()) else {
            return false;
        };
        let signature = ed25519_dalek::Signature::from_bytes(&self.signature);
        key.verify_strict(&self.message(), &signature).is_ok()
    }

    pub fn args(&self) -> ReceiptArgs {
        ReceiptArgs {
            served_seconds: self.served_seconds,
            chain_head: self.chain_head,
        }
    }
}

/// One Ed25519 precompile instruction verifying every receipt's signature, entries in order,
/// each pointing only at data inside this instruction.
pub fn ed25519_instruction(receipts: &[SignedReceipt]) -> Instruction {
    use ed25519::*;
    let entry_len = PUBKEY_LEN + SIGNATURE_LEN + RECEIPT_MESSAGE_LEN;
    let header_len = OFFSETS_START + receipts.len() * OFFSETS_LEN;
    let mut data = Vec::with_capacity(header_len + receipts.len() * entry_len);
    data.push(receipts.len() as u8);
    data.push(0);
    for i in 0..receipts.len() {
        let base = (header_len + i * entry_len) as u16;
        let pubkey_offset = base;
        let signature_offset = base + PUBKEY_LEN as u16;
        let message_offset = signature_offset + SIGNATURE_LEN as u16;
        for v in [
            signature_offset,
            THIS_INSTRUCTION,
            pubkey_offset,
            THIS_INSTRUCTION,
            message_offset,
            RECEIPT_MESSAGE_LEN as u16,
            THIS_INSTRUCTION,
        ] {
            data.extend_from_slice(&v.to_le_bytes());
        }
    }
    for r in receipts {
        data.extend_from_slice(r.node_key.as_ref());
        data.extend_from_slice(&r.signature);
        data.extend_from_slice(&r.message());
    }
    Instruction {
        program_id: solana_sdk_ids::ed25519_program::ID,
        accounts: vec![],
        data,
    }
}
