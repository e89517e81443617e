//! Penalties: slashing a worker's stake to compensate the buyer (offline mid-lease, or proven
//! fraud), jail, unjail, and the permissionless expiry of dead leases.
//!
//! Slash rule, as implemented: the slashable balance is bonded + unbonding stake (unbonding stays
//! slashable until withdrawn). A slash for one lease takes the share of it that the lease's GPUs
//! stand for: `slash = min(ceil(slashable × lease_gpus × rate_bps / (gpu_count × 10⁴)), slashable)`
//! — rounded up, in the buyer's favour, and never more than the worker has — and pays that lease's
//! buyer. A fraud slash with no lease (the worker was caught while idle) takes the share of its
//! free GPUs, for the treasury. It is taken from bonded stake first, then from unbonding. Of it,
//! `floor(slash × treasury_share_bps / 10⁴)` goes to the treasury and the rest (the larger part of
//! any rounding) to the buyer. See `math::slash_split`.

use super::lease::release_lease;
use super::token::withdraw;
use crate::errors::GpumeshError;
use crate::events::{SlashReason, WorkerJailChanged, WorkerSlashed, emit_event};
use crate::math::{SafeMath, SlashSplit, slash_split};
use crate::state::{BPS_DENOMINATOR, CloseReason, Lease, Market, Order, Worker};
use anchor_lang::prelude::*;
use anchor_spl::token::{Token, TokenAccount};

/// What a slash is for: the lease (and its buyer) it compensates, and the GPUs whose share of
/// the stake it takes.
#[derive(Debug, Clone, Copy)]
pub struct SlashTarget {
    pub lease: Option<Pubkey>,
    pub buyer: Option<Pubkey>,
    pub share_gpus: u16,
}

/// Token accounts a slash pays out through.
pub struct SlashPayout<'a, 'info> {
    pub token_program: &'a Program<'info, Token>,
    pub stake_vault: &'a Account<'info, TokenAccount>,
    pub treasury_vault: &'a Account<'info, TokenAccount>,
    /// The buyer's token account; `None` sends the buyer's part to the treasury as well.
    pub buyer_token: Option<&'a Account<'info, TokenAccount>>,
}

/// Slashes `worker` at `rate_bps` of `target`'s share, moves the tokens and updates the books;
/// returns the split.
pub fn slash_worker<'info>(
    market: &mut Account<'info, Market>,
    worker: &mut Account<'info, Worker>,
    payout: &SlashPayout<'_, 'info>,
    rate_bps: u16,
    reason: SlashReason,
    evidence_hash: [u8; 32],
    target: SlashTarget,
) -> Result<SlashSplit> {
    let stake_before = worker.stake;
    let unbonding_before = worker.unbonding;
    let slashable = worker.stake.safe_add(worker.unbonding)?;
    let treasury_share = if payout.buyer_token.is_some() {
        market.params.slash_treasury_share_bps
    } else {
        BPS_DENOMINATOR as u16
    };
    let gpu_count = worker.hardware.gpu_count;
    let split = slash_split(
        slashable,
        target.share_gpus,
        gpu_count,
        rate_bps,
        treasury_share,
    )?;

    let from_stake = split.amount.min(worker.stake);
    let from_unbonding = split.amount.safe_sub(from_stake)?;
    worker.stake = worker.stake.safe_sub(from_stake)?;
    worker.unbonding = worker.unbonding.safe_sub(from_unbonding)?;
    market.total_stake = market.total_stake.safe_sub(from_stake)?;
    market.total_unbonding = market.total_unbonding.safe_sub(from_unbonding)?;
    market.treasury_balance = market.treasury_balance.safe_add(split.to_treasury)?;
    worker.record.slashes = worker.record.slashes.safe_add(1)?;
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
        lease: target.lease,
        buyer: target.buyer,
        share_gpus: target.share_gpus,
        gpu_count,
        rate_bps,
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
    /// The lease the fraud was found on, if any: it closes and its buyer is compensated. Pass
    /// the lease, its order, the buyer's token account and the lease's rent payer together.
    #[account(mut)]
    pub lease: Option<Box<Account<'info, Lease>>>,
    #[account(mut)]
    pub order: Option<Box<Account<'info, Order>>>,
    #[account(mut)]
    pub buyer_token: Option<Box<Account<'info, TokenAccount>>>,
    /// CHECK: receives the lease account's rent; checked against `lease.rent_payer`.
    #[account(mut)]
    pub rent_payer: Option<UncheckedAccount<'info>>,
}

