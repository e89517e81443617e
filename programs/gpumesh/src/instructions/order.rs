//! A buyer's instructions: open an order with its escrow, add to the escrow, and close the order
//! (cancelled or completed) to get the unspent escrow back once no lease is left on it.
//!
//! The buyer's exit, whatever the orchestrator does: `request_close` stops new leases and caps
//! what receipts may claim at that moment; the orchestrator then has the market's exit window to
//! settle the final receipts and close the leases; after it, `end_lease` lets the buyer end each
//! remaining lease itself, and `cancel_order` returns the unspent escrow. So a buyer's escrow is
//! back at most `buyer_exit_window` seconds (≤ 3,600, fixed when the close is requested) after it
//! asks, plus the time its own transactions take to land.

use super::lease::release_lease;
use super::token::{deposit, withdraw};
use crate::errors::GpumeshError;
use crate::events::{OrderCloseRequested, OrderClosed, OrderCreated, OrderToppedUp, emit_event};
use crate::math::{SafeMath, lease_cost};
use crate::state::{
    CloseReason, Lease, Market, Order, OrderMode, OrderStatus, OrderTerms, Worker, seeds,
};
use anchor_lang::prelude::*;
use anchor_spl::token::{Token, TokenAccount};

#[derive(AnchorSerialize, AnchorDeserialize, Clone, Debug)]
pub struct CreateOrderArgs {
    /// Chosen by the buyer; unique per buyer and market (it is part of the order's address).
    pub order_id: u64,
    pub terms: OrderTerms,
    pub deposit: u64,
}

#[derive(Accounts)]
#[instruction(args: CreateOrderArgs)]
pub struct CreateOrder<'info> {
    #[account(mut)]
    pub buyer: Signer<'info>,
    #[account(mut)]
    pub market: Box<Account<'info, Market>>,
    #[account(
        init,
        payer = buyer,
        space = Order::SPACE,
        seeds = [seeds::ORDER, market.key().as_ref(), buyer.key().as_ref(), &args.order_id.to_le_bytes()],
        bump,
    )]
    pub order: Box<Account<'info, Order>>,
    #[account(
        mut,
        constraint = buyer_token.mint == market.mint @ GpumeshError::WrongMint,
        constraint = buyer_token.owner == buyer.key() @ GpumeshError::WrongTokenOwner,
    )]
    pub buyer_token: Box<Account<'info, TokenAccount>>,
    #[account(mut, address = market.escrow_vault @ GpumeshError::WrongVault)]
    pub escrow_vault: Box<Account<'info, TokenAccount>>,
    pub token_program: Program<'info, Token>,
    pub system_program: Program<'info, System>,
}

pub fn create_order(mut ctx: Context<CreateOrder>, args: CreateOrderArgs) -> Result<()> {
    let a = &mut ctx.accounts;
    require!(!a.market.paused, GpumeshError::MarketPaused);
    let terms = args.terms;
    terms.validate()?;
    require!(args.deposit > 0, GpumeshError::ZeroAmount);
    if terms.mode == OrderMode::Reserved {
        let term_cost = lease_cost(
            terms.duration,
            terms.requirements.gpu_count,
            terms.max_price_per_gpu_second,
        )?;
        require!(args.deposit >= term_cost, GpumeshError::ReservedUnderfunded);
    }
    let now = Clock::get()?.unix_timestamp;
    deposit(
        &a.token_program,
        &a.buyer_token,
        &a.escrow_vault,
        &a.buyer,
        args.deposit,
    )?;
    a.market.total_escrow = a.market.total_escrow.safe_add(args.deposit)?;
    a.market.open_orders = a.market.open_orders.safe_add(1)?;
    a.order.set_inner(Order {
        version: Order::VERSION,
        bump: ctx.bumps.order,
        market: a.market.key(),
        buyer: a.buyer.key(),
        order_id: args.order_id,
        terms,
        status: OrderStatus::Open,
        escrow_deposited: args.deposit,
        escrow_remaining: args.deposit,
        total_paid: 0,
        gpus_assigned: 0,
        active_leases: 0,
        created_ts: now,
        close_requested_ts: 0,
        buyer_exit_ts: 0,
        reserved: [0; 64],
    });
    a.order.invariant()?;
    a.market.invariant()?;
    emit_event(&OrderCreated {
        order: a.order.key(),
        buyer: a.buyer.key(),
        order_id: args.order_id,
        terms,
        escrow_before: 0,
        escrow_after: args.deposit,
    });
    Ok(())
}

