//! Receipts on chain. The receipt itself, its canonical message and its signature belong to
//! `gpumesh-protocol` (a worker daemon signs without this crate); here they become the Ed25519
//! precompile instruction that carries a batch's signatures and the `settle` arguments, and keys
//! convert between Solana's `Pubkey` and the protocol's `Key`.

use anchor_lang::prelude::Pubkey;
use gpumesh::instructions::ReceiptArgs;
use gpumesh::receipt::{RECEIPT_MESSAGE_LEN, ed25519};
use gpumesh_protocol::{Key, SignedReceipt};
use solana_instruction::Instruction;
use solana_keypair::Keypair;

/// A Solana address as the protocol writes it.
pub fn key(pubkey: &Pubkey) -> Key {
    Key(pubkey.to_bytes())
}

/// A protocol key as a Solana address.
pub fn pubkey(key: &Key) -> Pubkey {
    Pubkey::new_from_array(key.0)
}

/// The Ed25519 signing key of a Solana keypair (a worker's node key file holds one).
pub fn signing_key(keypair: &Keypair) -> gpumesh_protocol::SigningKey {
    gpumesh_protocol::SigningKey::from_bytes(keypair.secret_bytes())
}

/// Signs a receipt for `served_seconds` on one lease instance of this program deployment with a
/// node keypair.
pub fn sign(
    node: &Keypair,
    lease: &Pubkey,
    lease_nonce: u64,
    served_seconds: u64,
    chain_head: [u8; 32],
) -> SignedReceipt {
    SignedReceipt::sign(
        &signing_key(node),
        key(&gpumesh::ID),
        key(lease),
        lease_nonce,
        served_seconds,
        chain_head,
    )
}

/// The `settle` arguments for a receipt (the lease and its nonce come from the accounts).
pub fn args(receipt: &SignedReceipt) -> ReceiptArgs {
    ReceiptArgs {
        served_seconds: receipt.served_seconds,
        chain_head: receipt.chain_head,
    }
}

/// Bytes one receipt adds to the Ed25519 instruction's data.
pub const ED25519_BYTES_PER_RECEIPT: usize =
    ed25519::OFFSETS_LEN + ed25519::PUBKEY_LEN + ed25519::SIGNATURE_LEN + RECEIPT_MESSAGE_LEN;

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
        data.extend_from_slice(&r.node_key.0);
        data.extend_from_slice(&r.signature.0);
        data.extend_from_slice(&r.message());
    }
    Instruction {
        program_id: solana_sdk_ids::ed25519_program::ID,
        accounts: vec![],
        data,
    }
}
