//! Receipts, the proof of service time that money moves on. A worker's node key signs the
//! canonical message below; `settle` finds that signature in the Ed25519 precompile instruction
//! placed right before it in the same transaction and checks that it covers exactly this message
//! and this key. The precompile has already verified the signature itself, or the transaction
//! would have failed.

use crate::errors::GpumeshError;
use anchor_lang::prelude::*;

pub use gpumesh_layout::receipt::{DOMAIN as RECEIPT_DOMAIN, MESSAGE_LEN as RECEIPT_MESSAGE_LEN};

/// The bytes a worker signs (`gpumesh_layout::receipt`): domain ‖ program id ‖ lease ‖ lease nonce
/// (LE) ‖ cumulative seconds (LE) ‖ chain head. The lease address pins the market, order and
/// worker; the nonce pins this instance of the lease (the address comes back when the same order
/// and worker meet again); the program id pins the deployment.
pub fn receipt_message(
    program_id: &Pubkey,
    lease: &Pubkey,
    lease_nonce: u64,
    served_seconds: u64,
    chain_head: &[u8; 32],
) -> [u8; RECEIPT_MESSAGE_LEN] {
    gpumesh_layout::receipt::Fields {
        program_id: program_id.to_bytes(),
        lease: lease.to_bytes(),
        lease_nonce,
        served_seconds,
        chain_head: *chain_head,
    }
    .message()
}

/// Layout of the Ed25519 precompile's instruction data.
pub mod ed25519 {
    pub const PUBKEY_LEN: usize = 32;
    pub const SIGNATURE_LEN: usize = 64;
    pub const OFFSETS_LEN: usize = 14;
    pub const OFFSETS_START: usize = 2;
    /// `instruction_index` value meaning "this instruction's own data".
    pub const THIS_INSTRUCTION: u16 = u16::MAX;
}

/// One signature entry of an Ed25519 instruction: the signed message and the key.
pub struct SignedMessage<'a> {
    pub pubkey: &'a [u8],
    pub message: &'a [u8],
}

fn read_u16(data: &[u8], at: usize) -> Result<u16> {
    let bytes = data
        .get(at..at + 2)
        .ok_or(GpumeshError::MalformedEd25519Instruction)?;
    Ok(u16::from_le_bytes([bytes[0], bytes[1]]))
}

fn slice(data: &[u8], offset: u16, len: usize) -> Result<&[u8]> {
    let start = offset as usize;
    data.get(start..start + len)
        .ok_or_else(|| error!(GpumeshError::MalformedEd25519Instruction))
}

/// Parse an Ed25519 precompile instruction's data, accepting only entries whose signature, key
/// and message all live inside this same instruction (any other index could point the check at
/// data the program never looks at).
pub fn parse_ed25519(data: &[u8]) -> Result<Vec<SignedMessage<'_>>> {
    use ed25519::*;
    let count = *data
        .first()
        .ok_or(GpumeshError::MalformedEd25519Instruction)? as usize;
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let base = OFFSETS_START + i * OFFSETS_LEN;
        let signature_offset = read_u16(data, base)?;
        let signature_ix = read_u16(data, base + 2)?;
        let pubkey_offset = read_u16(data, base + 4)?;
        let pubkey_ix = read_u16(data, base + 6)?;
        let message_offset = read_u16(data, base + 8)?;
        let message_len = read_u16(data, base + 10)?;
        let message_ix = read_u16(data, base + 12)?;
        require!(
            signature_ix == THIS_INSTRUCTION
                && pubkey_ix == THIS_INSTRUCTION
                && message_ix == THIS_INSTRUCTION,
            GpumeshError::MalformedEd25519Instruction
        );
        slice(data, signature_offset, SIGNATURE_LEN)?;
        out.push(SignedMessage {
            pubkey: slice(data, pubkey_offset, PUBKEY_LEN)?,
            message: slice(data, message_offset, message_len as usize)?,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_layout_is_stable() {
        let m = receipt_message(
            &Pubkey::new_from_array([1; 32]),
            &Pubkey::new_from_array([2; 32]),
            5,
            7,
            &[3; 32],
        );
        assert_eq!(&m[..18], b"gpumesh/receipt/v2");
        assert_eq!(m[20], 1);
        assert_eq!(m[52], 2);
        assert_eq!(&m[84..92], &5u64.to_le_bytes());
        assert_eq!(&m[92..100], &7u64.to_le_bytes());
        assert_eq!(m[131], 3);
    }

    #[test]
    fn rejects_foreign_indices_and_truncation() {
        assert!(parse_ed25519(&[]).is_err());
        // one entry, offsets truncated
        assert!(parse_ed25519(&[1, 0, 0, 0]).is_err());
        // one entry pointing at instruction 0 instead of itself
        let mut d = vec![1u8, 0];
        for v in [16u16, 0, 80, u16::MAX, 112, 4, u16::MAX] {
            d.extend_from_slice(&v.to_le_bytes());
        }
        d.resize(200, 0);
        assert!(parse_ed25519(&d).is_err());
    }
}
