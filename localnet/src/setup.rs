//! A fresh local chain made usable: two payment mints whose keys live in a state directory (so
//! they keep their addresses across restarts), SOL and test tokens for wallets.
//!
//! The mints are the work token (the market's own token, `--decimals`) and a 6-decimal USD-like
//! mint, a local stand-in for USDC so that a stablecoin market can be tried offline: it is an
//! ordinary SPL mint whose authority is a key in the state directory, not a real stablecoin.
//!
//! The chain itself keeps nothing across a restart; the state directory keeps the mints' and
//! the mint authority's keypairs, so every start recreates both mints at the same addresses.

use anchor_lang::prelude::Pubkey;
use gpumesh_client::chain::{Chain, ChainExt};
use gpumesh_client::cluster::{self, ClusterError};
use gpumesh_client::{ChainError, Keypair, Signer, token};
use std::path::{Path, PathBuf};

pub const LAMPORTS_PER_SOL: u64 = 1_000_000_000;
/// Decimals of the local work token (6 unless `gpumesh localnet --decimals` says otherwise).
pub const DEFAULT_DECIMALS: u8 = 6;
/// Decimals of the local USD-like mint (as USDC and USDT).
pub const USD_DECIMALS: u8 = 6;

/// The local chain's two mints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LocalMint {
    /// The work token: the market's own token, staked and paid.
    Work,
    /// The USD-like mint: 6 decimals, a local stand-in for USDC.
    Usd,
}

impl LocalMint {
    pub const ALL: [LocalMint; 2] = [LocalMint::Work, LocalMint::Usd];

    /// The name the command line takes (`--mint work`, `--mint usd`).
    pub fn name(self) -> &'static str {
        match self {
            LocalMint::Work => "work",
            LocalMint::Usd => "usd",
        }
    }

    /// The keypair file in the state directory.
    pub fn file(self) -> &'static str {
        match self {
            LocalMint::Work => LocalState::MINT_FILE,
            LocalMint::Usd => LocalState::USD_MINT_FILE,
        }
    }

    /// Its tokens, for people: `work tokens`, `USD-like tokens`.
    pub fn tokens(self) -> &'static str {
        match self {
            LocalMint::Work => "work tokens",
            LocalMint::Usd => "USD-like tokens",
        }
    }

    /// What it is, for people.
    pub fn describe(self) -> &'static str {
        match self {
            LocalMint::Work => "work token",
            LocalMint::Usd => "USD-like mint (a local stand-in for USDC, not a real stablecoin)",
        }
    }
}

impl std::str::FromStr for LocalMint {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "work" => Ok(LocalMint::Work),
            "usd" | "usdc" => Ok(LocalMint::Usd),
            other => Err(format!(
                "{other:?} is not a local mint: the local chain has `work` (its work token) and `usd` (a USD-like stand-in for USDC)"
            )),
        }
    }
}

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
    #[error(
        "the local chain in {0} was started before it had a USD-like mint: stop `gpumesh localnet` and start it again (it adds the mint and keeps the work token)"
    )]
    NoUsdMint(String),
}

/// The local mints' keys, kept in a directory (default `~/.config/gpumesh/localnet`).
pub struct LocalState {
    pub dir: PathBuf,
    /// The work token.
    pub mint: Keypair,
    /// The USD-like mint; `None` only in a state directory from before it existed (opened
    /// without creating; `gpumesh localnet` adds it).
    pub usd_mint: Option<Keypair>,
    /// The authority of both mints.
    pub mint_authority: Keypair,
}

