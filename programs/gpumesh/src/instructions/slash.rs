//! Penalties: slashing a worker's stake to compensate the buyer (offline mid-lease, or proven
//! fraud), jail, unjail, and the permissionless expiry of dead leases.
//!
//! Slash rule, as implemented: the slashable balance is bonded + unbonding stake (unbonding stays
//! slashable until withdrawn). `slash = min(ceil(slashable × rate_bps / 10_000), slashable)` —
//! rounded up, in the buyer's favour, and never more than the worker has. It is taken from
//! bonded stake first, then from unbonding. Of it, `floor(slash × treasury_share_bps / 10_000)`
//! goes to the treasury and the rest (the larger part of any rounding) to the buyer.

use super::lease::release_lease;
use super::token::withdraw;
use crate::errors::GpumeshError;
use crate::events::{SlashReason, WorkerJailChanged, WorkerSlashed, emit_event};
use crate::math::{SafeMath, bps_of, to_u64};
use crate::state::{BPS_DENOMINATOR, CloseReason, Lease, Market, Order, Worker, WorkerStatus};
use anchor_lang::prelude::*;
use anchor_spl::token::{Token, TokenAccount};

/// The split of one slash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlashSplit {
    pub amount: u64,
    pub to_treasury: u64,
    pub to_buyer: u64,
}

/// Computes a slash of `rate_bps` of `slashable` (see the module rule).
pub fn slash_split(slashable: u64, rate_bps: u16, treasury_share_bps: u16) -> Result<SlashSplit> {
    let numerator = (slashable as u128).safe_mul(rate_bps as u128)?;
    let rounded_up = numerator.div_ceil(BPS_DENOMINATOR as u128);
    let amount = to_u64(rounded_up)?.min(slashable);
    let to_treasury = bps_of(amount, treasury_share_bps)?;
    Ok(SlashSplit {
        amount,
        to_treasury,
        to_buyer: amount.safe_sub(to_treasury)?,
    })
}

/// Token accounts a slash pays out through.
pub struct SlashPayout<'a, 'info> {
    pub token_program: &'a Program<'info, Token>,
    pub stake_vault: &'a Account<'info, TokenAccount>,
    pub treasury_vault: &'a Account<'info, TokenAccount>,
    /// The buyer's token account; `None` sends the buyer's part to the treasury as well.
    pub buyer_token: Option<&'a Account<'info, TokenAccount>>,
}

/// Slashes `worker` at `rate_bps`, moves the tokens and updates the books; returns the split.
#[allow(clippy::too_many_arguments)]
pub fn slash_worker<'info>(
    market: &mut Account<'info, Market>,
    worker: &mut Account<'info, Worker>,
    payout: &SlashPayout<'_, 'info>,
    rate_bps: u16,
    reason: SlashReason,
    evidence_hash: [u8; 32],
    buyer: Option<Pubkey>,
) -> Result<SlashSplit> {
    let stake_before = worker.stake;
    let unbonding_before = worker.unbonding;
    let slashable = worker.stake.safe_add(worker.unbonding)?;
    let share = if payout.buyer_token.is_some() {
        market.params.slash_treasury_share_bps
    } else {
        BPS_DENOMINATOR as u16
    };
    let split = slash_split(slashable, rate_bps, share)?;

    let from_stake = split.amount.min(worker.stake);
    let from_unbonding = split.amount.safe_sub(from_stake)?;
    worker.stake = worker.stake.safe_sub(from_stake)?;
    worker.unbonding = worker.unbonding.safe_sub(from_unbonding)?;
    market.total_stake = market.total_stake.safe_sub(from_stake)?;
    market.total_unbonding = market.total_unbonding.safe_sub(from_unbonding)?;
    market.treasury_balance = market.treasury_balance.safe_add(split.to_treasury)?;
    worker.record.slashes = worker.record.slashes.safe_add(1)?;
    worker.record.failures = worker.record.failures.safe_add(1)?;
    worker.record.slashed_total = worker.record.slashed_total.safe_add(split.amount)?;

    let treasury_amount = if payout.buyer_token.is_some() {
        split.to_treasury
    } else {
        split.amount
    };
    withdraw(
        payout.token_program,
        market,
        payout.stake_vault,
        payout.treasury_vault,
        treasury_amount,
    )?;
    if let Some(buyer_token) = payout.buyer_token {
        withdraw(
            payout.token_program,
            market,
            payout.stake_vault,
            buyer_token,
            split.to_buyer,
        )?;
    }
    emit_event(&WorkerSlashed {
        worker: worker.key(),
        reason,
        evidence_hash,
        buyer,
        amount: split.amount,
        to_buyer: if payout.buyer_token.is_some() {
            split.to_buyer
        } else {
            0
        },
        to_treasury: treasury_amount,
        stake_before,
        stake_after: worker.stake,
        unbonding_before,
        unbonding_after: worker.unbonding,
    });
    Ok(split)
}