/// Proven fraud (e.g. a failed compute challenge, whose hash is the evidence): jail the worker
/// for the jail period and slash it at the fraud rate. With a lease, the slash takes that lease's
/// share of the stake, pays its buyer and closes the lease so the order can be re-placed; the
/// orchestrator calls it once per lease the worker serves. With none, it takes the share of the
/// worker's free GPUs, for the treasury.
pub fn slash_fraud(ctx: Context<SlashFraud>, evidence_hash: [u8; 32]) -> Result<()> {
    let now = Clock::get()?.unix_timestamp;
    let a = ctx.accounts;
    let rate = a.market.params.fraud_slash_bps;
    let target = match (&a.lease, &mut a.order, &a.buyer_token, &a.rent_payer) {
        (Some(lease), Some(order), Some(buyer_token), Some(rent_payer)) => {
            require_keys_eq!(lease.market, a.market.key(), GpumeshError::WrongMarket);
            require_keys_eq!(lease.worker, a.worker.key(), GpumeshError::LeaseMismatch);
            require_keys_eq!(lease.order, order.key(), GpumeshError::LeaseMismatch);
            require_keys_eq!(
                lease.rent_payer,
                rent_payer.key(),
                GpumeshError::WrongRentReceiver
            );
            check_buyer_token(&a.market, order, buyer_token)?;
            release_lease(
                &mut a.market,
                order,
                &mut a.worker,
                lease,
                now,
                CloseReason::Fraud,
            )?;
            SlashTarget {
                lease: Some(lease.key()),
                buyer: Some(order.buyer),
                share_gpus: lease.gpus,
            }
        }
        (None, None, None, None) => SlashTarget {
            lease: None,
            buyer: None,
            share_gpus: a.worker.free_gpus(),
        },
        _ => return err!(GpumeshError::MissingSlashAccounts),
    };
    let payout = SlashPayout {
        token_program: &a.token_program,
        stake_vault: &a.stake_vault,
        treasury_vault: &a.treasury_vault,
        buyer_token: if target.lease.is_some() {
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
        target,
    )?;
    a.worker.record.frauds = a.worker.record.frauds.safe_add(1)?;
    let jailed_until = now
        .safe_add(a.market.params.jail_period)?
        .max(a.worker.jailed_until);
    a.worker.jailed = true;
    a.worker.jailed_until = jailed_until;
    if let Some(order) = &mut a.order {
        order.invariant()?;
    }
    if let (Some(lease), Some(rent_payer)) = (&a.lease, &a.rent_payer) {
        lease.close(rent_payer.to_account_info())?;
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

/// After the jail period, and with its stake back at the market minimum for all its GPUs, a
/// worker may be assigned again.
pub fn unjail(ctx: Context<Unjail>) -> Result<()> {
    let now = Clock::get()?.unix_timestamp;
    let a = ctx.accounts;
    require!(a.worker.jailed, GpumeshError::NotJailed);
    require!(now >= a.worker.jailed_until, GpumeshError::WorkerJailed);
    let required = Worker::stake_required_for(
        a.worker.hardware.gpu_count,
        a.market.params.min_stake_per_gpu,
    )?;
    require!(a.worker.stake >= required, GpumeshError::StakeBelowMinimum);
    a.worker.jailed = false;
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
    #[account(mut, has_one = market @ GpumeshError::WrongMarket)]
    pub order: Box<Account<'info, Order>>,
    #[account(mut, has_one = market @ GpumeshError::WrongMarket)]
    pub worker: Box<Account<'info, Worker>>,
    #[account(
        mut,
        close = rent_payer,
        has_one = market @ GpumeshError::WrongMarket,
        has_one = order @ GpumeshError::LeaseMismatch,
        has_one = worker @ GpumeshError::LeaseMismatch,
        has_one = rent_payer @ GpumeshError::WrongRentReceiver,
    )]
    pub lease: Box<Account<'info, Lease>>,
    /// CHECK: receives the lease account's rent; must be the key that paid it (has_one above).
    #[account(mut)]
    pub rent_payer: UncheckedAccount<'info>,
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
