//! gpumesh: an open market for GPU compute. Suppliers stake and rent out GPUs, buyers pay per
//! second from escrow, an orchestrator matches them and settles on chain only what signed
//! receipts prove was served.
//!
//! This file only hands each instruction on to its handler in `instructions/`.

#![allow(unexpected_cfgs)]

use anchor_lang::prelude::*;

pub mod emission;
pub mod errors;
pub mod events;
pub mod instructions;
pub mod math;
pub mod receipt;
pub mod state;

use instructions::*;
use state::CloseReason;

declare_id!("GYw39QwiZ2MB8G7hWu9Jo9KzxJdxkbLYWLoFd97qfBYX");

#[program]
pub mod gpumesh {
    use super::*;

    // ---- market authority ----

    pub fn init_market(ctx: Context<InitMarket>, args: InitMarketArgs) -> Result<()> {
        instructions::admin::init_market(ctx, args)
    }

    pub fn update_market(ctx: Context<UpdateMarket>, args: UpdateMarketArgs) -> Result<()> {
        instructions::admin::update_market(ctx, args)
    }

    pub fn fund_rewards(ctx: Context<AuthorityTransfer>, amount: u64) -> Result<()> {
        instructions::admin::fund_rewards(ctx, amount)
    }

    pub fn withdraw_treasury(ctx: Context<AuthorityTransfer>, amount: u64) -> Result<()> {
        instructions::admin::withdraw_treasury(ctx, amount)
    }

    // ---- suppliers ----

    pub fn register_worker(ctx: Context<RegisterWorker>, args: RegisterWorkerArgs) -> Result<()> {
        instructions::worker::register_worker(ctx, args)
    }

    pub fn update_worker(ctx: Context<UpdateWorker>, args: UpdateWorkerArgs) -> Result<()> {
        instructions::worker::update_worker(ctx, args)
    }

    pub fn stake(ctx: Context<StakeAccounts>, amount: u64) -> Result<()> {
        instructions::worker::stake(ctx, amount)
    }

    pub fn request_unstake(ctx: Context<StakeAccounts>, amount: u64) -> Result<()> {
        instructions::worker::request_unstake(ctx, amount)
    }

    pub fn withdraw_unstaked(ctx: Context<StakeAccounts>) -> Result<()> {
        instructions::worker::withdraw_unstaked(ctx)
    }

    pub fn claim_earnings(ctx: Context<ClaimEarnings>) -> Result<()> {
        instructions::worker::claim_earnings(ctx)
    }

    pub fn claim_rewards(ctx: Context<ClaimRewards>) -> Result<()> {
        instructions::worker::claim_rewards(ctx)
    }

    pub fn unjail(ctx: Context<Unjail>) -> Result<()> {
        instructions::slash::unjail(ctx)
    }

    pub fn close_worker(ctx: Context<CloseWorker>) -> Result<()> {
        instructions::worker::close_worker(ctx)
    }

    // ---- buyers ----

    pub fn create_order(ctx: Context<CreateOrder>, args: CreateOrderArgs) -> Result<()> {
        instructions::order::create_order(ctx, args)
    }

    pub fn top_up_order(ctx: Context<TopUpOrder>, amount: u64) -> Result<()> {
        instructions::order::top_up_order(ctx, amount)
    }

    pub fn cancel_order(ctx: Context<CloseOrder>) -> Result<()> {
        instructions::order::cancel_order(ctx)
    }

    pub fn complete_order(ctx: Context<CloseOrder>, result_hash: [u8; 32]) -> Result<()> {
        instructions::order::complete_order(ctx, result_hash)
    }

    pub fn request_close(ctx: Context<RequestClose>) -> Result<()> {
        instructions::order::request_close(ctx)
    }

    pub fn end_lease(ctx: Context<EndLease>) -> Result<()> {
        instructions::order::end_lease(ctx)
    }

    // ---- orchestrator ----

    pub fn assign(ctx: Context<Assign>, gpus: u16) -> Result<()> {
        instructions::lease::assign(ctx, gpus)
    }

    pub fn settle<'info>(
        ctx: Context<'info, Settle<'info>>,
        receipts: Vec<ReceiptArgs>,
    ) -> Result<()> {
        instructions::settle::settle(ctx, receipts)
    }

    pub fn settle_worker_receipts<'info>(ctx: Context<'info, Settle<'info>>) -> Result<()> {
        instructions::settle::settle_worker_receipts(ctx)
    }

    pub fn close_lease(ctx: Context<CloseLease>, reason: CloseReason) -> Result<()> {
        instructions::lease::close_lease(ctx, reason)
    }

    pub fn preempt_lease(ctx: Context<PreemptLease>) -> Result<()> {
        instructions::lease::preempt_lease(ctx)
    }

    pub fn slash_fraud(ctx: Context<SlashFraud>, evidence_hash: [u8; 32]) -> Result<()> {
        instructions::slash::slash_fraud(ctx, evidence_hash)
    }

    // ---- anyone ----

    pub fn expire_lease(ctx: Context<ExpireLease>) -> Result<()> {
        instructions::slash::expire_lease(ctx)
    }
}
