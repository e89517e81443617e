//! `gpumesh-migrate`: initialises a market on a cluster from a config file at deploy time. Safe
//! to run twice: when the market exists it reports it (and where the config differs) and sends
//! nothing. The same code path as `gpumesh market init --if-missing`
//! ([`gpumesh_migrations::deploy`]).

use clap::Parser;
use gpumesh_client::{RpcChain, cluster};
use gpumesh_migrations::deploy::{self, Deployed, MarketConfig};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "gpumesh-migrate", version, about)]
struct Args {
    /// Cluster: localnet, devnet, testnet, mainnet-beta or a JSON-RPC URL.
    #[arg(long, short = 'u', env = "GPUMESH_URL", default_value = "localnet")]
    url: String,
    /// The market authority's keypair [default: ~/.config/solana/id.json].
    #[arg(long, short = 'k', env = "GPUMESH_KEYPAIR")]
    keypair: Option<PathBuf>,
    /// The market's TOML file.
    #[arg(
        long,
        short = 'c',
        env = "GPUMESH_MARKET_CONFIG",
        default_value = "migrations/market.toml"
    )]
    config: PathBuf,
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let url = cluster::resolve_url(&args.url)?;
    let keypair_path = match &args.keypair {
        Some(p) => p.clone(),
        None => cluster::default_keypair_path()?,
    };
    let authority = cluster::read_keypair(&keypair_path)?;
    let text = std::fs::read_to_string(&args.config)
        .map_err(|e| format!("cannot read {}: {e}", args.config.display()))?;
    let config = MarketConfig::from_toml(&text)?;
    let mut chain = RpcChain::new(url.clone());
    chain.ping()?;
    match deploy::init_market_if_missing(&mut chain, &authority, &config)? {
        Deployed::Created { addrs, signature } => {
            println!(
                "created market {} for mint {} on {url}",
                addrs.market, addrs.mint
            );
            println!("signature: {signature}");
        }
        Deployed::Existing {
            addrs,
            market,
            differences,
        } => {
            println!(
                "market {} for mint {} exists on {url} (authority {}); nothing sent",
                addrs.market, addrs.mint, market.authority
            );
            for d in differences {
                println!("  differs from the config: {d} (use `gpumesh market update`)");
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(&Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
