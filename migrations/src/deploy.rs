//! Deploy-time initialisation of a market from a config file, safe to run twice: the second run
//! finds the market, reports it, and changes nothing. `gpumesh market init` and the migrations
//! binary both come here.
//!
//! The file is TOML; amounts are whole tokens (strings, parsed with the mint's decimals),
//! durations are seconds. Anything left out takes the program's default parameters.
//!
//! The market's address derives from the mint and the authority that creates it, so nobody can
//! create "your" market before you do; a second run finds it and changes nothing, and refuses a
//! market whose authority has since moved to another key.
//!
//! ```toml
//! mint = "…"                  # the payment mint
//! orchestrator = "…"          # the key that assigns leases and settles receipts
//! [params]
//! protocol_fee_bps = 250
//! min_stake_per_gpu = "100"   # tokens
//! unbonding_period = 1209600  # seconds
//! [reference_prices]          # tokens per GPU-second, by GPU class code
//! 9 = "0.0008"
//! ```

use gpumesh_client::chain::{Chain, ChainExt};
use gpumesh_client::error::ChainError;
use gpumesh_client::program::instructions::InitMarketArgs;
use gpumesh_client::program::state::{GPU_CLASS_SLOTS, Market, MarketParams};
use gpumesh_client::token::{FEE_MARGIN_LAMPORTS, MintError, mint_decimals};
use gpumesh_client::{Keypair, MarketAddresses, Pubkey, Signer, amount, ix};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::str::FromStr;

/// Size of an SPL token account (each vault).
const TOKEN_ACCOUNT_LEN: usize = 165;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarketConfig {
    pub mint: String,
    pub orchestrator: String,
    #[serde(default)]
    pub params: ParamsConfig,
    /// GPU class code → tokens per GPU-second.
    #[serde(default)]
    pub reference_prices: BTreeMap<String, String>,
    #[serde(default)]
    pub emission: Option<EmissionConfig>,
}

/// [`MarketParams`] with every field optional; what is absent keeps the program's default.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParamsConfig {
    pub protocol_fee_bps: Option<u16>,
    /// Whole tokens.
    pub min_stake_per_gpu: Option<String>,
    pub unbonding_period: Option<i64>,
    pub max_receipts_per_settle: Option<u8>,
    pub max_receipt_age: Option<i64>,
    pub heartbeat_grace: Option<i64>,
    pub offline_slash_bps: Option<u16>,
    pub fraud_slash_bps: Option<u16>,
    pub slash_treasury_share_bps: Option<u16>,
    pub jail_period: Option<i64>,
    pub breaker_band_bps: Option<u32>,
    pub reference_smoothing_bps: Option<u16>,
    pub reference_update_interval: Option<i64>,
    pub buyer_exit_window: Option<i64>,
    /// MiB per GPU.
    pub min_worker_vram_mib: Option<u32>,
    pub min_worker_bandwidth_gbps: Option<u32>,
    pub fee_burn_bps: Option<u16>,
    pub preemption_notice: Option<i64>,
}

/// The suppliers' emission: `supplier_share_bps` of `supply`, released linearly over `duration`
/// (seed defaults: 1,000,000,000 tokens, 3,000 bps = 30%, 12 years).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmissionConfig {
    /// Whole tokens: the token supply the suppliers' share is taken from.
    pub supply: String,
    /// The suppliers' share of the supply, in bps.
    pub supplier_share_bps: u16,
    /// Unix time the release starts; absent = when the market is created.
    pub start: Option<i64>,
    /// Seconds.
    pub duration: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("market config: {0}")]
    Config(String),
    #[error("market config, {field}: {source}")]
    Amount {
        field: String,
        source: amount::AmountError,
    },
    #[error(transparent)]
    Mint(#[from] MintError),
    #[error(
        "{who} has {have} lamports and needs about {need} for rent and fees; fund it (on localnet: `gpumesh airdrop`) and run again"
    )]
    InsufficientSol { who: Pubkey, have: u64, need: u64 },
    #[error(
        "the market {market} was created by this wallet but its authority is now {authority}: this wallet no longer controls it"
    )]
    NotControlled { market: Pubkey, authority: Pubkey },
    #[error(transparent)]
    Chain(#[from] ChainError),
}

impl MarketConfig {
    pub fn from_toml(text: &str) -> Result<Self, DeployError> {
        toml::from_str(text).map_err(|e| DeployError::Config(e.to_string()))
    }

    pub fn mint(&self) -> Result<Pubkey, DeployError> {
        parse_key("mint", &self.mint)
    }

