//! The orchestrator's lease instructions: put some of a worker's GPUs on an order (`assign`) and
//! take them off (`close_lease`). A worker with N GPUs serves several leases at once, up to N
//! GPUs in all; each lease needs its GPUs' share of stake bonded. Settlement of receipts is in
//! `settle`; every way a lease ends goes through [`release_lease`].

use super::slash::{SlashPayout, SlashTarget, check_buyer_token, slash_worker};
use crate::emission;
use crate::errors::GpumeshError;
use crate::events::{
    BreakerTripped, LeaseAssigned, LeaseClosed, LeasePreempted, ReferencePriceUpdated, SlashReason,
    emit_event,
};
use crate::math::{self, SafeMath};
use crate::state::{CloseReason, Lease, Market, Order, OrderMode, Worker, seeds};
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

/// Checks that `worker` may serve `gpus` more GPUs of `order` right now, in the order a user
/// would want the reasons reported. Pure, so the orchestrator runs the same check before it
/// proposes an assignment.
pub fn check_assignable(
    market: &Market,
    order: &Order,
    worker: &Worker,
    gpus: u16,
    now: i64,
) -> Result<()> {
    require!(!market.paused, GpumeshError::MarketPaused);
    require!(!order.is_closing(), GpumeshError::OrderClosing);
    let req = &order.terms.requirements;
    let hw = &worker.hardware;
    require!(
        order.gpus_assigned < req.gpu_count,
        GpumeshError::OrderFullyAssigned
    );
    require!(order.escrow_remaining > 0, GpumeshError::EscrowEmpty);
    require!(!worker.is_jailed(now), GpumeshError::WorkerJailed);
    require!(hw.gpu_class == req.gpu_class, GpumeshError::ClassMismatch);
    require!(hw.vram_mib >= req.min_vram_mib, GpumeshError::VramTooLow);
    require!(
        hw.bandwidth_gbps >= req.min_bandwidth_gbps,
        GpumeshError::BandwidthTooLow
    );
    require!(req.allows_region(hw.region), GpumeshError::RegionNotAllowed);
    require!(
        worker.price_per_gpu_second <= order.terms.max_price_per_gpu_second,
        GpumeshError::PriceAboveMax
    );
    let still_needed = req.gpu_count.safe_sub(order.gpus_assigned)?;
    require!(
        gpus >= 1 && gpus <= still_needed,
        GpumeshError::InvalidGpuCount
    );
    require!(gpus <= worker.free_gpus(), GpumeshError::NotEnoughFreeGpus);
    let leased_after = worker.gpus_leased.safe_add(gpus)?;
    require!(
        worker.stake >= Worker::stake_required_for(leased_after, market.params.min_stake_per_gpu)?,
        GpumeshError::StakeBelowMinimum
    );
    Ok(())
}

/// The circuit breaker's cap for a class: reference × (1 + band), or none while the class has no
/// reference price yet.
pub fn breaker_cap(market: &Market, gpu_class: u8) -> Result<Option<u64>> {
    math::breaker_cap(
        market.reference_prices[gpu_class as usize],
        market.params.breaker_band_bps,
    )
}

