//! The Solana CLI's configuration file (`~/.config/solana/cli/config.yml`, as `solana config set`
//! writes it): its `json_rpc_url`, `keypair_path` and `commitment` are gpumesh's defaults too, so
//! a Solana user's cluster and wallet carry over. Flags and `GPUMESH_*` variables come first.

use crate::error::CliError;
use gpumesh_client::cluster;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The three keys gpumesh reads; the file's other keys (websocket_url, address_labels, …) are
/// the Solana CLI's own and are left alone.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
pub struct SolanaConfig {
    pub json_rpc_url: Option<String>,
    pub keypair_path: Option<String>,
    pub commitment: Option<String>,
}

/// Where the Solana CLI keeps its configuration.
pub fn default_path() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config/solana/cli/config.yml"))
}

impl SolanaConfig {
    /// Parses the file's text. Empty values count as unset, as the Solana CLI treats them.
    pub fn parse(text: &str, path: &Path) -> Result<Self, CliError> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        let config: SolanaConfig = serde_yaml::from_str(text).map_err(|e| {
            let market = if path.extension().is_some_and(|x| x == "toml") {
                " (a market's TOML file is `gpumesh market init FILE`'s argument)"
            } else {
                ""
            };
            CliError::Input(format!(
                "{} is not a Solana CLI config file ({e}){market}; fix it, or point -C/--config at another",
                path.display()
            ))
        })?;
        let keep = |v: Option<String>| v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
        Ok(Self {
            json_rpc_url: keep(config.json_rpc_url),
            keypair_path: keep(config.keypair_path),
            commitment: keep(config.commitment),
        })
    }

    /// `-C FILE` must exist; without it, the Solana CLI's file is read when there is one.
    pub fn load(explicit: Option<&Path>) -> Result<(Self, Option<PathBuf>), CliError> {
        let (path, required) = match explicit {
            Some(p) => (cluster::expand_home(p), true),
            None => match default_path() {
                Some(p) => (p, false),
                None => return Ok((Self::default(), None)),
            },
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok((Self::parse(&text, &path)?, Some(path))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
                Ok((Self::default(), None))
            }
            Err(e) => Err(CliError::Input(format!(
                "cannot read the config file {}: {e}",
                path.display()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_three_keys_of_a_solana_cli_config() {
        let text = "---\njson_rpc_url: \"https://api.devnet.solana.com\"\nwebsocket_url: \"\"\nkeypair_path: /home/me/.config/solana/devnet.json\naddress_labels:\n  \"11111111111111111111111111111111\": System Program\ncommitment: finalized\n";
        let c = SolanaConfig::parse(text, Path::new("config.yml")).unwrap();
        assert_eq!(
            c.json_rpc_url.as_deref(),
            Some("https://api.devnet.solana.com")
        );
        assert_eq!(
            c.keypair_path.as_deref(),
            Some("/home/me/.config/solana/devnet.json")
        );
        assert_eq!(c.commitment.as_deref(), Some("finalized"));
    }

    #[test]
    fn empty_values_are_unset_and_garbage_is_refused() {
        let c = SolanaConfig::parse("json_rpc_url: ''\ncommitment: ''\n", Path::new("c")).unwrap();
        assert_eq!(c, SolanaConfig::default());
        assert_eq!(
            SolanaConfig::parse("", Path::new("c")).unwrap(),
            SolanaConfig::default()
        );
        let e = SolanaConfig::parse("json_rpc_url: [1, 2\n", Path::new("bad.yml")).unwrap_err();
        assert!(
            e.to_string().contains("bad.yml is not a Solana CLI config"),
            "{e}"
        );
        let e = SolanaConfig::parse("- a\n- b\n", Path::new("list.yml")).unwrap_err();
        assert!(e.to_string().contains("list.yml"), "{e}");
    }
}
