//! The orchestrator's lease instructions: put a worker on an order (`assign`) and take it off
//! (`close_lease`), freeing the worker. Settlement of receipts is in `settle`.

use super::slash::{SlashPayout, check_buyer_token, slash_worker};
use crate::emission;
use crate::errors::GpumeshError;
use crate::events::{
    BreakerTripped, LeaseAssigned, LeaseClosed, ReferencePriceUpdated, SlashReason, emit_event,
};
use crate::math::{SafeMath, to_u64};
use crate::state::{
    ACCOUNT_VERSION, BPS_DENOMINATOR, CloseReason, Lease, Market, Order, Worker, WorkerStatus,
    seeds,
};
use anchor_lang::prelude::*;
use anchor_spl::token::{Token, TokenAccount};

#[derive(Accounts)]
pub struct Assign<'info> {
    #[account(mut)]
    pub orchestrator: Signer<'info>,
    #[account(mut, has_one = orchestrator @ GpumeshError::NotOrchestrator)]
    pub market: Box<Account<'info, Market>>,
    #[account(mut, has_one = market @ GpumeshError::WrongMarket)]
    pub order: Box<Account<'info, Order>>,
    #[account(mut, has_one = market @ GpumeshError::WrongMarket)]
    pub worker: Box<Account<'info, Worker>>,
    #[account(
        init,
        payer = orchestrator,
        space = Lease::SPACE,
        seeds = [seeds::LEASE, order.key().as_ref(), worker.key().as_ref()],
        bump,
    )]
    pub lease: Box<Account<'info, Lease>>,
    pub system_program: Program<'info, System>,
}

/// Checks that `worker` may serve `gpus` GPUs of `order` right now, in the order a user would
/// want the reasons reported.
pub fn check_assignable(
    market: &Market,
    order: &Order,
    worker: &Worker,
    gpus: u16,
    now: i64,
) -> Result<()> {
    require!(!market.paused, GpumeshError::MarketPaused);
    let req = &order.requirements;
    let hw = &worker.hardware;
    require!(
        order.gpus_assigned < req.gpu_count,
        GpumeshError::OrderFullyAssigned
    );
    require!(order.escrow_remaining > 0, GpumeshError::EscrowEmpty);
    require!(!worker.is_jailed(now), GpumeshError::WorkerJailed);
    require!(
        worker.status == WorkerStatus::Idle,
        GpumeshError::WorkerBusy
    );
    require!(hw.gpu_class == req.gpu_class, GpumeshError::ClassMismatch);
    require!(hw.vram_mib >= req.min_vram_mib, GpumeshError::VramTooLow);
    require!(
        hw.bandwidth_gbps >= req.min_bandwidth_gbps,
        GpumeshError::BandwidthTooLow
    );
    require!(req.allows_region(hw.region), GpumeshError::RegionNotAllowed);
    require!(
        worker.price_per_gpu_second <= order.max_price_per_gpu_second,
        GpumeshError::PriceAboveMax
    );
    require!(
        worker.stake >= worker.required_stake(market.params.min_stake_per_gpu)?,
        GpumeshError::StakeBelowMinimum
    );
    let still_needed = req.gpu_count.safe_sub(order.gpus_assigned)?;
    require!(
        gpus >= 1 && gpus <= hw.gpu_count && gpus <= still_needed,
        GpumeshError::InvalidGpuCount
    );
    Ok(())
}

/// The circuit breaker's cap for a class: reference × (1 + band), or none while the class has no
/// reference price yet.
pub fn breaker_cap(market: &Market, gpu_class: u8) -> Result<Option<u64>> {
    let reference = market.reference_prices[gpu_class as usize];
    if reference == 0 {
        return Ok(None);
    }
    let factor = BPS_DENOMINATOR as u128 + market.params.breaker_band_bps as u128;
    let cap = (reference as u128).safe_mul(factor)? / BPS_DENOMINATOR as u128;
    Ok(Some(u64::try_from(cap).unwrap_or(u64::MAX)))
}

