//! `gpumesh keys`: wallet files in the Solana CLI's format.

use crate::context::Ctx;
use crate::error::CliError;
use gpumesh_client::{Keypair, Signer, cluster};
use serde_json::json;
use std::path::PathBuf;

#[derive(clap::Subcommand)]
pub enum KeysCommand {
    /// Create a new keypair file (a JSON array of 64 bytes, as solana-keygen writes).
    New(NewArgs),
    /// Print the address of a keypair file (default: --keypair).
    Show { path: Option<PathBuf> },
}

#[derive(clap::Args)]
pub struct NewArgs {
    /// Where to write it [default: --keypair, i.e. ~/.config/solana/id.json].
    #[arg(long, short = 'o')]
    outfile: Option<PathBuf>,
    /// Overwrite an existing file (the key in it is lost).
    #[arg(long)]
    force: bool,
}

pub fn run(ctx: &Ctx, cmd: &KeysCommand) -> Result<(), CliError> {
    match cmd {
        KeysCommand::New(args) => {
            let path = match &args.outfile {
                Some(p) => p.clone(),
                None => ctx.keypair_path()?,
            };
            let keypair = Keypair::new();
            cluster::write_keypair(&keypair, &path, args.force)?;
            ctx.print(
                json!({"pubkey": keypair.pubkey().to_string(), "path": path.display().to_string()}),
                || format!("wrote {}\npubkey: {}", path.display(), keypair.pubkey()),
            );
        }
        KeysCommand::Show { path } => {
            let path = match path {
                Some(p) => p.clone(),
                None => ctx.keypair_path()?,
            };
            let keypair = cluster::read_keypair(&path)?;
            ctx.print(json!({"pubkey": keypair.pubkey().to_string()}), || {
                keypair.pubkey().to_string()
            });
        }
    }
    Ok(())
}
