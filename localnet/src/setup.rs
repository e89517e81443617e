//! A fresh local chain made usable: a payment mint whose keys live in a state directory (so the
//! mint keeps its address across restarts), SOL and test tokens for wallets.
//!
//! The chain itself keeps nothing across a restart; the state directory keeps the mint's and
//! the mint authority's keypairs, so every start recreates the mint at the same address.

use anchor_lang::prelude::Pubkey;
use gpumesh_client::chain::{Chain, ChainExt};
use gpumesh_client::cluster::{self, ClusterError};
use gpumesh_client::{ChainError, Keypair, Signer, token};
use std::path::{Path, PathBuf};

pub const LAMPORTS_PER_SOL: u64 = 1_000_000_000;
/// Decimals of the local payment mint (as USDC).
pub const DEFAULT_DECIMALS: u8 = 6;

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Keys(#[from] ClusterError),
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error(
        "no local state in {0}: start the local chain with `gpumesh localnet` first (it creates the mint and its keys there)"
    )]
    NoState(String),
    #[error("cannot write {path}: {reason}")]
    Write { path: String, reason: String },
}

/// The local mint's keys, kept in a directory (default `~/.config/gpumesh/localnet`).
pub struct LocalState {
    pub dir: PathBuf,
    pub mint: Keypair,
    pub mint_authority: Keypair,
}

impl LocalState {
    pub const MINT_FILE: &'static str = "mint.json";
    pub const MINT_AUTHORITY_FILE: &'static str = "mint-authority.json";
    pub const MARKET_FILE: &'static str = "market";

    /// `~/.config/gpumesh/localnet`.
    pub fn default_dir() -> Result<PathBuf, ClusterError> {
        let home = std::env::var_os("HOME").ok_or(ClusterError::NoHome)?;
        Ok(PathBuf::from(home).join(".config/gpumesh/localnet"))
    }

    /// Opens the state in `dir`, creating the keys on first use.
    pub fn open_or_create(dir: &Path) -> Result<Self, SetupError> {
        let dir = cluster::expand_home(dir);
        let load = |file: &str| -> Result<Keypair, SetupError> {
            let path = dir.join(file);
            if !path.exists() {
                cluster::write_keypair(&Keypair::new(), &path, false)?;
            }
            Ok(cluster::read_keypair(&path)?)
        };
        Ok(Self {
            mint: load(Self::MINT_FILE)?,
            mint_authority: load(Self::MINT_AUTHORITY_FILE)?,
            dir,
        })
    }

    /// Opens the state in `dir`; an error that says to start the chain if there is none.
    pub fn open(dir: &Path) -> Result<Self, SetupError> {
        let dir = cluster::expand_home(dir);
        if !dir.join(Self::MINT_FILE).exists() {
            return Err(SetupError::NoState(dir.display().to_string()));
        }
        Ok(Self {
            mint: cluster::read_keypair(&dir.join(Self::MINT_FILE))?,
            mint_authority: cluster::read_keypair(&dir.join(Self::MINT_AUTHORITY_FILE))?,
            dir,
        })
    }

    pub fn mint(&self) -> Pubkey {
        self.mint.pubkey()
    }

    /// The market `gpumesh market init` last created or found on the local chain (its address
    /// derives from the mint and its creator, so it comes back at the same address after a
    /// restart when the same wallet creates it again).
    pub fn market(&self) -> Option<Pubkey> {
        let text = std::fs::read_to_string(self.dir.join(Self::MARKET_FILE)).ok()?;
        text.trim().parse().ok()
    }

    /// Records `market` as the local chain's default market.
    pub fn remember_market(&self, market: &Pubkey) -> Result<(), SetupError> {
        let path = self.dir.join(Self::MARKET_FILE);
        std::fs::write(&path, format!("{market}\n")).map_err(|e| SetupError::Write {
            path: path.display().to_string(),
            reason: e.to_string(),
        })
    }

    /// Creates the mint on `chain` unless it exists. Returns whether it was created.
    pub fn ensure_mint(&self, chain: &mut dyn Chain, decimals: u8) -> Result<bool, SetupError> {
        if chain.account(&self.mint.pubkey())?.is_some() {
            return Ok(false);
        }
        chain.airdrop(&self.mint_authority.pubkey(), 100 * LAMPORTS_PER_SOL)?;
        let rent = chain.rent_exempt_minimum(token::MINT_LEN)?;
        let create = token::create_mint(
            &self.mint_authority.pubkey(),
            &self.mint.pubkey(),
            &self.mint_authority.pubkey(),
            decimals,
            rent,
        )?;
        chain.send(&create, &self.mint_authority, &[&self.mint])?;
        Ok(true)
    }

    /// Mints `tokens` base units to `owner`'s associated token account (created if missing).
    pub fn mint_to(
        &self,
        chain: &mut dyn Chain,
        owner: &Pubkey,
        tokens: u64,
    ) -> Result<Pubkey, SetupError> {
        let mint = self.mint.pubkey();
        let ata = token::ata(owner, &mint);
        let mut ixs = vec![token::create_ata(
            &self.mint_authority.pubkey(),
            owner,
            &mint,
        )];
        if tokens > 0 {
            ixs.push(token::mint_to(
                &mint,
                &ata,
                &self.mint_authority.pubkey(),
                tokens,
            )?);
        }
        if chain.lamports(&self.mint_authority.pubkey())? < LAMPORTS_PER_SOL {
            chain.airdrop(&self.mint_authority.pubkey(), 10 * LAMPORTS_PER_SOL)?;
        }
        chain.send(&ixs, &self.mint_authority, &[])?;
        Ok(ata)
    }

    /// Gives `owner` `sol` lamports and `tokens` base units.
    pub fn fund(
        &self,
        chain: &mut dyn Chain,
        owner: &Pubkey,
        lamports: u64,
        tokens: u64,
    ) -> Result<Pubkey, SetupError> {
        if lamports > 0 {
            chain.airdrop(owner, lamports)?;
        }
        self.mint_to(chain, owner, tokens)
    }
}
