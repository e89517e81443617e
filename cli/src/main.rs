//! `gpumesh`: the command line. Thin over the libraries; each subcommand group lives in its own
//! module. Wallet-signed commands talk to whatever cluster `--url` names.

mod airdrop;
mod amount;
mod context;
mod demo;
mod error;
mod keys;
mod localnet;
mod market;
mod order;
mod worker;

use clap::{Parser, Subcommand};
use context::{Ctx, GlobalArgs};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "gpumesh",
    version,
    about = "An open market for GPU compute on Solana"
)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole market flow in an in-process Solana runtime and narrate every step.
    Demo(demo::DemoArgs),
    /// Start a Solana node on this machine with the program loaded (JSON-RPC on 127.0.0.1:8899).
    Localnet(localnet::LocalnetArgs),
    /// Wallet files.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// SOL (localnet, devnet) and local test tokens for a wallet.
    Airdrop(airdrop::AirdropArgs),
    /// Operator: create, inspect and tune a market.
    #[command(subcommand)]
    Market(market::MarketCommand),
    /// Supplier: register a machine, stake, unstake, withdraw, claim.
    #[command(subcommand)]
    Worker(worker::WorkerCommand),
    /// Buyer: create, fund, cancel and inspect orders.
    #[command(subcommand)]
    Order(order::OrderCommand),
}

fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    if let Command::Demo(args) = &cli.command {
        return demo::run(args);
    }
    let mut ctx = Ctx::new(&cli.global)?;
    match &cli.command {
        Command::Demo(_) => Ok(()),
        Command::Localnet(args) => Ok(localnet::run(&ctx, args)?),
        Command::Keys(cmd) => Ok(keys::run(&ctx, cmd)?),
        Command::Airdrop(args) => Ok(airdrop::run(&mut ctx, args)?),
        Command::Market(cmd) => Ok(market::run(&mut ctx, cmd)?),
        Command::Worker(cmd) => Ok(worker::run(&mut ctx, cmd)?),
        Command::Order(cmd) => Ok(order::run(&mut ctx, cmd)?),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
