//! The market authority's instructions: create a market for a payment mint, tune it, fund the
//! suppliers' rewards and withdraw protocol fees.

use super::token::{deposit, withdraw};
use crate::emission;
use crate::errors::GpumeshError;
use crate::events::{
    MarketInitialized, MarketUpdated, RewardsFunded, TreasuryWithdrawn, emit_event,
};
use crate::math::{SafeMath, bps_of};
use crate::state::{
    BPS_DENOMINATOR, DAY, EmissionSchedule, GPU_CLASS_SLOTS, Market, MarketParams, seeds,
};
use anchor_lang::prelude::*;
use anchor_spl::token::{Mint, Token, TokenAccount};

#[derive(AnchorSerialize, AnchorDeserialize, Clone, Debug)]
pub struct InitMarketArgs {
    pub orchestrator: Pubkey,
    pub params: MarketParams,
    /// Initial reference price per GPU class (0 = unknown until the first lease).
    pub reference_prices: [u64; GPU_CLASS_SLOTS],
    /// Token supply the emission schedule is a share of (e.g. 1,000,000,000 tokens, in base
    /// units), the suppliers' share of it in bps (e.g. 3,000 = 30%), when the linear release
    /// starts (from a day before the market's creation to a year after it; what elapsed before
    /// the creation is counted unfunded) and how long it lasts (e.g. 12 years).
    pub emission_supply: u64,
    pub emission_supplier_share_bps: u16,
    pub emission_start_ts: i64,
    pub emission_duration: i64,
}

#[derive(Accounts)]
pub struct InitMarket<'info> {
    #[account(mut)]
    pub authority: Signer<'info>,
    pub mint: Box<Account<'info, Mint>>,
    #[account(
        init,
        payer = authority,
        space = Market::SPACE,
        seeds = [seeds::MARKET, mint.key().as_ref(), authority.key().as_ref()],
        bump,
    )]
    pub market: Box<Account<'info, Market>>,
    #[account(
        init,
        payer = authority,
        token::mint = mint,
        token::authority = market,
        seeds = [seeds::STAKE_VAULT, market.key().as_ref()],
        bump,
    )]
    pub stake_vault: Box<Account<'info, TokenAccount>>,
    #[account(
        init,
        payer = authority,
        token::mint = mint,
        token::authority = market,
        seeds = [seeds::ESCROW_VAULT, market.key().as_ref()],
        bump,
    )]
    pub escrow_vault: Box<Account<'info, TokenAccount>>,
    #[account(
        init,
        payer = authority,
        token::mint = mint,
        token::authority = market,
        seeds = [seeds::TREASURY_VAULT, market.key().as_ref()],
        bump,
    )]
    pub treasury_vault: Box<Account<'info, TokenAccount>>,
    #[account(
        init,
        payer = authority,
        token::mint = mint,
        token::authority = market,
        seeds = [seeds::REWARDS_VAULT, market.key().as_ref()],
        bump,
    )]
    pub rewards_vault: Box<Account<'info, TokenAccount>>,
    pub token_program: Program<'info, Token>,
    pub system_program: Program<'info, System>,
}

pub fn init_market(mut ctx: Context<InitMarket>, args: InitMarketArgs) -> Result<()> {
    args.params.validate()?;
    require_keys_neq!(
        args.orchestrator,
        Pubkey::default(),
        GpumeshError::InvalidMarketParams
    );
    require!(
        args.emission_supplier_share_bps as u64 <= BPS_DENOMINATOR,
        GpumeshError::InvalidEmission
    );
    let emission_total = bps_of(args.emission_supply, args.emission_supplier_share_bps)?;
    require!(
        emission_total == 0 || args.emission_duration > 0,
        GpumeshError::InvalidEmission
    );
    let now = Clock::get()?.unix_timestamp;
    if emission_total > 0 {
        let earliest = now.safe_sub(DAY)?;
        let latest = now.safe_add(365 * DAY)?;
        require!(
            (earliest..=latest).contains(&args.emission_start_ts),
            GpumeshError::EmissionStartOutOfRange
        );
    }
    let mut schedule = EmissionSchedule {
        total: emission_total,
        start_ts: args.emission_start_ts,
        duration: args.emission_duration,
        last_update_ts: now,
        ..EmissionSchedule::default()
    };
    // Whatever the schedule unlocked before the market existed, nobody could have earned.
    schedule.unfunded = emission::unlocked(&schedule, now)?;
    let accounts = &mut ctx.accounts;
    let market = &mut accounts.market;
    market.set_inner(Market {
        version: Market::VERSION,
        bump: ctx.bumps.market,
        paused: false,
        creator: accounts.authority.key(),
        authority: accounts.authority.key(),
        orchestrator: args.orchestrator,
        mint: accounts.mint.key(),
        stake_vault: accounts.stake_vault.key(),
        escrow_vault: accounts.escrow_vault.key(),
        treasury_vault: accounts.treasury_vault.key(),
        rewards_vault: accounts.rewards_vault.key(),
        params: args.params,
        reference_prices: args.reference_prices,
        reference_updated_ts: [0; GPU_CLASS_SLOTS],
        emission: schedule,
        total_stake: 0,
        total_unbonding: 0,
        total_escrow: 0,
        total_claimable: 0,
        treasury_balance: 0,
        total_burned: 0,
        total_gpu_seconds: 0,
        leased_gpus: 0,
        leases_assigned: 0,
        workers: 0,
        open_orders: 0,
        active_leases: 0,
        reserved: [0; 128],
    });
    market.invariant()?;
    emit_event(&MarketInitialized {
        market: market.key(),
        mint: market.mint,
        authority: market.authority,
        orchestrator: market.orchestrator,
        params: market.params,
        emission_total: market.emission.total,
        emission_start_ts: market.emission.start_ts,
        emission_duration: market.emission.duration,
    });
    Ok(())
}