/// Moves a class's reference price toward a new lease price: by the smoothing share of the gap,
/// at most once per update interval (the first price seeds an unknown reference). Each step is
/// therefore bounded by a factor (1 + band × smoothing) up, (1 − smoothing) down, per interval,
/// however many leases are assigned inside it.
pub fn update_reference(market: &mut Market, gpu_class: u8, price: u64, now: i64) -> Result<()> {
    let class = gpu_class as usize;
    let before = market.reference_prices[class];
    let after = if before == 0 {
        price
    } else if now.safe_sub(market.reference_updated_ts[class])?
        < market.params.reference_update_interval
    {
        return Ok(());
    } else {
        let alpha = market.params.reference_smoothing_bps as u128;
        let gap = (price as u128).abs_diff(before as u128);
        let step = to_u64(gap.safe_mul(alpha)? / BPS_DENOMINATOR as u128)?;
        if price >= before {
            before.safe_add(step)?
        } else {
            before.safe_sub(step)?
        }
    };
    market.reference_prices[class] = after;
    market.reference_updated_ts[class] = now;
    emit_event(&ReferencePriceUpdated {
        gpu_class,
        lease_price: price,
        reference_before: before,
        reference_after: after,
    });
    Ok(())
}

pub fn assign(mut ctx: Context<Assign>, gpus: u16) -> Result<()> {
    let now = Clock::get()?.unix_timestamp;
    let a = &mut ctx.accounts;
    check_assignable(&a.market, &a.order, &a.worker, gpus, now)?;
    let lease_key = a.lease.key();
    let price = a.worker.price_per_gpu_second;
    let class = a.order.requirements.gpu_class;
    if let Some(cap) = breaker_cap(&a.market, class)?
        && price > cap
    {
        // The transaction fails; its logs keep the trip for monitoring.
        emit_event(&BreakerTripped {
            gpu_class: class,
            price,
            reference: a.market.reference_prices[class as usize],
            cap,
        });
        return err!(GpumeshError::PriceAboveBreaker);
    }
    update_reference(&mut a.market, class, price, now)?;
    let leased_before = a.market.leased_gpus;
    emission::update(&mut a.market.emission, leased_before, now)?;
    a.market.leased_gpus = leased_before.safe_add(gpus as u64)?;
    a.lease.set_inner(Lease {
        version: ACCOUNT_VERSION,
        bump: ctx.bumps.lease,
        market: a.market.key(),
        order: a.order.key(),
        worker: a.worker.key(),
        gpus,
        price_per_gpu_second: price,
        start_ts: now,
        seconds_settled: 0,
        amount_paid: 0,
        fee_paid: 0,
        last_settle_ts: now,
        last_chain_head: [0; 32],
        reward_acc_snapshot: a.market.emission.acc_per_gpu,
        reserved: [0; 64],
    });
    let gpus_before = a.order.gpus_assigned;
    a.order.gpus_assigned = gpus_before.safe_add(gpus)?;
    a.order.active_leases = a.order.active_leases.safe_add(1)?;
    a.order.refresh_status();
    a.worker.status = WorkerStatus::Busy;
    a.worker.active_lease = Some(lease_key);
    a.worker.record.leases = a.worker.record.leases.safe_add(1)?;
    a.market.active_leases = a.market.active_leases.safe_add(1)?;
    a.lease.invariant()?;
    a.order.invariant()?;
    a.worker.invariant()?;
    a.market.invariant()?;
    emit_event(&LeaseAssigned {
        lease: lease_key,
        order: a.order.key(),
        worker: a.worker.key(),
        gpus,
        price_per_gpu_second: price,
        start_ts: now,
        order_gpus_before: gpus_before,
        order_gpus_after: a.order.gpus_assigned,
    });
    Ok(())
}

