//! `gpumesh keys`: wallet files in the Solana CLI's format. A new key is not written inside a git
//! work tree unless git ignores the path: a private key committed by accident is a key published.

use crate::context::Env;
use crate::error::CliError;
use gpumesh_client::{Keypair, Signer, cluster};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(clap::Subcommand)]
pub enum KeysCommand {
    /// Create a new keypair file (a JSON array of 64 bytes, as solana-keygen writes).
    New(NewArgs),
    /// Print the address of a keypair file.
    Show {
        /// The keypair file [default: GPUMESH_KEYPAIR, else the config file's keypair_path, else
        /// ~/.config/solana/id.json].
        path: Option<PathBuf>,
    },
}

#[derive(clap::Args)]
pub struct NewArgs {
    /// Where to write it [default: GPUMESH_KEYPAIR, else the config file's keypair_path, else
    /// ~/.config/solana/id.json].
    #[arg(long, short = 'o', value_name = "FILE")]
    outfile: Option<PathBuf>,
    /// Overwrite an existing file (the key in it is lost), and write inside a git work tree even
    /// where git does not ignore the path.
    #[arg(long)]
    force: bool,
}

pub fn run(env: &Env, cmd: &KeysCommand) -> Result<(), CliError> {
    match cmd {
        KeysCommand::New(args) => {
            let path = match &args.outfile {
                Some(p) => cluster::expand_home(p),
                None => env.keypair_path(None)?,
            };
            if !args.force
                && let Some(repo) = unignored_in_work_tree(&path)
            {
                return Err(CliError::Input(format!(
                    "{} is inside the git work tree {} and git does not ignore it: a private key there is one `git add` away from being published. Write it elsewhere (e.g. -o ~/.config/gpumesh/{}), add the path to .gitignore, or pass --force",
                    path.display(),
                    repo.display(),
                    path.file_name()
                        .map(|n| n.to_string_lossy().to_string())
                        .unwrap_or_else(|| "key.json".into())
                )));
            }
            let keypair = Keypair::new();
            cluster::write_keypair(&keypair, &path, args.force)?;
            env.print(
                json!({"pubkey": keypair.pubkey().to_string(), "path": path.display().to_string()}),
                || format!("wrote {}\npubkey: {}", path.display(), keypair.pubkey()),
            );
        }
        KeysCommand::Show { path } => {
            let path = match path {
                Some(p) => p.clone(),
                None => env.keypair_path(None)?,
            };
            let keypair = cluster::read_keypair(&path)?;
            env.print(json!({"pubkey": keypair.pubkey().to_string()}), || {
                keypair.pubkey().to_string()
            });
        }
    }
    Ok(())
}

/// The work tree `path` would land in when git does not ignore it there; `None` outside a work
/// tree or for an ignored path. Without a `git` to ask, a path under a `.git`-holding directory
/// counts as not ignored.
fn unignored_in_work_tree(path: &Path) -> Option<PathBuf> {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().ok()?.join(path)
    };
    let parent = absolute.parent()?;
    // The nearest existing directory: the file's own may not exist yet.
    let existing = parent.ancestors().find(|d| d.is_dir())?;
    let repo = existing.ancestors().find(|d| d.join(".git").exists())?;
    let ignored = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["check-ignore", "-q", "--"])
        .arg(&absolute)
        .status();
    match ignored {
        Ok(status) if status.code() == Some(0) => None,
        _ => Some(repo.to_path_buf()),
    }
}