    /// The instruction arguments, amounts scaled by the mint's `decimals`.
    pub fn init_args(&self, decimals: u8, now: i64) -> Result<InitMarketArgs, DeployError> {
        let tokens = |field: &str, text: &str| {
            amount::parse(text, decimals).map_err(|source| DeployError::Amount {
                field: field.to_string(),
                source,
            })
        };
        let mut reference_prices = [0u64; GPU_CLASS_SLOTS];
        for (class, price) in &self.reference_prices {
            let code: usize = class
                .parse()
                .ok()
                .filter(|c| *c < GPU_CLASS_SLOTS)
                .ok_or_else(|| {
                    DeployError::Config(format!(
                        "reference_prices: {class:?} is not a GPU class code (0..{GPU_CLASS_SLOTS})"
                    ))
                })?;
            reference_prices[code] = tokens(&format!("reference_prices.{class}"), price)?;
        }
        let (emission_supply, emission_supplier_share_bps, emission_start_ts, emission_duration) =
            match &self.emission {
                Some(e) => (
                    tokens("emission.supply", &e.supply)?,
                    e.supplier_share_bps,
                    e.start.unwrap_or(now),
                    e.duration,
                ),
                None => (0, 0, now, 0),
            };
        Ok(InitMarketArgs {
            orchestrator: parse_key("orchestrator", &self.orchestrator)?,
            params: self.params.to_params(decimals)?,
            reference_prices,
            emission_supply,
            emission_supplier_share_bps,
            emission_start_ts,
            emission_duration,
        })
    }
}

impl ParamsConfig {
    /// Applies these fields over `base`.
    pub fn apply(&self, base: MarketParams, decimals: u8) -> Result<MarketParams, DeployError> {
        let d = base;
        Ok(MarketParams {
            protocol_fee_bps: self.protocol_fee_bps.unwrap_or(d.protocol_fee_bps),
            min_stake_per_gpu: match &self.min_stake_per_gpu {
                Some(t) => amount::parse(t, decimals).map_err(|source| DeployError::Amount {
                    field: "params.min_stake_per_gpu".into(),
                    source,
                })?,
                None => d.min_stake_per_gpu,
            },
            unbonding_period: self.unbonding_period.unwrap_or(d.unbonding_period),
            max_receipts_per_settle: self
                .max_receipts_per_settle
                .unwrap_or(d.max_receipts_per_settle),
            max_receipt_age: self.max_receipt_age.unwrap_or(d.max_receipt_age),
            heartbeat_grace: self.heartbeat_grace.unwrap_or(d.heartbeat_grace),
            offline_slash_bps: self.offline_slash_bps.unwrap_or(d.offline_slash_bps),
            fraud_slash_bps: self.fraud_slash_bps.unwrap_or(d.fraud_slash_bps),
            slash_treasury_share_bps: self
                .slash_treasury_share_bps
                .unwrap_or(d.slash_treasury_share_bps),
            jail_period: self.jail_period.unwrap_or(d.jail_period),
            breaker_band_bps: self.breaker_band_bps.unwrap_or(d.breaker_band_bps),
            reference_smoothing_bps: self
                .reference_smoothing_bps
                .unwrap_or(d.reference_smoothing_bps),
            reference_update_interval: self
                .reference_update_interval
                .unwrap_or(d.reference_update_interval),
            buyer_exit_window: self.buyer_exit_window.unwrap_or(d.buyer_exit_window),
            min_worker_vram_mib: self.min_worker_vram_mib.unwrap_or(d.min_worker_vram_mib),
            min_worker_bandwidth_gbps: self
                .min_worker_bandwidth_gbps
                .unwrap_or(d.min_worker_bandwidth_gbps),
            fee_burn_bps: self.fee_burn_bps.unwrap_or(d.fee_burn_bps),
            preemption_notice: self.preemption_notice.unwrap_or(d.preemption_notice),
        })
    }

    pub fn to_params(&self, decimals: u8) -> Result<MarketParams, DeployError> {
        self.apply(MarketParams::default(), decimals)
    }
}

fn parse_key(field: &str, text: &str) -> Result<Pubkey, DeployError> {
    Pubkey::from_str(text.trim())
        .map_err(|_| DeployError::Config(format!("{field}: {text:?} is not a base58 address")))
}

/// What [`init_market_if_missing`] found or did.
pub enum Deployed {
    /// The market was created by this run.
    Created {
        addrs: MarketAddresses,
        signature: String,
    },
    /// A market for this mint already existed; nothing was sent.
    Existing {
        addrs: MarketAddresses,
        market: Box<Market>,
        /// Fields where the config differs from the market on chain (use `market update`).
        differences: Vec<String>,
    },
}

