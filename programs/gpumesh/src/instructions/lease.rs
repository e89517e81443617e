//! The orchestrator's lease instructions: put a worker on an order (`assign`) and take it off
//! (`close_lease`), freeing the worker. Settlement of receipts is in `settle`.

use crate::errors::GpumeshError;
use crate::events::{LeaseAssigned, LeaseClosed, emit_event};
use crate::math::SafeMath;
use crate::state::{
    ACCOUNT_VERSION, CloseReason, Lease, Market, Order, Worker, WorkerStatus, seeds,
};
use anchor_lang::prelude::*;

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

pub fn assign(mut ctx: Context<Assign>, gpus: u16) -> Result<()> {
    let now = Clock::get()?.unix_timestamp;
    let a = &mut ctx.accounts;
    check_assignable(&a.market, &a.order, &a.worker, gpus, now)?;
    let lease_key = a.lease.key();
    let price = a.worker.price_per_gpu_second;
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
}

/// Takes the lease off the books: the order gets its GPUs back to re-assign and the worker is
/// free. Whatever the worker served must be settled before (the client sends the final
/// `settle` in the same transaction); seconds not settled by then are not paid.
pub fn close_lease(mut ctx: Context<CloseLease>, reason: CloseReason) -> Result<()> {
    require!(
        matches!(reason, CloseReason::Completed | CloseReason::Cancelled),
        GpumeshError::InvalidCloseReason
    );
    let a = &mut ctx.accounts;
    release_lease(&mut a.market, &mut a.order, &mut a.worker, &a.lease)?;
    if reason == CloseReason::Completed {
        a.worker.record.leases_completed = a.worker.record.leases_completed.safe_add(1)?;
    }
    emit_event(&LeaseClosed {
        lease: a.lease.key(),
        order: a.order.key(),
        worker: a.worker.key(),
        reason,
        seconds_settled: a.lease.seconds_settled,
        amount_paid: a.lease.amount_paid,
        order_gpus_before: a.order.gpus_assigned.safe_add(a.lease.gpus)?,
        order_gpus_after: a.order.gpus_assigned,
    });
    Ok(())
}

/// Book-keeping shared by every way a lease ends.
pub fn release_lease(
    market: &mut Market,
    order: &mut Order,
    worker: &mut Worker,
    lease: &Account<Lease>,
) -> Result<()> {
    require!(
        worker.active_lease == Some(lease.key()),
        GpumeshError::LeaseNotActive
    );
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
    market.invariant()
}
