//! `gpumesh-idl`: builds the program's Anchor IDL on the host and writes it to `idl/gpumesh.json`
//! (for TypeScript and other clients, and the web console); with `--check` it writes nothing and
//! fails when the committed file differs from what the program now declares. Anchor's
//! `idl-build` feature compiles the program for the host and prints the IDL from a test, so no
//! SBF toolchain is needed; `anchor-lang-idl`'s builder assembles it as the Anchor CLI does.

use anyhow::{Context, bail};
use clap::Parser;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "gpumesh-idl", version, about)]
struct Args {
    /// Compare with the committed file instead of writing it; exit 1 when it is stale.
    #[arg(long)]
    check: bool,
    /// Where the IDL lives, relative to the workspace root.
    #[arg(long, default_value = "idl/gpumesh.json")]
    out: PathBuf,
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn build_idl(root: &Path) -> anyhow::Result<String> {
    let idl = anchor_lang_idl::build::IdlBuilder::new()
        .program_path(root.join("programs/gpumesh"))
        .cargo_args(vec!["--locked".into()])
        .build()
        .context("building the IDL (cargo test --features idl-build in programs/gpumesh)")?;
    let mut json = serde_json::to_string_pretty(&idl)?;
    json.push('\n');
    Ok(json)
}

fn run(args: &Args) -> anyhow::Result<()> {
    let root = workspace_root();
    let path = root.join(&args.out);
    let fresh = build_idl(&root)?;
    if args.check {
        let committed = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "cannot read {}; generate it with `cargo run -p gpumesh-migrations --bin gpumesh-idl`",
                path.display()
            )
        })?;
        if committed != fresh {
            bail!(
                "{} is stale: the program's interface changed. Regenerate it with `cargo run -p gpumesh-migrations --bin gpumesh-idl` and commit it",
                path.display()
            );
        }
        println!("{} is up to date", path.display());
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&path, &fresh).with_context(|| format!("writing {}", path.display()))?;
    println!("wrote {} ({} bytes)", path.display(), fresh.len());
    Ok(())
}

fn main() -> ExitCode {
    // The builder runs `cargo +$RUSTUP_TOOLCHAIN` when that is set (rustup sets it for the
    // processes it starts) and tries to install that toolchain; the pinned toolchain is already
    // the one `rust-toolchain.toml` selects, so let the nested cargo find it the same way.
    // SAFETY: nothing else runs yet; no other thread reads the environment.
    unsafe { std::env::remove_var("RUSTUP_TOOLCHAIN") };
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
