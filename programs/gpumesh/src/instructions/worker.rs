//! A supplier's instructions: register a machine, change its claim or price, bond and unbond
//! stake, claim earnings, and close the record when nothing is left in it.

use super::token::{deposit, withdraw};
use crate::errors::GpumeshError;
use crate::events::{
    EarningsClaimed, RewardsClaimed, StakeChangeKind, StakeChanged, WorkerClosed, WorkerRegistered,
    WorkerUpdated, emit_event,
};
use crate::math::SafeMath;
use crate::state::{HardwareClaim, Market, Worker, WorkerRecord, seeds};
use anchor_lang::prelude::*;
use anchor_spl::token::{Token, TokenAccount};

#[derive(AnchorSerialize, AnchorDeserialize, Clone, Debug)]
pub struct RegisterWorkerArgs {
    /// Hot key on the GPU machine that signs heartbeats and receipts.
    pub node_key: Pubkey,
    pub hardware: HardwareClaim,
    pub price_per_gpu_second: u64,
}

#[derive(Accounts)]
pub struct RegisterWorker<'info> {
    #[account(mut)]
    pub owner: Signer<'info>,
    #[account(mut)]
    pub market: Box<Account<'info, Market>>,
    #[account(
        init,
        payer = owner,
        space = Worker::SPACE,
        seeds = [seeds::WORKER, market.key().as_ref(), owner.key().as_ref()],
        bump,
    )]
    pub worker: Box<Account<'info, Worker>>,
    pub system_program: Program<'info, System>,
}

pub fn register_worker(ctx: Context<RegisterWorker>, args: RegisterWorkerArgs) -> Result<()> {
    args.hardware.validate()?;
    args.hardware.meets(&ctx.accounts.market.params)?;
    require!(args.price_per_gpu_second > 0, GpumeshError::InvalidPrice);
    let owner = ctx.accounts.owner.key();
    require!(args.node_key != owner, GpumeshError::NodeKeyIsOwner);
    let now = Clock::get()?.unix_timestamp;
    let market = &mut ctx.accounts.market;
    market.workers = market.workers.safe_add(1)?;
    let worker = &mut ctx.accounts.worker;
    worker.set_inner(Worker {
        version: Worker::VERSION,
        bump: ctx.bumps.worker,
        market: market.key(),
        owner,
        node_key: args.node_key,
        hardware: args.hardware,
        price_per_gpu_second: args.price_per_gpu_second,
        gpus_leased: 0,
        active_leases: 0,
        jailed: false,
        jailed_until: 0,
        stake: 0,
        unbonding: 0,
        unlock_ts: 0,
        earnings_claimable: 0,
        earnings_total: 0,
        rewards_claimable: 0,
        rewards_total: 0,
        record: WorkerRecord::default(),
        registered_ts: now,
        reserved: [0; 64],
    });
    worker.invariant()?;
    emit_event(&WorkerRegistered {
        market: market.key(),
        worker: worker.key(),
        owner,
        node_key: worker.node_key,
        hardware: worker.hardware,
        price_per_gpu_second: worker.price_per_gpu_second,
    });
    Ok(())
}

#[derive(AnchorSerialize, AnchorDeserialize, Clone, Debug, Default)]
pub struct UpdateWorkerArgs {
    pub node_key: Option<Pubkey>,
    pub hardware: Option<HardwareClaim>,
    /// A new asking price applies to future leases; a running lease keeps its agreed price.
    pub price_per_gpu_second: Option<u64>,
}

#[derive(Accounts)]
pub struct UpdateWorker<'info> {
    pub owner: Signer<'info>,
    pub market: Box<Account<'info, Market>>,
    #[account(
        mut,
        has_one = owner @ GpumeshError::NotWorkerOwner,
        has_one = market @ GpumeshError::WrongMarket,
    )]
    pub worker: Box<Account<'info, Worker>>,
}

pub fn update_worker(ctx: Context<UpdateWorker>, args: UpdateWorkerArgs) -> Result<()> {
    let worker = &mut ctx.accounts.worker;
    let price_before = worker.price_per_gpu_second;
    if args.node_key.is_some() || args.hardware.is_some() {
        // Receipts in flight are signed by the current key for the current hardware, and each
        // lease's slash share is its GPUs out of the current GPU count.
        require!(!worker.is_busy(), GpumeshError::WorkerBusy);
    }
    if let Some(node_key) = args.node_key {
        require!(node_key != worker.owner, GpumeshError::NodeKeyIsOwner);
        worker.node_key = node_key;
    }
    if let Some(hardware) = args.hardware {
        hardware.validate()?;
        hardware.meets(&ctx.accounts.market.params)?;
        worker.hardware = hardware;
    }
    if let Some(price) = args.price_per_gpu_second {
        require!(price > 0, GpumeshError::InvalidPrice);
        worker.price_per_gpu_second = price;
    }
    worker.invariant()?;
    emit_event(&WorkerUpdated {
        worker: worker.key(),
        price_before,
        price_after: worker.price_per_gpu_second,
        hardware_after: worker.hardware,
        node_key_after: worker.node_key,
    });
    Ok(())
}

