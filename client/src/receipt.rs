//! Receipts on chain. The receipt itself, its canonical message and its signature belong to
//! `gpumesh-protocol` (a worker daemon signs without this crate); here they become the Ed25519
//! precompile instruction that carries a batch's signatures and the `settle` arguments, and keys
//! convert between Solana's `Pubkey` and the protocol's `Key`.

use anchor_lang::prelude::Pubkey;
use gpumesh::instructions::ReceiptArgs;
use gpumesh::receipt::{RECEIPT_MESSAGE_LEN, ed25519};
use gpumesh_protocol::{Key, SignedReceipt, SignedWorkerReceipt};
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
    let signed: Vec<(Key, gpumesh_protocol::Signature, Vec<u8>)> = receipts
        .iter()
        .map(|r| (r.node_key, r.signature, r.message().to_vec()))
        .collect();
    ed25519_instruction_over(&signed)
}

/// The Ed25519 instruction for worker receipts (one signature per worker).
pub fn ed25519_instruction_for_workers(receipts: &[&SignedWorkerReceipt]) -> Instruction {
    let signed: Vec<(Key, gpumesh_protocol::Signature, Vec<u8>)> = receipts
        .iter()
        .map(|r| (r.node_key, r.signature, r.message()))
        .collect();
    ed25519_instruction_over(&signed)
}

/// An Ed25519 precompile instruction over (key, signature, message) entries, in order.
pub fn ed25519_instruction_over(
    signed: &[(Key, gpumesh_protocol::Signature, Vec<u8>)],
) -> Instruction {
    use ed25519::*;
    let header_len = OFFSETS_START + signed.len() * OFFSETS_LEN;
    let body: usize = signed
        .iter()
        .map(|(_, _, m)| PUBKEY_LEN + SIGNATURE_LEN + m.len())
        .sum();
    let mut data = Vec::with_capacity(header_len + body);
    data.push(signed.len() as u8);
    data.push(0);
    let mut base = header_len;
    for (_, _, message) in signed {
        let pubkey_offset = base as u16;
        let signature_offset = pubkey_offset + PUBKEY_LEN as u16;
        let message_offset = signature_offset + SIGNATURE_LEN as u16;
        for v in [
            signature_offset,
            THIS_INSTRUCTION,
            pubkey_offset,
            THIS_INSTRUCTION,
            message_offset,
            message.len() as u16,
            THIS_INSTRUCTION,
        ] {
            data.extend_from_slice(&v.to_le_bytes());
        }
        base += PUBKEY_LEN + SIGNATURE_LEN + message.len();
    }
    for (key, signature, message) in signed {
        data.extend_from_slice(&key.0);
        data.extend_from_slice(&signature.0);
        data.extend_from_slice(message);
    }
    Instruction {
        program_id: solana_sdk_ids::ed25519_program::ID,
        accounts: vec![],
        data,
    }
}

/// Signs a worker receipt over `leases` (lease, cumulative seconds, chain head) for the worker
/// account `worker` with its node keypair.
pub fn sign_worker(
    node: &Keypair,
    worker: &Pubkey,
    leases: &[(crate::ix::LeaseRef, u64, [u8; 32])],
) -> Result<SignedWorkerReceipt, gpumesh_protocol::WorkerReceiptError> {
    SignedWorkerReceipt::sign(
        &signing_key(node),
        key(&gpumesh::ID),
        key(worker),
        leases
            .iter()
            .map(|(l, served, head)| gpumesh_protocol::ReceiptEntry {
                lease: key(&l.lease),
                lease_nonce: l.nonce,
                served_seconds: *served,
                chain_head: *head,
            })
            .collect(),
    )
}
