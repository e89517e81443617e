//! Setting up a market on a fresh chain (any [`Chain`]: this runtime, or a local node over RPC): a
//! mint, an authority, an orchestrator, and funded users. The demo and the tests start from here;
//! on a real cluster the operator uses the CLI and migrations instead.

use gpumesh_client::chain::{Chain, ChainExt};
use gpumesh_client::error::ChainError;
use gpumesh_client::program::instructions::InitMarketArgs;
use gpumesh_client::program::state::{GPU_CLASS_SLOTS, MarketParams};
use gpumesh_client::{MarketAddresses, ix, token};
use solana_keypair::Keypair;
use solana_signer::Signer;

pub const LAMPORTS_PER_SOL: u64 = 1_000_000_000;

/// A market created on a chain, with the keys that run it.
pub struct LocalMarket {
    pub addrs: MarketAddresses,
    pub authority: Keypair,
    pub orchestrator: Keypair,
    pub mint_authority: Keypair,
    pub decimals: u8,
}

/// An emission schedule for a new market: `share_bps` of `supply`, released linearly over
/// `duration` seconds from the market's creation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EmissionConfig {
    pub supply: u64,
    pub share_bps: u16,
    pub duration: i64,
}

impl LocalMarket {
    /// Creates a mint with `decimals` and a market for it with `params`, without emission.
    pub fn create(
        chain: &mut dyn Chain,
        params: MarketParams,
        decimals: u8,
    ) -> Result<Self, ChainError> {
        Self::create_with_emission(chain, params, decimals, EmissionConfig::default())
    }

    /// Like [`LocalMarket::create`], with an emission schedule starting now.
    pub fn create_with_emission(
        chain: &mut dyn Chain,
        params: MarketParams,
        decimals: u8,
        emission: EmissionConfig,
    ) -> Result<Self, ChainError> {
        let authority = Keypair::new();
        let orchestrator = Keypair::new();
        let mint_authority = Keypair::new();
        let mint = Keypair::new();
        for k in [&authority, &orchestrator, &mint_authority] {
            chain.airdrop(&k.pubkey(), 100 * LAMPORTS_PER_SOL)?;
        }
        let rent = chain.rent_exempt_minimum(token::MINT_LEN)?;
        let create = token::create_mint(
            &mint_authority.pubkey(),
            &mint.pubkey(),
            &mint_authority.pubkey(),
            decimals,
            rent,
        )?;
        chain.send(&create, &mint_authority, &[&mint])?;
        let addrs = MarketAddresses::new(mint.pubkey(), authority.pubkey());
        chain.send(
            &[ix::init_market(
                &addrs,
                &authority.pubkey(),
                InitMarketArgs {
                    orchestrator: orchestrator.pubkey(),
                    params,
                    reference_prices: [0; GPU_CLASS_SLOTS],
                    emission_supply: emission.supply,
                    emission_supplier_share_bps: emission.share_bps,
                    emission_start_ts: chain.unix_time()?,
                    emission_duration: emission.duration,
                },
            )],
            &authority,
            &[],
        )?;
        Ok(Self {
            addrs,
            authority,
            orchestrator,
            mint_authority,
            decimals,
        })
    }

    /// A new keypair with SOL for fees and `tokens` base units in its associated token account.
    pub fn funded_user(&self, chain: &mut dyn Chain, tokens: u64) -> Result<Keypair, ChainError> {
        let user = Keypair::new();
        chain.airdrop(&user.pubkey(), 10 * LAMPORTS_PER_SOL)?;
        self.mint_to(chain, &user, tokens)?;
        Ok(user)
    }

    /// Mints `tokens` base units to `user`'s associated token account, creating it if needed.
    pub fn mint_to(
        &self,
        chain: &mut dyn Chain,
        user: &Keypair,
        tokens: u64,
    ) -> Result<(), ChainError> {
        let ata = self.token_account(&user.pubkey());
        let mut ixs = vec![token::create_ata(
            &self.mint_authority.pubkey(),
            &user.pubkey(),
            &self.addrs.mint,
        )];
        if tokens > 0 {
            ixs.push(token::mint_to(
                &self.addrs.mint,
                &ata,
                &self.mint_authority.pubkey(),
                tokens,
            )?);
        }
        chain.send(&ixs, &self.mint_authority, &[])?;
        Ok(())
    }

    /// `owner`'s associated token account for the market's mint.
    pub fn token_account(
        &self,
        owner: &anchor_lang::prelude::Pubkey,
    ) -> anchor_lang::prelude::Pubkey {
        token::ata(owner, &self.addrs.mint)
    }

    pub fn balance_of(
        &self,
        chain: &dyn Chain,
        owner: &anchor_lang::prelude::Pubkey,
    ) -> Result<u64, ChainError> {
        chain.token_balance(&self.token_account(owner))
    }
}