#[derive(Accounts)]
pub struct SlashFraud<'info> {
    #[account(mut)]
    pub orchestrator: Signer<'info>,
    #[account(mut, has_one = orchestrator @ GpumeshError::NotOrchestrator)]
    pub market: Box<Account<'info, Market>>,
    #[account(mut, has_one = market @ GpumeshError::WrongMarket)]
    pub worker: Box<Account<'info, Worker>>,
    #[account(mut, address = market.stake_vault @ GpumeshError::WrongVault)]
    pub stake_vault: Box<Account<'info, TokenAccount>>,
    #[account(mut, address = market.treasury_vault @ GpumeshError::WrongVault)]
    pub treasury_vault: Box<Account<'info, TokenAccount>>,
    pub token_program: Program<'info, Token>,
    /// The lease the worker is serving, if any; it closes and the buyer is compensated.
    #[account(mut)]
    pub lease: Option<Box<Account<'info, Lease>>>,
    #[account(mut)]
    pub order: Option<Box<Account<'info, Order>>>,
    #[account(mut)]
    pub buyer_token: Option<Box<Account<'info, TokenAccount>>>,
}

/// Proven fraud (e.g. a failed compute challenge, whose hash is the evidence): slash at the fraud
/// rate, compensate the buyer of the lease it was serving (the treasury when none), close that
/// lease so the order can be re-placed, and jail the worker for the jail period.
pub fn slash_fraud(ctx: Context<SlashFraud>, evidence_hash: [u8; 32]) -> Result<()> {
    let now = Clock::get()?.unix_timestamp;
    let a = ctx.accounts;
    let rate = a.market.params.fraud_slash_bps;
    let mut buyer = None;
    if let Some(active) = a.worker.active_lease {
        let (Some(lease), Some(order), Some(buyer_token)) =
            (&a.lease, &mut a.order, &a.buyer_token)
        else {
            return err!(GpumeshError::ActiveLeaseAccountsMissing);
        };
        require_keys_eq!(
            lease.key(),
            active,
            GpumeshError::ActiveLeaseAccountsMissing
        );
        require_keys_eq!(
            lease.order,
            order.key(),
            GpumeshError::ReceiptAccountsMismatch
        );
        check_buyer_token(&a.market, order, buyer_token)?;
        buyer = Some(order.buyer);
        release_lease(
            &mut a.market,
            order,
            &mut a.worker,
            lease,
            now,
            CloseReason::Fraud,
        )?;
    }
    let payout = SlashPayout {
        token_program: &a.token_program,
        stake_vault: &a.stake_vault,
        treasury_vault: &a.treasury_vault,
        buyer_token: if buyer.is_some() {
            a.buyer_token.as_deref()
        } else {
            None
        },
    };
    slash_worker(
        &mut a.market,
        &mut a.worker,
        &payout,
        rate,
        SlashReason::Fraud,
        evidence_hash,
        buyer,
    )?;
    let jailed_until = now.safe_add(a.market.params.jail_period)?;
    a.worker.status = WorkerStatus::Jailed;
    a.worker.jailed_until = jailed_until;
    if let Some(order) = &mut a.order {
        order.invariant()?;
    }
    if let Some(lease) = &a.lease
        && buyer.is_some()
    {
        lease.close(a.orchestrator.to_account_info())?;
    }
    a.worker.invariant()?;
    a.market.invariant()?;
    emit_event(&WorkerJailChanged {
        worker: a.worker.key(),
        jailed: true,
        jailed_until,
    });
    Ok(())
}