/// Creates `authority`'s market for `config.mint` unless it exists. Checks the authority's SOL
/// before sending, so a refusal leaves nothing half-done. An existing market is reported with
/// what differs from the config, and refused if `authority` no longer controls it.
pub fn init_market_if_missing(
    chain: &mut dyn Chain,
    authority: &Keypair,
    config: &MarketConfig,
) -> Result<Deployed, DeployError> {
    let mint = config.mint()?;
    let decimals = mint_decimals(chain, &mint)?;
    let args = config.init_args(decimals, chain.unix_time()?)?;
    let addrs = MarketAddresses::new(mint, authority.pubkey());
    if let Some(market) = chain.fetch_opt::<Market>(&addrs.market)? {
        if market.authority != authority.pubkey() {
            return Err(DeployError::NotControlled {
                market: addrs.market,
                authority: market.authority,
            });
        }
        let explicit_start = config.emission.as_ref().and_then(|e| e.start);
        let differences = differences(&market, &args, explicit_start);
        return Ok(Deployed::Existing {
            addrs,
            market: Box::new(market),
            differences,
        });
    }
    let need = chain.rent_exempt_minimum(Market::SPACE)?
        + 4 * chain.rent_exempt_minimum(TOKEN_ACCOUNT_LEN)?
        + FEE_MARGIN_LAMPORTS;
    let have = chain.lamports(&authority.pubkey())?;
    if have < need {
        return Err(DeployError::InsufficientSol {
            who: authority.pubkey(),
            have,
            need,
        });
    }
    let outcome = chain.send(
        &[ix::init_market(&addrs, &authority.pubkey(), args)],
        authority,
        &[],
    )?;
    Ok(Deployed::Created {
        addrs,
        signature: outcome.signature,
    })
}

fn differences(market: &Market, args: &InitMarketArgs, explicit_start: Option<i64>) -> Vec<String> {
    let mut out = Vec::new();
    let total = gpumesh_client::program::math::bps_of(
        args.emission_supply,
        args.emission_supplier_share_bps,
    )
    .unwrap_or(u64::MAX);
    let e = &market.emission;
    if e.total != total || e.duration != args.emission_duration {
        out.push(format!(
            "emission: on chain {} base units over {} s, config {} over {} s (the schedule cannot change)",
            e.total, e.duration, total, args.emission_duration
        ));
    }
    if let Some(start) = explicit_start
        && total > 0
        && start != e.start_ts
    {
        out.push(format!(
            "emission start: on chain {}, config {start} (the schedule cannot change)",
            e.start_ts
        ));
    }
    if market.orchestrator != args.orchestrator {
        out.push(format!(
            "orchestrator: on chain {}, config {}",
            market.orchestrator, args.orchestrator
        ));
    }
    if market.params != args.params {
        out.push(format!(
            "params: on chain {:?}, config {:?}",
            market.params, args.params
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_fills_defaults_and_scales_amounts() {
        let orchestrator = Pubkey::new_unique();
        let text = format!(
            "mint = \"{}\"\norchestrator = \"{orchestrator}\"\n[params]\nmin_stake_per_gpu = \"2.5\"\nprotocol_fee_bps = 100\n[reference_prices]\n9 = \"0.001\"\n",
            Pubkey::new_unique()
        );
        let c = MarketConfig::from_toml(&text).unwrap();
        let args = c.init_args(6, 1_000).unwrap();
        assert_eq!(args.params.min_stake_per_gpu, 2_500_000);
        assert_eq!(args.params.protocol_fee_bps, 100);
        assert_eq!(
            args.params.unbonding_period,
            MarketParams::default().unbonding_period
        );
        assert_eq!(args.reference_prices[9], 1_000);
        assert_eq!(args.emission_start_ts, 1_000);
    }

    #[test]
    fn config_refuses_typos_and_bad_amounts() {
        let base = format!(
            "mint = \"{}\"\norchestrator = \"{}\"\n",
            Pubkey::new_unique(),
            Pubkey::new_unique()
        );
        assert!(MarketConfig::from_toml(&format!("{base}[params]\nprotocol_fee = 1\n")).is_err());
        let c = MarketConfig::from_toml(&format!(
            "{base}[params]\nmin_stake_per_gpu = \"0.0000001\"\n"
        ))
        .unwrap();
        let err = c.init_args(6, 0).unwrap_err().to_string();
        assert!(err.contains("min_stake_per_gpu"), "{err}");
        assert!(err.contains("more decimals"), "{err}");
    }
}