#[derive(Accounts)]
pub struct TopUpOrder<'info> {
    pub buyer: Signer<'info>,
    #[account(mut)]
    pub market: Box<Account<'info, Market>>,
    #[account(
        mut,
        has_one = buyer @ GpumeshError::NotBuyer,
        has_one = market @ GpumeshError::WrongMarket,
    )]
    pub order: Box<Account<'info, Order>>,
    #[account(
        mut,
        constraint = buyer_token.mint == market.mint @ GpumeshError::WrongMint,
        constraint = buyer_token.owner == buyer.key() @ GpumeshError::WrongTokenOwner,
    )]
    pub buyer_token: Box<Account<'info, TokenAccount>>,
    #[account(mut, address = market.escrow_vault @ GpumeshError::WrongVault)]
    pub escrow_vault: Box<Account<'info, TokenAccount>>,
    pub token_program: Program<'info, Token>,
}

pub fn top_up_order(mut ctx: Context<TopUpOrder>, amount: u64) -> Result<()> {
    require!(amount > 0, GpumeshError::ZeroAmount);
    let a = &mut ctx.accounts;
    let before = a.order.escrow_remaining;
    deposit(
        &a.token_program,
        &a.buyer_token,
        &a.escrow_vault,
        &a.buyer,
        amount,
    )?;
    a.order.escrow_deposited = a.order.escrow_deposited.safe_add(amount)?;
    a.order.escrow_remaining = a.order.escrow_remaining.safe_add(amount)?;
    a.market.total_escrow = a.market.total_escrow.safe_add(amount)?;
    a.order.invariant()?;
    a.market.invariant()?;
    emit_event(&OrderToppedUp {
        order: a.order.key(),
        amount,
        escrow_before: before,
        escrow_after: a.order.escrow_remaining,
    });
    Ok(())
}

#[derive(Accounts)]
pub struct RequestClose<'info> {
    pub buyer: Signer<'info>,
    pub market: Box<Account<'info, Market>>,
    #[account(
        mut,
        has_one = buyer @ GpumeshError::NotBuyer,
        has_one = market @ GpumeshError::WrongMarket,
    )]
    pub order: Box<Account<'info, Order>>,
}

/// The buyer asks to close its order. From now on `assign` refuses it and no receipt pays for a
/// second after this moment; the orchestrator has `buyer_exit_window` seconds to settle the final
/// receipts and close the leases, after which the buyer may end them itself (`end_lease`). Works
/// while the market is paused: a buyer's way out never depends on anyone else.
pub fn request_close(ctx: Context<RequestClose>) -> Result<()> {
    let now = Clock::get()?.unix_timestamp;
    let window = ctx.accounts.market.params.buyer_exit_window;
    let order = &mut ctx.accounts.order;
    require!(!order.is_closing(), GpumeshError::OrderClosing);
    order.close_requested_ts = now;
    order.buyer_exit_ts = now.safe_add(window)?;
    order.refresh_status();
    order.invariant()?;
    emit_event(&OrderCloseRequested {
        order: order.key(),
        buyer: order.buyer,
        close_requested_ts: order.close_requested_ts,
        buyer_exit_ts: order.buyer_exit_ts,
        active_leases: order.active_leases,
        escrow_remaining: order.escrow_remaining,
    });
    Ok(())
}

#[derive(Accounts)]
pub struct EndLease<'info> {
    pub buyer: Signer<'info>,
    #[account(mut)]
    pub market: Box<Account<'info, Market>>,
    #[account(
        mut,
        has_one = buyer @ GpumeshError::NotBuyer,
        has_one = market @ GpumeshError::WrongMarket,
    )]
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