/// Accounts shared by the instructions that move stake between the owner and the stake vault.
#[derive(Accounts)]
pub struct StakeAccounts<'info> {
    pub owner: Signer<'info>,
    #[account(mut)]
    pub market: Box<Account<'info, Market>>,
    #[account(
        mut,
        has_one = owner @ GpumeshError::NotWorkerOwner,
        has_one = market @ GpumeshError::WrongMarket,
    )]
    pub worker: Box<Account<'info, Worker>>,
    #[account(
        mut,
        constraint = owner_token.mint == market.mint @ GpumeshError::WrongMint,
        constraint = owner_token.owner == owner.key() @ GpumeshError::WrongTokenOwner,
    )]
    pub owner_token: Box<Account<'info, TokenAccount>>,
    #[account(mut, address = market.stake_vault @ GpumeshError::WrongVault)]
    pub stake_vault: Box<Account<'info, TokenAccount>>,
    pub token_program: Program<'info, Token>,
}

impl StakeAccounts<'_> {
    fn emit(&self, kind: StakeChangeKind, amount: u64, before: (u64, u64, u64)) -> Result<()> {
        self.worker.invariant()?;
        self.market.invariant()?;
        emit_event(&StakeChanged {
            worker: self.worker.key(),
            kind,
            amount,
            stake_before: before.0,
            stake_after: self.worker.stake,
            unbonding_before: before.1,
            unbonding_after: self.worker.unbonding,
            unlock_ts: self.worker.unlock_ts,
            vault_total_before: before.2,
            vault_total_after: self.market.stake_vault_expected()?,
        });
        Ok(())
    }

    fn snapshot(&self) -> Result<(u64, u64, u64)> {
        Ok((
            self.worker.stake,
            self.worker.unbonding,
            self.market.stake_vault_expected()?,
        ))
    }
}

pub fn stake(mut ctx: Context<StakeAccounts>, amount: u64) -> Result<()> {
    require!(amount > 0, GpumeshError::ZeroAmount);
    let a = &mut ctx.accounts;
    let before = a.snapshot()?;
    deposit(
        &a.token_program,
        &a.owner_token,
        &a.stake_vault,
        &a.owner,
        amount,
    )?;
    a.worker.stake = a.worker.stake.safe_add(amount)?;
    a.market.total_stake = a.market.total_stake.safe_add(amount)?;
    a.emit(StakeChangeKind::Deposit, amount, before)
}

/// Moves `amount` of bonded stake to unbonding. What the worker's leased GPUs need stays bonded.
/// The unlock time restarts for the whole unbonding balance: a later request never shortens an
/// earlier wait, and slashing can still reach it.
pub fn request_unstake(mut ctx: Context<StakeAccounts>, amount: u64) -> Result<()> {
    require!(amount > 0, GpumeshError::ZeroAmount);
    let now = Clock::get()?.unix_timestamp;
    let a = &mut ctx.accounts;
    let before = a.snapshot()?;
    require!(amount <= a.worker.stake, GpumeshError::InsufficientStake);
    let remaining = a.worker.stake.safe_sub(amount)?;
    let required =
        Worker::stake_required_for(a.worker.gpus_leased, a.market.params.min_stake_per_gpu)?;
    require!(remaining >= required, GpumeshError::StakeLockedByLease);
    a.worker.stake = remaining;
    a.worker.unbonding = a.worker.unbonding.safe_add(amount)?;
    a.worker.unlock_ts = now.safe_add(a.market.params.unbonding_period)?;
    a.market.total_stake = a.market.total_stake.safe_sub(amount)?;
    a.market.total_unbonding = a.market.total_unbonding.safe_add(amount)?;
    a.emit(StakeChangeKind::UnstakeRequested, amount, before)
}

pub fn withdraw_unstaked(mut ctx: Context<StakeAccounts>) -> Result<()> {
    let now = Clock::get()?.unix_timestamp;
    let a = &mut ctx.accounts;
    let before = a.snapshot()?;
    let amount = a.worker.unbonding;
    require!(amount > 0, GpumeshError::NothingUnbonding);
    require!(now >= a.worker.unlock_ts, GpumeshError::StakeStillLocked);
    require!(!a.worker.is_jailed(now), GpumeshError::WorkerJailed);
    a.worker.unbonding = 0;
    a.market.total_unbonding = a.market.total_unbonding.safe_sub(amount)?;
    withdraw(
        &a.token_program,
        &a.market,
        &a.stake_vault,
        &a.owner_token,
        amount,
    )?;
    a.emit(StakeChangeKind::Withdrawn, amount, before)
}