#[derive(AnchorSerialize, AnchorDeserialize, Clone, Debug, Default)]
pub struct UpdateMarketArgs {
    pub params: Option<MarketParams>,
    pub orchestrator: Option<Pubkey>,
    pub new_authority: Option<Pubkey>,
    pub paused: Option<bool>,
    pub reference_prices: Option<[u64; GPU_CLASS_SLOTS]>,
}

#[derive(Accounts)]
pub struct UpdateMarket<'info> {
    pub authority: Signer<'info>,
    #[account(mut, has_one = authority @ GpumeshError::NotMarketAuthority)]
    pub market: Box<Account<'info, Market>>,
}

pub fn update_market(ctx: Context<UpdateMarket>, args: UpdateMarketArgs) -> Result<()> {
    let market = &mut ctx.accounts.market;
    let params_before = market.params;
    let orchestrator_before = market.orchestrator;
    if let Some(params) = args.params {
        params.validate()?;
        market.params = params;
    }
    if let Some(orchestrator) = args.orchestrator {
        require_keys_neq!(
            orchestrator,
            Pubkey::default(),
            GpumeshError::InvalidMarketParams
        );
        market.orchestrator = orchestrator;
    }
    if let Some(authority) = args.new_authority {
        // The default key has no private key: handing the market to it would lock it forever.
        require_keys_neq!(
            authority,
            Pubkey::default(),
            GpumeshError::InvalidMarketParams
        );
        market.authority = authority;
    }
    if let Some(paused) = args.paused {
        market.paused = paused;
    }
    if let Some(prices) = args.reference_prices {
        market.reference_prices = prices;
    }
    market.invariant()?;
    emit_event(&MarketUpdated {
        market: market.key(),
        params_before,
        params_after: market.params,
        orchestrator_before,
        orchestrator_after: market.orchestrator,
        authority_after: market.authority,
        paused_after: market.paused,
    });
    Ok(())
}

/// The authority moving tokens between its own token account and the market's rewards or
/// treasury vault.
#[derive(Accounts)]
pub struct AuthorityTransfer<'info> {
    pub authority: Signer<'info>,
    #[account(mut, has_one = authority @ GpumeshError::NotMarketAuthority)]
    pub market: Box<Account<'info, Market>>,
    #[account(mut, constraint = authority_token.mint == market.mint @ GpumeshError::WrongMint)]
    pub authority_token: Box<Account<'info, TokenAccount>>,
    /// The rewards vault (`fund_rewards`) or the treasury vault (`withdraw_treasury`).
    #[account(mut)]
    pub vault: Box<Account<'info, TokenAccount>>,
    pub token_program: Program<'info, Token>,
}

/// Puts the suppliers' allocation (or part of it) into the rewards vault. The release up to now
/// is accounted first, against the funding there was: new funding pays only seconds still to
/// come. Funding never exceeds what the schedule can still release.
pub fn fund_rewards(ctx: Context<AuthorityTransfer>, amount: u64) -> Result<()> {
    require!(amount > 0, GpumeshError::ZeroAmount);
    let a = ctx.accounts;
    require_keys_eq!(
        a.vault.key(),
        a.market.rewards_vault,
        GpumeshError::WrongVault
    );
    require_keys_eq!(
        a.authority_token.owner,
        a.authority.key(),
        GpumeshError::WrongTokenOwner
    );
    let now = Clock::get()?.unix_timestamp;
    let leased = a.market.leased_gpus;
    emission::update(&mut a.market.emission, leased, now)?;
    let before = a.market.emission.funded;
    require!(
        amount <= emission::fundable(&a.market.emission)?,
        GpumeshError::EmissionOverfunded
    );
    let after = before.safe_add(amount)?;
    deposit(
        &a.token_program,
        &a.authority_token,
        &a.vault,
        &a.authority,
        amount,
    )?;
    a.market.emission.funded = after;
    a.market.invariant()?;
    emit_event(&RewardsFunded {
        amount,
        funded_before: before,
        funded_after: after,
        unfunded: a.market.emission.unfunded,
    });
    Ok(())
}

/// The authority, and nobody else, withdraws accrued protocol fees (to any token account of the
/// market's mint).
pub fn withdraw_treasury(ctx: Context<AuthorityTransfer>, amount: u64) -> Result<()> {
    require!(amount > 0, GpumeshError::ZeroAmount);
    let a = ctx.accounts;
    require_keys_eq!(
        a.vault.key(),
        a.market.treasury_vault,
        GpumeshError::WrongVault
    );
    let before = a.market.treasury_balance;
    require!(amount <= before, GpumeshError::TreasuryInsufficient);
    a.market.treasury_balance = before.safe_sub(amount)?;
    withdraw(
        &a.token_program,
        &a.market,
        &a.vault,
        &a.authority_token,
        amount,
    )?;
    a.market.invariant()?;
    emit_event(&TreasuryWithdrawn {
        amount,
        to: a.authority_token.key(),
        treasury_before: before,
        treasury_after: a.market.treasury_balance,
    });
    Ok(())
}