impl LocalState {
    pub const MINT_FILE: &'static str = "mint.json";
    pub const USD_MINT_FILE: &'static str = "usd-mint.json";
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
            usd_mint: Some(load(Self::USD_MINT_FILE)?),
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
        let usd = dir.join(Self::USD_MINT_FILE);
        Ok(Self {
            mint: cluster::read_keypair(&dir.join(Self::MINT_FILE))?,
            usd_mint: if usd.exists() {
                Some(cluster::read_keypair(&usd)?)
            } else {
                None
            },
            mint_authority: cluster::read_keypair(&dir.join(Self::MINT_AUTHORITY_FILE))?,
            dir,
        })
    }

    /// The work token's address.
    pub fn mint(&self) -> Pubkey {
        self.mint.pubkey()
    }

    /// The USD-like mint's address.
    pub fn usd_mint(&self) -> Result<Pubkey, SetupError> {
        Ok(self.keypair_of(LocalMint::Usd)?.pubkey())
    }

    /// The keypair of one of the local mints.
    pub fn keypair_of(&self, which: LocalMint) -> Result<&Keypair, SetupError> {
        match which {
            LocalMint::Work => Ok(&self.mint),
            LocalMint::Usd => self
                .usd_mint
                .as_ref()
                .ok_or_else(|| SetupError::NoUsdMint(self.dir.display().to_string())),
        }
    }

    /// The address of one of the local mints.
    pub fn mint_of(&self, which: LocalMint) -> Result<Pubkey, SetupError> {
        Ok(self.keypair_of(which)?.pubkey())
    }

    /// Which local mint `address` is, if it is one.
    pub fn which(&self, address: &Pubkey) -> Option<LocalMint> {
        LocalMint::ALL
            .into_iter()
            .find(|m| self.mint_of(*m).is_ok_and(|k| k == *address))
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

    /// Creates the work token on `chain` with `decimals` unless it exists. Returns whether it
    /// was created.
    pub fn ensure_mint(&self, chain: &mut dyn Chain, decimals: u8) -> Result<bool, SetupError> {
        self.ensure(chain, LocalMint::Work, decimals)
    }

    /// Creates the USD-like mint (6 decimals) on `chain` unless it exists. Returns whether it
    /// was created.
    pub fn ensure_usd_mint(&self, chain: &mut dyn Chain) -> Result<bool, SetupError> {
        self.ensure(chain, LocalMint::Usd, USD_DECIMALS)
    }

    fn ensure(
        &self,
        chain: &mut dyn Chain,
        which: LocalMint,
        decimals: u8,
    ) -> Result<bool, SetupError> {
        let mint = self.keypair_of(which)?;
        if chain.account(&mint.pubkey())?.is_some() {
            return Ok(false);
        }
        if chain.lamports(&self.mint_authority.pubkey())? < 10 * LAMPORTS_PER_SOL {
            chain.airdrop(&self.mint_authority.pubkey(), 100 * LAMPORTS_PER_SOL)?;
        }
        let rent = chain.rent_exempt_minimum(token::MINT_LEN)?;
        let create = token::create_mint(
            &self.mint_authority.pubkey(),
            &mint.pubkey(),
            &self.mint_authority.pubkey(),
            decimals,
            rent,
        )?;
        chain.send(&create, &self.mint_authority, &[mint])?;
        Ok(true)
    }

    /// Mints `tokens` base units of the work token to `owner`'s associated token account
    /// (created if missing).
    pub fn mint_to(
        &self,
        chain: &mut dyn Chain,
        owner: &Pubkey,
        tokens: u64,
    ) -> Result<Pubkey, SetupError> {
        self.mint_to_of(chain, LocalMint::Work, owner, tokens)
    }

    /// Mints `tokens` base units of `which` to `owner`'s associated token account (created if
    /// missing).
    pub fn mint_to_of(
        &self,
        chain: &mut dyn Chain,
        which: LocalMint,
        owner: &Pubkey,
        tokens: u64,
    ) -> Result<Pubkey, SetupError> {
        let mint = self.mint_of(which)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn both_mints_are_kept_in_the_state_directory_and_named() {
        let dir = std::env::temp_dir().join(format!("gpumesh-localstate-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let first = LocalState::open_or_create(&dir).expect("create");
        let again = LocalState::open(&dir).expect("open");
        assert_eq!(first.mint(), again.mint());
        assert_eq!(first.usd_mint().ok(), again.usd_mint().ok());
        assert_ne!(first.mint(), first.usd_mint().expect("usd"));
        assert_eq!(again.which(&again.mint()), Some(LocalMint::Work));
        let usd = again.usd_mint().expect("usd");
        assert_eq!(again.which(&usd), Some(LocalMint::Usd));
        assert_eq!(again.which(&Pubkey::new_unique()), None);
        // A state directory from before the USD-like mint: opened, and asked to restart.
        std::fs::remove_file(dir.join(LocalState::USD_MINT_FILE)).expect("remove");
        let old = LocalState::open(&dir).expect("open old");
        assert!(matches!(old.usd_mint(), Err(SetupError::NoUsdMint(_))));
        assert_eq!(old.mint_of(LocalMint::Work).ok(), Some(first.mint()));
        let upgraded = LocalState::open_or_create(&dir).expect("upgrade");
        assert_eq!(
            upgraded.mint(),
            first.mint(),
            "the work token keeps its address"
        );
        assert!(upgraded.usd_mint().is_ok());
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(LocalMint::from_str(" USD "), Ok(LocalMint::Usd));
        assert_eq!(LocalMint::from_str("work"), Ok(LocalMint::Work));
        assert!(LocalMint::from_str("eur").is_err());
    }
}
