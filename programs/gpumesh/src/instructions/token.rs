//! SPL Token transfers into and out of the market's vaults. Transfers out are signed by the
//! market PDA, the vaults' token authority.

use crate::state::Market;
use anchor_lang::prelude::*;
use anchor_spl::token::{self, Burn, Mint, Token, TokenAccount, Transfer};

/// Move `amount` from a user's token account, signed by the user.
pub fn deposit<'info>(
    token_program: &Program<'info, Token>,
    from: &Account<'info, TokenAccount>,
    to: &Account<'info, TokenAccount>,
    authority: &Signer<'info>,
    amount: u64,
) -> Result<()> {
    if amount == 0 {
        return Ok(());
    }
    token::transfer(
        CpiContext::new(
            token_program.key(),
            Transfer {
                from: from.to_account_info(),
                to: to.to_account_info(),
                authority: authority.to_account_info(),
            },
        ),
        amount,
    )
}

/// Move `amount` out of a vault, signed by the market PDA.
pub fn withdraw<'info>(
    token_program: &Program<'info, Token>,
    market: &Account<'info, Market>,
    vault: &Account<'info, TokenAccount>,
    to: &Account<'info, TokenAccount>,
    amount: u64,
) -> Result<()> {
    if amount == 0 {
        return Ok(());
    }
    let seeds = market.signer_seeds();
    let signer: &[&[&[u8]]] = &[&seeds];
    token::transfer(
        CpiContext::new_with_signer(
            token_program.key(),
            Transfer {
                from: vault.to_account_info(),
                to: to.to_account_info(),
                authority: market.to_account_info(),
            },
            signer,
        ),
        amount,
    )
}

/// Burn `amount` from a vault (removed from the mint's supply), signed by the market PDA.
pub fn burn<'info>(
    token_program: &Program<'info, Token>,
    market: &Account<'info, Market>,
    mint: &Account<'info, Mint>,
    vault: &Account<'info, TokenAccount>,
    amount: u64,
) -> Result<()> {
    if amount == 0 {
        return Ok(());
    }
    let seeds = market.signer_seeds();
    let signer: &[&[&[u8]]] = &[&seeds];
    token::burn(
        CpiContext::new_with_signer(
            token_program.key(),
            Burn {
                mint: mint.to_account_info(),
                from: vault.to_account_info(),
                authority: market.to_account_info(),
            },
            signer,
        ),
        amount,
    )
}