#[derive(Accounts)]
pub struct CloseLease<'info> {
    #[account(mut)]
    pub orchestrator: Signer<'info>,
    #[account(mut, has_one = orchestrator @ GpumeshError::NotOrchestrator)]
    pub market: Box<Account<'info, Market>>,
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
    // Needed only to close a lease as `WorkerOffline` (the slash pays the buyer).
    #[account(mut)]
    pub buyer_token: Option<Box<Account<'info, TokenAccount>>>,
    #[account(mut, address = market.stake_vault @ GpumeshError::WrongVault)]
    pub stake_vault: Option<Box<Account<'info, TokenAccount>>>,
    #[account(mut, address = market.treasury_vault @ GpumeshError::WrongVault)]
    pub treasury_vault: Option<Box<Account<'info, TokenAccount>>>,
    pub token_program: Option<Program<'info, Token>>,
}

/// Takes the lease off the books: the order gets its GPUs back to re-assign and the worker is
/// free. Whatever the worker served must be settled before (the client sends the final
/// `settle` in the same transaction); seconds not settled by then are not paid.
///
/// `WorkerOffline` (the worker missed heartbeats past the grace period) also slashes the worker's
/// stake at the market's offline rate and pays it to the buyer (see `slash`); the order re-opens
/// with its remaining escrow for a new `assign`.
pub fn close_lease(mut ctx: Context<CloseLease>, reason: CloseReason) -> Result<()> {
    require!(
        matches!(
            reason,
            CloseReason::Completed | CloseReason::Cancelled | CloseReason::WorkerOffline
        ),
        GpumeshError::InvalidCloseReason
    );
    let now = Clock::get()?.unix_timestamp;
    let a = &mut ctx.accounts;
    release_lease(
        &mut a.market,
        &mut a.order,
        &mut a.worker,
        &a.lease,
        now,
        reason,
    )?;
    match reason {
        CloseReason::Completed => {
            a.worker.record.leases_completed = a.worker.record.leases_completed.safe_add(1)?;
        }
        CloseReason::WorkerOffline => {
            let (Some(buyer_token), Some(stake_vault), Some(treasury_vault), Some(token_program)) = (
                &a.buyer_token,
                &a.stake_vault,
                &a.treasury_vault,
                &a.token_program,
            ) else {
                return err!(GpumeshError::MissingSlashAccounts);
            };
            check_buyer_token(&a.market, &a.order, buyer_token)?;
            let payout = SlashPayout {
                token_program,
                stake_vault,
                treasury_vault,
                buyer_token: Some(buyer_token),
            };
            let rate = a.market.params.offline_slash_bps;
            let buyer = Some(a.order.buyer);
            slash_worker(
                &mut a.market,
                &mut a.worker,
                &payout,
                rate,
                SlashReason::Offline,
                [0; 32],
                buyer,
            )?;
            a.worker.invariant()?;
            a.market.invariant()?;
        }
        _ => {}
    }
    Ok(())
}

/// Book-keeping shared by every way a lease ends: the order gets its GPUs back, the worker is
/// free (unless jailed), the lease's GPUs stop sharing emission, and `LeaseClosed` is emitted.
pub fn release_lease(
    market: &mut Market,
    order: &mut Order,
    worker: &mut Worker,
    lease: &Account<Lease>,
    now: i64,
    reason: CloseReason,
) -> Result<()> {
    require!(
        worker.active_lease == Some(lease.key()),
        GpumeshError::LeaseNotActive
    );
    emission::update(&mut market.emission, market.leased_gpus, now)?;
    market.leased_gpus = market.leased_gpus.safe_sub(lease.gpus as u64)?;
    order.gpus_assigned = order.gpus_assigned.safe_sub(lease.gpus)?;
    order.active_leases = order.active_leases.safe_sub(1)?;
    order.refresh_status();
    worker.active_lease = None;
    if worker.status == WorkerStatus::Busy {
        worker.status = WorkerStatus::Idle;
    }
    market.active_leases = market.active_leases.safe_sub(1)?;
    order.invariant()?;
    worker.invariant()?;
    market.invariant()?;
    emit_event(&LeaseClosed {
        lease: lease.key(),
        order: lease.order,
        worker: lease.worker,
        reason,
        seconds_settled: lease.seconds_settled,
        amount_paid: lease.amount_paid,
        order_gpus_before: order.gpus_assigned.safe_add(lease.gpus)?,
        order_gpus_after: order.gpus_assigned,
    });
    Ok(())
}
