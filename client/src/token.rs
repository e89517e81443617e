//! SPL Token set-up: mints, associated token accounts, minting. Used by local networks, demos and
//! tests; the program itself only ever moves tokens between existing accounts.

use crate::error::ChainError;
use anchor_lang::prelude::Pubkey;
use anchor_spl::associated_token::{get_associated_token_address, spl_associated_token_account};
use anchor_spl::token::spl_token;
use solana_instruction::Instruction;
use solana_program_error::ProgramError;

/// SPL Token's builders only fail on a wrong token program id, which would be a bug here; it is
/// still reported as an error, never a panic.
fn build_error(e: ProgramError) -> ChainError {
    ChainError::Transaction {
        error: format!("could not build the SPL Token instruction: {e}"),
        logs: vec![],
    }
}

pub const MINT_LEN: usize = 82;

/// Instructions that create and initialise a mint at `mint` (which must sign).
pub fn create_mint(
    payer: &Pubkey,
    mint: &Pubkey,
    authority: &Pubkey,
    decimals: u8,
    rent_lamports: u64,
) -> Result<[Instruction; 2], ChainError> {
    Ok([
        solana_system_interface::instruction::create_account(
            payer,
            mint,
            rent_lamports,
            MINT_LEN as u64,
            &spl_token::ID,
        ),
        spl_token::instruction::initialize_mint2(&spl_token::ID, mint, authority, None, decimals)
            .map_err(build_error)?,
    ])
}

/// The associated token account of `owner` for `mint`.
pub fn ata(owner: &Pubkey, mint: &Pubkey) -> Pubkey {
    get_associated_token_address(owner, mint)
}

/// Creates `owner`'s associated token account for `mint` if it does not exist yet.
pub fn create_ata(payer: &Pubkey, owner: &Pubkey, mint: &Pubkey) -> Instruction {
    spl_associated_token_account::instruction::create_associated_token_account_idempotent(
        payer,
        owner,
        mint,
        &spl_token::ID,
    )
}

pub fn mint_to(
    mint: &Pubkey,
    to: &Pubkey,
    authority: &Pubkey,
    amount: u64,
) -> Result<Instruction, ChainError> {
    spl_token::instruction::mint_to(&spl_token::ID, mint, to, authority, &[], amount)
        .map_err(build_error)
}

/// Lamports a transaction fee costs at most here (one or two signatures, no priority fee).
pub const FEE_MARGIN_LAMPORTS: u64 = 20_000;

#[derive(Debug, thiserror::Error)]
pub enum MintError {
    #[error(
        "the mint {0} does not exist on this cluster; create it first (on localnet, `gpumesh localnet` prints its mint)"
    )]
    Missing(Pubkey),
    #[error("{0} is not an SPL Token mint")]
    NotAMint(Pubkey),
    #[error(transparent)]
    Chain(#[from] crate::ChainError),
}

/// Decimals of `mint`, read from the chain.
pub fn mint_decimals(chain: &dyn crate::Chain, mint: &Pubkey) -> Result<u8, MintError> {
    let raw = chain.account(mint)?.ok_or(MintError::Missing(*mint))?;
    if raw.owner != anchor_spl::token::ID {
        return Err(MintError::NotAMint(*mint));
    }
    let m = <anchor_spl::token::Mint as anchor_lang::AccountDeserialize>::try_deserialize(
        &mut &raw.data[..],
    )
    .map_err(|_| MintError::NotAMint(*mint))?;
    Ok(m.decimals)
}