/// Moves a class's reference price toward a new lease price: by the smoothing share of the gap,
/// at most once per update interval (the first price seeds an unknown reference). Each step is
/// therefore bounded by a factor (1 + band × smoothing) up, (1 − smoothing) down, per interval,
/// however many leases are assigned inside it.
pub fn update_reference(market: &mut Market, gpu_class: u8, price: u64, now: i64) -> Result<()> {
    let class = gpu_class as usize;
    let before = market.reference_prices[class];
    if before != 0
        && now.safe_sub(market.reference_updated_ts[class])?
            < market.params.reference_update_interval
    {
        return Ok(());
    }
    let after = math::reference_step(before, price, market.params.reference_smoothing_bps)?;
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
    let class = a.order.terms.requirements.gpu_class;
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
    let nonce = a.market.leases_assigned;
    a.market.leases_assigned = nonce.safe_add(1)?;
    let fee_bps = a.market.params.protocol_fee_bps;
    a.lease.set_inner(Lease {
        version: Lease::VERSION,
        bump: ctx.bumps.lease,
        market: a.market.key(),
        order: a.order.key(),
        worker: a.worker.key(),
        nonce,
        rent_payer: a.orchestrator.key(),
        gpus,
        price_per_gpu_second: price,
        fee_bps,
        start_ts: now,
        seconds_settled: 0,
        amount_paid: 0,
        fee_paid: 0,
        burn_bps: a.market.params.fee_burn_bps,
        fee_burned: 0,
        preempt_at: 0,
        last_settle_ts: now,
        last_chain_head: [0; 32],
        reward_acc_snapshot: a.market.emission.acc_per_gpu,
        reserved: [0; 64],
    });
    let order_gpus_before = a.order.gpus_assigned;
    a.order.gpus_assigned = order_gpus_before.safe_add(gpus)?;
    a.order.active_leases = a.order.active_leases.safe_add(1)?;
    a.order.refresh_status();
    let worker_gpus_before = a.worker.gpus_leased;
    a.worker.gpus_leased = worker_gpus_before.safe_add(gpus)?;
    a.worker.active_leases = a.worker.active_leases.safe_add(1)?;
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
        nonce,
        gpus,
        price_per_gpu_second: price,
        fee_bps,
        start_ts: now,
        order_gpus_before,
        order_gpus_after: a.order.gpus_assigned,
        worker_gpus_leased_before: worker_gpus_before,
        worker_gpus_leased_after: a.worker.gpus_leased,
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
    // Needed only to close a lease as `WorkerOffline` (the slash pays the buyer).
    #[account(mut)]
    pub buyer_token: Option<Box<Account<'info, TokenAccount>>>,
    #[account(mut, address = market.stake_vault @ GpumeshError::WrongVault)]
    pub stake_vault: Option<Box<Account<'info, TokenAccount>>>,
    #[account(mut, address = market.treasury_vault @ GpumeshError::WrongVault)]
    pub treasury_vault: Option<Box<Account<'info, TokenAccount>>>,
    pub token_program: Option<Program<'info, Token>>,
}

/// Takes the lease off the books: the order gets its GPUs back to re-assign and the worker's GPUs
/// are free. Whatever the worker served must be settled before (the client sends the final
/// `settle` in the same transaction); seconds not settled by then are not paid.
///
/// `WorkerOffline` (the worker missed heartbeats past the grace period) also slashes the share of
/// the worker's stake that this lease's GPUs stand for, at the market's offline rate, and pays it
/// to this lease's buyer (see `slash`); the order re-opens with its remaining escrow.
/// `Preempted` ends a spot lease after the notice `preempt_lease` gave it, without a slash.
pub fn close_lease(mut ctx: Context<CloseLease>, reason: CloseReason) -> Result<()> {
    require!(
        matches!(
            reason,
            CloseReason::Completed
                | CloseReason::Cancelled
                | CloseReason::WorkerOffline
                | CloseReason::Preempted
        ),
        GpumeshError::InvalidCloseReason
    );
    let now = Clock::get()?.unix_timestamp;
    let a = &mut ctx.accounts;
    if reason == CloseReason::Preempted {
        require!(
            a.lease.preempt_at != 0 && now >= a.lease.preempt_at,
            GpumeshError::PreemptionNoticeRunning
        );
    }
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
            let target = SlashTarget {
                lease: Some(a.lease.key()),
                buyer: Some(a.order.buyer),
                share_gpus: a.lease.gpus,
            };
            a.worker.record.failures = a.worker.record.failures.safe_add(1)?;
            let rate = a.market.params.offline_slash_bps;
            slash_worker(
                &mut a.market,
                &mut a.worker,
                &payout,
                rate,
                SlashReason::Offline,
                [0; 32],
                target,
            )?;
            a.worker.invariant()?;
            a.market.invariant()?;
        }
        _ => {}
    }
    Ok(())
}