/// The buyer's token account must be of the market's mint and owned by the order's buyer.
pub fn check_buyer_token(market: &Market, order: &Order, token: &TokenAccount) -> Result<()> {
    require_keys_eq!(token.mint, market.mint, GpumeshError::WrongMint);
    require_keys_eq!(token.owner, order.buyer, GpumeshError::WrongTokenOwner);
    Ok(())
}

#[derive(Accounts)]
pub struct Unjail<'info> {
    pub owner: Signer<'info>,
    pub market: Box<Account<'info, Market>>,
    #[account(
        mut,
        has_one = owner @ GpumeshError::NotWorkerOwner,
        has_one = market @ GpumeshError::WrongMarket,
    )]
    pub worker: Box<Account<'info, Worker>>,
}

/// After the jail period, and with its stake back at the market minimum, a worker may be
/// assigned again.
pub fn unjail(ctx: Context<Unjail>) -> Result<()> {
    let now = Clock::get()?.unix_timestamp;
    let a = ctx.accounts;
    require!(
        a.worker.status == WorkerStatus::Jailed,
        GpumeshError::NotJailed
    );
    require!(now >= a.worker.jailed_until, GpumeshError::WorkerJailed);
    let required = a.worker.required_stake(a.market.params.min_stake_per_gpu)?;
    require!(a.worker.stake >= required, GpumeshError::StakeBelowMinimum);
    a.worker.status = WorkerStatus::Idle;
    a.worker.invariant()?;
    emit_event(&WorkerJailChanged {
        worker: a.worker.key(),
        jailed: false,
        jailed_until: a.worker.jailed_until,
    });
    Ok(())
}

#[derive(Accounts)]
pub struct ExpireLease<'info> {
    /// Anyone: nobody's funds may wait on the orchestrator.
    pub caller: Signer<'info>,
    #[account(mut)]
    pub market: Box<Account<'info, Market>>,
    /// CHECK: receives the lease account's rent; must be the market's orchestrator, who paid it.
    #[account(mut, address = market.orchestrator @ GpumeshError::NotOrchestrator)]
    pub orchestrator: UncheckedAccount<'info>,
    #[account(mut, has_one = market @ GpumeshError::WrongMarket)]
    pub order: Box<Account<'info, Order>>,
    #[account(mut, has_one = market @ GpumeshError::WrongMarket)]
    pub worker: Box<Account<'info, Worker>>,
    #[account(
        mut,
        close = orchestrator,
        has_one = market @ GpumeshError::WrongMarket,
        has_one = order @ GpumeshError::WrongMarket,
        has_one = worker @ GpumeshError::WrongMarket,
    )]
    pub lease: Box<Account<'info, Lease>>,
}

/// A lease with no settled receipt for the market's maximum receipt age is dead: anyone may close
/// it, without slashing (nobody can tell whether the worker or the orchestrator failed). The
/// order re-opens with its remaining escrow, or can be cancelled.
pub fn expire_lease(ctx: Context<ExpireLease>) -> Result<()> {
    let now = Clock::get()?.unix_timestamp;
    let a = ctx.accounts;
    let idle = now.safe_sub(a.lease.last_settle_ts)?;
    require!(
        idle >= a.market.params.max_receipt_age,
        GpumeshError::LeaseNotExpired
    );
    release_lease(
        &mut a.market,
        &mut a.order,
        &mut a.worker,
        &a.lease,
        now,
        CloseReason::Expired,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slash_rounds_up_for_the_buyer_and_never_exceeds_the_stake() {
        let s = slash_split(1_001, 500, 0).unwrap();
        assert_eq!(s.amount, 51); // 50.05 rounded up
        assert_eq!((s.to_buyer, s.to_treasury), (51, 0));
        let s = slash_split(1_000, 10_000, 0).unwrap();
        assert_eq!(s.amount, 1_000);
        let s = slash_split(0, 5_000, 0).unwrap();
        assert_eq!(s.amount, 0);
        let s = slash_split(999, 5_000, 3_333).unwrap();
        assert_eq!(s.amount, 500);
        assert_eq!(s.to_treasury, 166); // floor: the buyer keeps the rounding
        assert_eq!(s.to_buyer, 334);
        let s = slash_split(u64::MAX, 10_000, 10_000).unwrap();
        assert_eq!((s.amount, s.to_buyer), (u64::MAX, 0));
    }
}