#[derive(Accounts)]
pub struct ClaimEarnings<'info> {
    pub owner: Signer<'info>,
    #[account(mut)]
    pub market: Box<Account<'info, Market>>,
    #[account(
        mut,
        has_one = owner @ GpumeshError::NotWorkerOwner,
        has_one = market @ GpumeshError::WrongMarket,
    )]
    pub worker: Box<Account<'info, Worker>>,
    #[account(
        mut,
        constraint = owner_token.mint == market.mint @ GpumeshError::WrongMint,
        constraint = owner_token.owner == owner.key() @ GpumeshError::WrongTokenOwner,
    )]
    pub owner_token: Box<Account<'info, TokenAccount>>,
    #[account(mut, address = market.escrow_vault @ GpumeshError::WrongVault)]
    pub escrow_vault: Box<Account<'info, TokenAccount>>,
    pub token_program: Program<'info, Token>,
}

pub fn claim_earnings(mut ctx: Context<ClaimEarnings>) -> Result<()> {
    let a = &mut ctx.accounts;
    let amount = a.worker.earnings_claimable;
    require!(amount > 0, GpumeshError::NothingToClaim);
    a.worker.earnings_claimable = 0;
    a.market.total_claimable = a.market.total_claimable.safe_sub(amount)?;
    withdraw(
        &a.token_program,
        &a.market,
        &a.escrow_vault,
        &a.owner_token,
        amount,
    )?;
    a.worker.invariant()?;
    a.market.invariant()?;
    emit_event(&EarningsClaimed {
        worker: a.worker.key(),
        amount,
        claimable_before: amount,
        claimable_after: 0,
    });
    Ok(())
}

#[derive(Accounts)]
pub struct CloseWorker<'info> {
    #[account(mut)]
    pub owner: Signer<'info>,
    #[account(mut)]
    pub market: Box<Account<'info, Market>>,
    #[account(
        mut,
        close = owner,
        has_one = owner @ GpumeshError::NotWorkerOwner,
        has_one = market @ GpumeshError::WrongMarket,
    )]
    pub worker: Box<Account<'info, Worker>>,
}

/// Closes a worker that holds nothing. A jailed worker cannot close (it would come back
/// unjailed under the same owner): it serves its jail and unjails first.
pub fn close_worker(ctx: Context<CloseWorker>) -> Result<()> {
    let now = Clock::get()?.unix_timestamp;
    let worker = &ctx.accounts.worker;
    require!(!worker.is_busy(), GpumeshError::WorkerBusy);
    require!(!worker.is_jailed(now), GpumeshError::WorkerJailed);
    require!(
        worker.stake == 0
            && worker.unbonding == 0
            && worker.earnings_claimable == 0
            && worker.rewards_claimable == 0,
        GpumeshError::WorkerNotEmpty
    );
    let market = &mut ctx.accounts.market;
    market.workers = market.workers.safe_sub(1)?;
    emit_event(&WorkerClosed {
        worker: worker.key(),
        owner: worker.owner,
    });
    Ok(())
}

#[derive(Accounts)]
pub struct ClaimRewards<'info> {
    pub owner: Signer<'info>,
    #[account(mut)]
    pub market: Box<Account<'info, Market>>,
    #[account(
        mut,
        has_one = owner @ GpumeshError::NotWorkerOwner,
        has_one = market @ GpumeshError::WrongMarket,
    )]
    pub worker: Box<Account<'info, Worker>>,
    #[account(
        mut,
        constraint = owner_token.mint == market.mint @ GpumeshError::WrongMint,
        constraint = owner_token.owner == owner.key() @ GpumeshError::WrongTokenOwner,
    )]
    pub owner_token: Box<Account<'info, TokenAccount>>,
    #[account(mut, address = market.rewards_vault @ GpumeshError::WrongVault)]
    pub rewards_vault: Box<Account<'info, TokenAccount>>,
    pub token_program: Program<'info, Token>,
}

/// Pays the worker owner the emission rewards its settled GPU-seconds earned.
pub fn claim_rewards(ctx: Context<ClaimRewards>) -> Result<()> {
    let a = ctx.accounts;
    let amount = a.worker.rewards_claimable;
    require!(amount > 0, GpumeshError::NothingToClaim);
    let paid_before = a.market.emission.paid;
    a.worker.rewards_claimable = 0;
    a.market.emission.paid = paid_before.safe_add(amount)?;
    withdraw(
        &a.token_program,
        &a.market,
        &a.rewards_vault,
        &a.owner_token,
        amount,
    )?;
    a.worker.invariant()?;
    a.market.invariant()?;
    emit_event(&RewardsClaimed {
        worker: a.worker.key(),
        amount,
        paid_before,
        paid_after: a.market.emission.paid,
    });
    Ok(())
}