#[derive(Accounts)]
pub struct PreemptLease<'info> {
    pub orchestrator: Signer<'info>,
    #[account(has_one = orchestrator @ GpumeshError::NotOrchestrator)]
    pub market: Box<Account<'info, Market>>,
    /// The spot order whose lease is preempted.
    #[account(has_one = market @ GpumeshError::WrongMarket)]
    pub order: Box<Account<'info, Order>>,
    #[account(has_one = market @ GpumeshError::WrongMarket)]
    pub worker: Box<Account<'info, Worker>>,
    #[account(
        mut,
        has_one = market @ GpumeshError::WrongMarket,
        has_one = order @ GpumeshError::LeaseMismatch,
        has_one = worker @ GpumeshError::LeaseMismatch,
    )]
    pub lease: Box<Account<'info, Lease>>,
    /// The reserved order that needs the GPUs the lease frees.
    #[account(has_one = market @ GpumeshError::WrongMarket)]
    pub reserved_order: Box<Account<'info, Order>>,
}

/// A reserved order needs GPUs a spot lease holds: the lease gets the market's preemption notice
/// and ends at `now + notice` (closed then as `Preempted`, without a slash); receipts pay its
/// seconds up to that moment and no further. Only spot leases are preempted, and only for a
/// reserved order the freed GPUs could serve (the program's own `check_assignable`, as if the
/// lease were already gone).
pub fn preempt_lease(ctx: Context<PreemptLease>) -> Result<()> {
    let now = Clock::get()?.unix_timestamp;
    let a = ctx.accounts;
    require!(
        a.order.terms.mode == OrderMode::Spot,
        GpumeshError::NotSpotLease
    );
    require!(
        a.reserved_order.terms.mode == OrderMode::Reserved,
        GpumeshError::NotReservedOrder
    );
    require!(a.lease.preempt_at == 0, GpumeshError::AlreadyPreempted);
    // The worker as it will be once this lease's GPUs are free.
    let mut freed = Box::new((**a.worker).clone());
    freed.gpus_leased = freed.gpus_leased.safe_sub(a.lease.gpus)?;
    freed.active_leases = freed.active_leases.safe_sub(1)?;
    let still_needed = a
        .reserved_order
        .terms
        .requirements
        .gpu_count
        .safe_sub(a.reserved_order.gpus_assigned)?;
    let gpus = a.lease.gpus.min(still_needed).max(1);
    check_assignable(&a.market, &a.reserved_order, &freed, gpus, now)?;
    let preempt_at = now.safe_add(a.market.params.preemption_notice)?;
    a.lease.preempt_at = preempt_at;
    a.lease.invariant()?;
    emit_event(&LeasePreempted {
        lease: a.lease.key(),
        order: a.order.key(),
        worker: a.worker.key(),
        reserved_order: a.reserved_order.key(),
        preempt_at,
    });
    Ok(())
}

/// Book-keeping shared by every way a lease ends: the order gets its GPUs back, the worker's GPUs
/// are free, the lease's GPUs stop sharing emission, and `LeaseClosed` is emitted. The caller's
/// accounts constraint closes the lease account (rent back to whoever paid it).
pub fn release_lease(
    market: &mut Market,
    order: &mut Order,
    worker: &mut Worker,
    lease: &Account<Lease>,
    now: i64,
    reason: CloseReason,
) -> Result<()> {
    emission::update(&mut market.emission, market.leased_gpus, now)?;
    market.leased_gpus = market.leased_gpus.safe_sub(lease.gpus as u64)?;
    let order_gpus_before = order.gpus_assigned;
    order.gpus_assigned = order_gpus_before.safe_sub(lease.gpus)?;
    order.active_leases = order.active_leases.safe_sub(1)?;
    order.refresh_status();
    let worker_gpus_before = worker.gpus_leased;
    worker.gpus_leased = worker_gpus_before.safe_sub(lease.gpus)?;
    worker.active_leases = worker.active_leases.safe_sub(1)?;
    market.active_leases = market.active_leases.safe_sub(1)?;
    order.invariant()?;
    worker.invariant()?;
    market.invariant()?;
    emit_event(&LeaseClosed {
        lease: lease.key(),
        order: lease.order,
        worker: lease.worker,
        nonce: lease.nonce,
        reason,
        gpus: lease.gpus,
        seconds_settled: lease.seconds_settled,
        amount_paid: lease.amount_paid,
        fee_paid: lease.fee_paid,
        order_gpus_before,
        order_gpus_after: order.gpus_assigned,
        worker_gpus_leased_before: worker_gpus_before,
        worker_gpus_leased_after: worker.gpus_leased,
    });
    Ok(())
}
