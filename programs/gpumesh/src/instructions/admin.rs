//! The market authority's instructions: create a market for a payment mint, tune it.

use crate::errors::GpumeshError;
use crate::events::{MarketInitialized, MarketUpdated, emit_event};
use crate::state::{
    ACCOUNT_VERSION, EmissionSchedule, GPU_CLASS_SLOTS, Market, MarketParams, seeds,
};
use anchor_lang::prelude::*;
use anchor_spl::token::{Mint, Token, TokenAccount};

#[derive(AnchorSerialize, AnchorDeserialize, Clone, Debug)]
pub struct InitMarketArgs {
    pub orchestrator: Pubkey,
    pub params: MarketParams,
    /// Initial reference price per GPU class (0 = unknown until the first lease).
    pub reference_prices: [u64; GPU_CLASS_SLOTS],
    /// Suppliers' emission allocation, its start and its duration (seconds).
    pub emission_total: u64,
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
        seeds = [seeds::MARKET, mint.key().as_ref()],
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
        args.emission_total == 0 || args.emission_duration > 0,
        GpumeshError::InvalidEmission
    );
    let accounts = &mut ctx.accounts;
    let market = &mut accounts.market;
    market.set_inner(Market {
        version: ACCOUNT_VERSION,
        bump: ctx.bumps.market,
        stake_vault_bump: ctx.bumps.stake_vault,
        escrow_vault_bump: ctx.bumps.escrow_vault,
        treasury_vault_bump: ctx.bumps.treasury_vault,
        rewards_vault_bump: ctx.bumps.rewards_vault,
        paused: false,
        authority: accounts.authority.key(),
        orchestrator: args.orchestrator,
        mint: accounts.mint.key(),
        stake_vault: accounts.stake_vault.key(),
        escrow_vault: accounts.escrow_vault.key(),
        treasury_vault: accounts.treasury_vault.key(),
        rewards_vault: accounts.rewards_vault.key(),
        params: args.params,
        reference_prices: args.reference_prices,
        emission: EmissionSchedule {
            total: args.emission_total,
            start_ts: args.emission_start_ts,
            duration: args.emission_duration,
            last_update_ts: args.emission_start_ts,
            ..EmissionSchedule::default()
        },
        total_stake: 0,
        total_unbonding: 0,
        total_escrow: 0,
        total_claimable: 0,
        treasury_balance: 0,
        total_gpu_seconds: 0,
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
