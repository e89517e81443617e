//! Program-derived addresses, from the program's own seed constants.

use anchor_lang::prelude::Pubkey;
use gpumesh::state::seeds;

/// The market of `mint` created by `creator` (its first authority).
pub fn market(mint: &Pubkey, creator: &Pubkey) -> (Pubkey, u8) {
    Pubkey::find_program_address(
        &[seeds::MARKET, mint.as_ref(), creator.as_ref()],
        &gpumesh::ID,
    )
}

pub fn stake_vault(market: &Pubkey) -> (Pubkey, u8) {
    Pubkey::find_program_address(&[seeds::STAKE_VAULT, market.as_ref()], &gpumesh::ID)
}

pub fn escrow_vault(market: &Pubkey) -> (Pubkey, u8) {
    Pubkey::find_program_address(&[seeds::ESCROW_VAULT, market.as_ref()], &gpumesh::ID)
}

pub fn treasury_vault(market: &Pubkey) -> (Pubkey, u8) {
    Pubkey::find_program_address(&[seeds::TREASURY_VAULT, market.as_ref()], &gpumesh::ID)
}

pub fn rewards_vault(market: &Pubkey) -> (Pubkey, u8) {
    Pubkey::find_program_address(&[seeds::REWARDS_VAULT, market.as_ref()], &gpumesh::ID)
}

pub fn worker(market: &Pubkey, owner: &Pubkey) -> (Pubkey, u8) {
    Pubkey::find_program_address(
        &[seeds::WORKER, market.as_ref(), owner.as_ref()],
        &gpumesh::ID,
    )
}

pub fn order(market: &Pubkey, buyer: &Pubkey, order_id: u64) -> (Pubkey, u8) {
    Pubkey::find_program_address(
        &[
            seeds::ORDER,
            market.as_ref(),
            buyer.as_ref(),
            &order_id.to_le_bytes(),
        ],
        &gpumesh::ID,
    )
}

pub fn lease(order: &Pubkey, worker: &Pubkey) -> (Pubkey, u8) {
    Pubkey::find_program_address(
        &[seeds::LEASE, order.as_ref(), worker.as_ref()],
        &gpumesh::ID,
    )
}

/// Every address that belongs to one market, derived once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MarketAddresses {
    pub mint: Pubkey,
    /// The authority that created the market (part of its address).
    pub creator: Pubkey,
    pub market: Pubkey,
    pub stake_vault: Pubkey,
    pub escrow_vault: Pubkey,
    pub treasury_vault: Pubkey,
    pub rewards_vault: Pubkey,
}

impl MarketAddresses {
    /// The addresses of the market `creator` makes (or made) for `mint`.
    pub fn new(mint: Pubkey, creator: Pubkey) -> Self {
        let market = market(&mint, &creator).0;
        Self {
            mint,
            creator,
            market,
            stake_vault: stake_vault(&market).0,
            escrow_vault: escrow_vault(&market).0,
            treasury_vault: treasury_vault(&market).0,
            rewards_vault: rewards_vault(&market).0,
        }
    }

    /// The addresses of a market read from the chain (its account names its mint and creator).
    pub fn of(market: &gpumesh::state::Market) -> Self {
        Self::new(market.mint, market.creator)
    }

    pub fn worker(&self, owner: &Pubkey) -> Pubkey {
        worker(&self.market, owner).0
    }

    pub fn order(&self, buyer: &Pubkey, order_id: u64) -> Pubkey {
        order(&self.market, buyer, order_id).0
    }
}
