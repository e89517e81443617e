//! A buyer's instructions: open an order with its escrow, add to the escrow, and close the order
//! (cancelled or completed) to get the unspent escrow back once no lease is left on it.

use super::token::{deposit, withdraw};
use crate::errors::GpumeshError;
use crate::events::{OrderClosed, OrderCreated, OrderToppedUp, emit_event};
use crate::math::{SafeMath, lease_cost};
use crate::state::{
    ACCOUNT_VERSION, Market, Order, OrderMode, OrderRequirements, OrderStatus, seeds,
};
use anchor_lang::prelude::*;
use anchor_spl::token::{Token, TokenAccount};

#[derive(AnchorSerialize, AnchorDeserialize, Clone, Debug)]
pub struct CreateOrderArgs {
    /// Chosen by the buyer; unique per buyer and market (it is part of the order's address).
    pub order_id: u64,
    pub requirements: OrderRequirements,
    pub max_price_per_gpu_second: u64,
    /// Seconds of service per lease.
    pub duration: u64,
    pub mode: OrderMode,
    pub job_spec_hash: [u8; 32],
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
    args.requirements.validate()?;
    require!(args.duration > 0, GpumeshError::InvalidOrder);
    require!(
        args.max_price_per_gpu_second > 0,
        GpumeshError::InvalidPrice
    );
    require!(args.deposit > 0, GpumeshError::ZeroAmount);
    if args.mode == OrderMode::Reserved {
        let term_cost = lease_cost(
            args.duration,
            args.requirements.gpu_count,
            args.max_price_per_gpu_second,
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
        version: ACCOUNT_VERSION,
        bump: ctx.bumps.order,
        market: a.market.key(),
        buyer: a.buyer.key(),
        order_id: args.order_id,
        requirements: args.requirements,
        max_price_per_gpu_second: args.max_price_per_gpu_second,
        duration: args.duration,
        mode: args.mode,
        job_spec_hash: args.job_spec_hash,
        status: OrderStatus::Open,
        escrow_deposited: args.deposit,
        escrow_remaining: args.deposit,
        total_paid: 0,
        gpus_assigned: 0,
        active_leases: 0,
        created_ts: now,
        reserved: [0; 64],
    });
    a.order.invariant()?;
    a.market.invariant()?;
    emit_event(&OrderCreated {
        order: a.order.key(),
        buyer: a.buyer.key(),
        order_id: args.order_id,
        requirements: args.requirements,
        max_price_per_gpu_second: args.max_price_per_gpu_second,
        duration: args.duration,
        mode: args.mode,
        job_spec_hash: args.job_spec_hash,
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

fn close_order(mut ctx: Context<CloseOrder>, completed: bool) -> Result<()> {
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
    close_order(ctx, false)
}

pub fn complete_order(ctx: Context<CloseOrder>) -> Result<()> {
    let signer = ctx.accounts.signer.key();
    require!(
        signer == ctx.accounts.order.buyer || signer == ctx.accounts.market.orchestrator,
        GpumeshError::NotBuyer
    );
    require!(
        ctx.accounts.order.total_paid > 0,
        GpumeshError::NothingServed
    );
    close_order(ctx, true)
}