/// After the exit window of a close it asked for, the buyer ends one of the order's leases
/// itself: no slash (nobody can tell who failed), what was settled stays paid, the worker's GPUs
/// are free again. When the last lease is gone, `cancel_order` returns the unspent escrow.
pub fn end_lease(ctx: Context<EndLease>) -> Result<()> {
    let now = Clock::get()?.unix_timestamp;
    let a = ctx.accounts;
    require!(a.order.is_closing(), GpumeshError::OrderNotClosing);
    require!(now >= a.order.buyer_exit_ts, GpumeshError::ExitWindowOpen);
    release_lease(
        &mut a.market,
        &mut a.order,
        &mut a.worker,
        &a.lease,
        now,
        CloseReason::BuyerExit,
    )
}

/// Closing an order: the buyer cancels it, or the buyer or the orchestrator marks it completed.
/// Either way every lease must already be closed (with its final settlement), the unspent escrow
/// goes back to the buyer's token account and the account's rent to the buyer.
#[derive(Accounts)]
pub struct CloseOrder<'info> {
    pub signer: Signer<'info>,
    /// CHECK: receives the order account's rent; must be the order's buyer (has_one below).
    #[account(mut)]
    pub buyer: UncheckedAccount<'info>,
    #[account(mut)]
    pub market: Box<Account<'info, Market>>,
    #[account(
        mut,
        close = buyer,
        has_one = buyer @ GpumeshError::NotBuyer,
        has_one = market @ GpumeshError::WrongMarket,
    )]
    pub order: Box<Account<'info, Order>>,
    #[account(
        mut,
        constraint = buyer_token.mint == market.mint @ GpumeshError::WrongMint,
        constraint = buyer_token.owner == order.buyer @ GpumeshError::WrongTokenOwner,
    )]
    pub buyer_token: Box<Account<'info, TokenAccount>>,
    #[account(mut, address = market.escrow_vault @ GpumeshError::WrongVault)]
    pub escrow_vault: Box<Account<'info, TokenAccount>>,
    pub token_program: Program<'info, Token>,
}

fn close_order(mut ctx: Context<CloseOrder>, completed: bool, result_hash: [u8; 32]) -> Result<()> {
    let a = &mut ctx.accounts;
    require!(
        a.order.active_leases == 0,
        GpumeshError::OrderHasActiveLeases
    );
    let refund = a.order.escrow_remaining;
    a.order.escrow_remaining = 0;
    a.order.escrow_deposited = a.order.escrow_deposited.safe_sub(refund)?;
    a.market.total_escrow = a.market.total_escrow.safe_sub(refund)?;
    a.market.open_orders = a.market.open_orders.safe_sub(1)?;
    withdraw(
        &a.token_program,
        &a.market,
        &a.escrow_vault,
        &a.buyer_token,
        refund,
    )?;
    a.order.invariant()?;
    a.market.invariant()?;
    emit_event(&OrderClosed {
        order: a.order.key(),
        buyer: a.order.buyer,
        completed,
        result_hash,
        escrow_before: refund,
        refund,
        escrow_after: 0,
        total_paid: a.order.total_paid,
    });
    Ok(())
}

pub fn cancel_order(ctx: Context<CloseOrder>) -> Result<()> {
    require_keys_eq!(
        ctx.accounts.signer.key(),
        ctx.accounts.order.buyer,
        GpumeshError::NotBuyer
    );
    close_order(ctx, false, [0; 32])
}

/// The buyer or the orchestrator marks a served order completed, with the content hash of the
/// job's results (recorded in the `OrderClosed` event; zero when the job produced none).
pub fn complete_order(ctx: Context<CloseOrder>, result_hash: [u8; 32]) -> Result<()> {
    let signer = ctx.accounts.signer.key();
    require!(
        signer == ctx.accounts.order.buyer || signer == ctx.accounts.market.orchestrator,
        GpumeshError::NotBuyer
    );
    require!(
        ctx.accounts.order.total_paid > 0,
        GpumeshError::NothingServed
    );
    close_order(ctx, true, result_hash)
}
