//! `gpumesh`: the command line. Thin over the libraries; each subcommand group lives in its own
//! module. Wallet-signed commands talk to whatever cluster `--url` names.
//!
//! Exit status: 0 done, 1 refused or failed (nothing changed unless the message says so),
//! 2 usage (a flag or argument clap refused), 3 a transaction was sent and its outcome is unknown
//! (check it with `gpumesh confirm <signature>` before retrying).

mod account;
mod airdrop;
mod amount;
mod config;
mod context;
mod demo;
mod error;
mod keys;
mod localnet;
mod market;
mod orchestrator;
mod order;
mod output;
mod price;
mod up;
mod watch;
mod worker;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use context::{Env, GlobalArgs};
use error::CliError;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "gpumesh",
    version,
    about = "An open market for GPU compute on Solana",
    after_help = "Exit status: 0 done; 1 refused or failed; 2 usage; 3 sent, outcome unknown (check with `gpumesh confirm <signature>` before retrying)."
)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The whole market on this machine until Ctrl-C: the local chain, a market, its
    /// orchestrator service and worker daemons (CPU); prints what a buyer types next.
    Up(up::UpArgs),
    /// Run the whole market flow in an in-process Solana runtime and narrate every step.
    Demo(demo::DemoArgs),
    /// Start a Solana node on this machine with the program loaded (JSON-RPC on 127.0.0.1:8899).
    Localnet(localnet::LocalnetArgs),
    /// Wallet files.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// SOL (localnet, devnet) and local test tokens for a wallet.
    Airdrop(airdrop::AirdropArgs),
    /// SOL and market-token balance of an address (default: the wallet's).
    Balance(account::BalanceArgs),
    /// What the cluster knows of a transaction: landed (and how final), failed, or not found.
    Confirm(account::ConfirmArgs),
    /// Operator: create, inspect and tune a market; fund rewards; withdraw fees.
    #[command(subcommand)]
    Market(market::MarketCommand),
    /// Supplier: register a machine, stake, unstake, withdraw, claim, inspect.
    #[command(subcommand)]
    Worker(worker::WorkerCommand),
    /// Buyer: create, fund, cancel and inspect orders; upload a job spec.
    #[command(subcommand)]
    Order(order::OrderCommand),
    /// Operator: run the orchestrator service of a market.
    #[command(subcommand)]
    Orchestrator(orchestrator::OrchestratorCommand),
}

fn run(cli: Cli) -> Result<(), CliError> {
    let env = Env::new(&cli.global)?;
    match &cli.command {
        Command::Up(args) => up::run(&env, args),
        Command::Demo(args) => demo::run(&env, args),
        Command::Localnet(args) => localnet::run(&env, args),
        Command::Keys(cmd) => keys::run(&env, cmd),
        Command::Airdrop(args) => airdrop::run(&env, args),
        Command::Balance(args) => account::balance(&env, args),
        Command::Confirm(args) => account::confirm(&env, args),
        Command::Market(cmd) => market::run(&env, cmd),
        Command::Worker(cmd) => worker::run(&env, cmd),
        Command::Order(cmd) => order::run(&env, cmd),
        Command::Orchestrator(cmd) => orchestrator::run(&env, cmd),
    }
}

/// The output the command line (or `GPUMESH_OUTPUT`) asks for, read without clap: for the usage
/// errors clap reports before anything is parsed. The last `--output` wins, as in clap.
fn requested_output(args: &[String]) -> output::Output {
    let mode = |v: &str| match v {
        "json" => output::Output::Json,
        "json-compact" => output::Output::JsonCompact,
        _ => output::Output::Text,
    };
    let mut wanted = std::env::var("GPUMESH_OUTPUT")
        .map(|v| mode(&v))
        .unwrap_or(output::Output::Text);
    for (i, a) in args.iter().enumerate() {
        if let Some(v) = a.strip_prefix("--output=") {
            wanted = mode(v);
        } else if a == "--output" {
            wanted = mode(args.get(i + 1).map(String::as_str).unwrap_or(""));
        }
    }
    wanted
}

fn main() -> ExitCode {
    output::exit_quietly_on_closed_stdout();
    let args: Vec<String> = std::env::args().collect();
    let cli = match Cli::command()
        .try_get_matches_from(&args)
        .and_then(|m| Cli::from_arg_matches(&m))
    {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            let informational = matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            );
            let mode = requested_output(&args);
            if informational || !mode.is_json() {
                // Help goes to stdout (status 0); usage errors to stderr (status 2).
                let _ = e.print();
                return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
            }
            let value = serde_json::json!({"error": {
                "kind": "usage",
                "message": e.render().to_string().trim(),
                "exit_code": 2,
            }});
            output::line(&mode.render(&value));
            return ExitCode::from(2);
        }
    };
    let mode = cli.global.output;
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if mode.is_json() {
                output::line(&mode.render(&e.to_json()));
            } else {
                eprintln!("error: {e}");
            }
            ExitCode::from(e.exit_code())
        }
    }
}
