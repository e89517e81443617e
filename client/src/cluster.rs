//! Naming a cluster and a wallet the way the Solana CLI does: `--url` takes a moniker
//! (`localnet`, `devnet`, `testnet`, `mainnet-beta`, or their first letters) or a URL, and a
//! wallet is a JSON keypair file (64 bytes as a JSON array), by default
//! `~/.config/solana/id.json`.

use solana_keypair::Keypair;
use std::path::{Path, PathBuf};

pub const LOCALNET_URL: &str = "http://127.0.0.1:8899";

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "{0:?} is not a cluster: use localnet, devnet, testnet, mainnet-beta (or l, d, t, m) or an http(s):// URL"
    )]
    BadUrl(String),
    #[error(
        "no keypair file at {path}: create one with `gpumesh keys new --outfile {path}`, or pass --keypair"
    )]
    MissingKeypair { path: String },
    #[error("cannot read the keypair file {path}: {reason}")]
    UnreadableKeypair { path: String, reason: String },
    #[error(
        "{path} is not a keypair file ({reason}); a keypair file is a JSON array of 64 numbers, as `gpumesh keys new` or `solana-keygen new` write it"
    )]
    BadKeypair { path: String, reason: String },
    #[error("{path} already exists; pass --force to overwrite it (the key in it would be lost)")]
    KeypairExists { path: String },
    #[error("cannot write the keypair file {path}: {reason}")]
    WriteKeypair { path: String, reason: String },
    #[error("no home directory to find ~/.config/solana/id.json in; pass --keypair")]
    NoHome,
}

/// The JSON-RPC URL for a moniker or URL.
pub fn resolve_url(moniker_or_url: &str) -> Result<String, ClusterError> {
    let s = moniker_or_url.trim();
    Ok(match s {
        "localnet" | "localhost" | "l" => LOCALNET_URL.to_string(),
        "devnet" | "d" => "https://api.devnet.solana.com".to_string(),
        "testnet" | "t" => "https://api.testnet.solana.com".to_string(),
        "mainnet-beta" | "m" => "https://api.mainnet-beta.solana.com".to_string(),
        url if url.starts_with("http://") || url.starts_with("https://") => url.to_string(),
        other => return Err(ClusterError::BadUrl(other.to_string())),
    })
}

/// Whether `url` is a node on this machine (airdrops of test tokens and a local mint exist).
pub fn is_local(url: &str) -> bool {
    url.contains("://127.0.0.1") || url.contains("://localhost") || url.contains("://[::1]")
}

/// `~/.config/solana/id.json`.
pub fn default_keypair_path() -> Result<PathBuf, ClusterError> {
    let home = std::env::var_os("HOME").ok_or(ClusterError::NoHome)?;
    Ok(PathBuf::from(home).join(".config/solana/id.json"))
}

/// Expands a leading `~/`.
pub fn expand_home(path: &Path) -> PathBuf {
    match (path.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => path.to_path_buf(),
    }
}

pub fn read_keypair(path: &Path) -> Result<Keypair, ClusterError> {
    let path = expand_home(path);
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ClusterError::MissingKeypair {
            path: shown.clone(),
        },
        _ => ClusterError::UnreadableKeypair {
            path: shown.clone(),
            reason: e.to_string(),
        },
    })?;
    let bytes: Vec<u8> = serde_json::from_str(&text).map_err(|e| ClusterError::BadKeypair {
        path: shown.clone(),
        reason: e.to_string(),
    })?;
    Keypair::try_from(&bytes[..]).map_err(|e| ClusterError::BadKeypair {
        path: shown,
        reason: e.to_string(),
    })
}

/// Writes `keypair` as a Solana keypair file (owner-only permissions on Unix).
pub fn write_keypair(keypair: &Keypair, path: &Path, force: bool) -> Result<(), ClusterError> {
    let path = expand_home(path);
    let shown = path.display().to_string();
    if path.exists() && !force {
        return Err(ClusterError::KeypairExists { path: shown });
    }
    let err = |e: std::io::Error| ClusterError::WriteKeypair {
        path: shown.clone(),
        reason: e.to_string(),
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let json = serde_json::to_string(&keypair.to_bytes().to_vec())
        .map_err(|e| err(std::io::Error::other(e)))?;
    std::fs::write(&path, json).map_err(err)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use solana_signer::Signer;

    #[test]
    fn monikers_and_urls() {
        assert_eq!(resolve_url("localnet").unwrap(), LOCALNET_URL);
        assert_eq!(resolve_url("d").unwrap(), "https://api.devnet.solana.com");
        assert_eq!(
            resolve_url("http://127.0.0.1:9999").unwrap(),
            "http://127.0.0.1:9999"
        );
        assert!(matches!(
            resolve_url("moonnet"),
            Err(ClusterError::BadUrl(_))
        ));
    }

    #[test]
    fn keypair_files_round_trip_and_errors_say_what_to_do() {
        let dir = std::env::temp_dir().join(format!("gpumesh-keys-{}", std::process::id()));
        let path = dir.join("k.json");
        let k = Keypair::new();
        write_keypair(&k, &path, false).unwrap();
        assert_eq!(read_keypair(&path).unwrap().pubkey(), k.pubkey());
        assert!(matches!(
            write_keypair(&k, &path, false),
            Err(ClusterError::KeypairExists { .. })
        ));
        std::fs::write(&path, "hello").unwrap();
        assert!(matches!(
            read_keypair(&path),
            Err(ClusterError::BadKeypair { .. })
        ));
        let missing = read_keypair(&dir.join("nope.json")).unwrap_err();
        assert!(missing.to_string().contains("gpumesh keys new"));
        let _ = std::fs::remove_dir_all(dir);
    }
}
