//! Every PDA seed prefix of the program, in one place. The client derives addresses from these
//! same constants, so a seed can never drift between the program and its callers.

/// `[MARKET, mint, creator]`: a market per payment mint and creating authority. The creator is
/// part of the address so nobody can take a market's address before its operator creates it.
/// The market PDA owns every vault.
pub const MARKET: &[u8] = b"market";
/// `[STAKE_VAULT, market]`: holds workers' bonded and unbonding stake.
pub const STAKE_VAULT: &[u8] = b"stake_vault";
/// `[ESCROW_VAULT, market]`: holds buyers' unspent escrow and workers' unclaimed earnings.
pub const ESCROW_VAULT: &[u8] = b"escrow_vault";
/// `[TREASURY_VAULT, market]`: protocol fees.
pub const TREASURY_VAULT: &[u8] = b"treasury_vault";
/// `[REWARDS_VAULT, market]`: the suppliers' emission allocation.
pub const REWARDS_VAULT: &[u8] = b"rewards_vault";
/// `[WORKER, market, owner]`: one worker per owner wallet per market.
pub const WORKER: &[u8] = b"worker";
/// `[ORDER, market, buyer, order_id (u64 LE)]`.
pub const ORDER: &[u8] = b"order";
/// `[LEASE, order, worker]`: at most one live lease per (order, worker). The address can come
/// back after a lease ends; each instance has its own nonce, which its receipts sign.
pub const LEASE: &[u8] = b"lease";
