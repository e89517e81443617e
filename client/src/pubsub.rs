//! Following accounts as they change, over the node's websocket (`programSubscribe` with the same
//! filters `Chain::list` takes, and `accountSubscribe` for single accounts), so a long-running
//! service keeps a copy of its market without listing it again.
//!
//! A closed account is not reported by `programSubscribe` (its owner is no longer the program);
//! whoever follows must notice it another way (e.g. the counts on the accounts that referenced
//! it) or by listing again.

use crate::chain::{AccountFilter, RawAccount};
use anchor_lang::prelude::Pubkey;
use futures_util::StreamExt;
use solana_account_decoder_client_types::{UiAccount, UiAccountEncoding};
pub use solana_commitment_config::CommitmentConfig;
use solana_pubsub_client::nonblocking::pubsub_client::PubsubClient;
use solana_rpc_client_api::config::{RpcAccountInfoConfig, RpcProgramAccountsConfig};
use solana_rpc_client_api::filter::{Memcmp, RpcFilterType};
use std::str::FromStr;
use tokio::sync::{mpsc, oneshot};

/// One account as a notification carried it.
#[derive(Debug, Clone)]
pub struct Update {
    pub key: Pubkey,
    pub account: RawAccount,
}

#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    #[error(
        "cannot open the websocket at {url}: {reason}. Check the node's websocket URL (8900 on a local node)"
    )]
    Connect { url: String, reason: String },
    #[error("the node refused the subscription: {0}")]
    Subscribe(String),
    #[error("the node closed the subscription")]
    Ended,
    #[error("a notification could not be read: {0}")]
    Decode(String),
}

/// The websocket URL of a JSON-RPC URL as Solana nodes serve it (and the Solana CLI computes
/// it): `http` → `ws`, `https` → `wss`, and an explicit port one higher (8899 → 8900).
pub fn websocket_url(rpc_url: &str) -> Result<String, String> {
    let with_scheme = if rpc_url.contains("://") {
        rpc_url.to_string()
    } else {
        format!("http://{rpc_url}")
    };
    let mut url = url::Url::parse(&with_scheme).map_err(|e| format!("{rpc_url}: {e}"))?;
    let scheme = match url.scheme() {
        "https" | "wss" => "wss",
        _ => "ws",
    };
    url.set_scheme(scheme)
        .map_err(|_| format!("{rpc_url}: no websocket scheme fits"))?;
    if let Some(port) = url.port() {
        url.set_port(Some(port.saturating_add(1)))
            .map_err(|_| format!("{rpc_url}: cannot set the port"))?;
    }
    let mut text = url.to_string();
    // `Url` writes an empty path as "/"; keep the URL as the user wrote it.
    if !rpc_url.ends_with('/') && url.path() == "/" && url.query().is_none() {
        text.pop();
    }
    Ok(text)
}

fn rpc_filters(filters: &[AccountFilter]) -> Vec<RpcFilterType> {
    filters
        .iter()
        .map(|f| match f {
            AccountFilter::Memcmp { offset, bytes } => {
                RpcFilterType::Memcmp(Memcmp::new_base58_encoded(*offset, bytes))
            }
            AccountFilter::DataSize(len) => RpcFilterType::DataSize(*len),
        })
        .collect()
}

fn raw(key: &str, ui: &UiAccount) -> Result<Update, FollowError> {
    let key = Pubkey::from_str(key).map_err(|e| FollowError::Decode(format!("{key}: {e}")))?;
    let owner = Pubkey::from_str(&ui.owner)
        .map_err(|e| FollowError::Decode(format!("{}: {e}", ui.owner)))?;
    let data = ui
        .data
        .decode()
        .ok_or_else(|| FollowError::Decode(format!("{key}: an encoding other than base64")))?;
    Ok(Update {
        key,
        account: RawAccount {
            lamports: ui.lamports,
            owner,
            data,
        },
    })
}

/// What to follow.
#[derive(Debug, Clone)]
pub struct Follow {
    pub ws_url: String,
    pub program: Pubkey,
    /// Conditions on the program's accounts (as for `Chain::list`).
    pub filters: Vec<AccountFilter>,
    /// Single accounts to follow as well (e.g. the market, which the filters do not select).
    pub accounts: Vec<Pubkey>,
    pub commitment: CommitmentConfig,
}

/// Subscribes, reports `ready` once every subscription is confirmed by the node (list what you
/// follow after that, so no change falls between the list and the first notification), then
/// sends each update to `updates` until the connection ends or the receiver is dropped. Returns
/// why it stopped; the caller reconnects and lists again.
pub async fn follow(
    spec: Follow,
    ready: oneshot::Sender<()>,
    updates: mpsc::UnboundedSender<Update>,
) -> FollowError {
    let client = match PubsubClient::new(spec.ws_url.as_str()).await {
        Ok(c) => c,
        Err(e) => {
            return FollowError::Connect {
                url: spec.ws_url.clone(),
                reason: e.to_string(),
            };
        }
    };
    let account_config = RpcAccountInfoConfig {
        encoding: Some(UiAccountEncoding::Base64),
        commitment: Some(spec.commitment),
        ..RpcAccountInfoConfig::default()
    };
    let program_config = RpcProgramAccountsConfig {
        filters: Some(rpc_filters(&spec.filters)),
        account_config: account_config.clone(),
        ..RpcProgramAccountsConfig::default()
    };
    let (program_stream, _unsubscribe) = match client
        .program_subscribe(&spec.program, Some(program_config))
        .await
    {
        Ok(s) => s,
        Err(e) => return FollowError::Subscribe(e.to_string()),
    };
    let mut streams = vec![
        program_stream
            .map(|r| raw(&r.value.pubkey, &r.value.account))
            .boxed(),
    ];
    let mut unsubscribes = vec![];
    for key in &spec.accounts {
        let key = *key;
        match client
            .account_subscribe(&key, Some(account_config.clone()))
            .await
        {
            Ok((stream, unsubscribe)) => {
                unsubscribes.push(unsubscribe);
                streams.push(stream.map(move |r| raw(&key.to_string(), &r.value)).boxed());
            }
            Err(e) => return FollowError::Subscribe(e.to_string()),
        }
    }
    let _ = ready.send(());
    let mut all = futures_util::stream::select_all(streams);
    while let Some(update) = all.next().await {
        match update {
            Ok(u) => {
                if updates.send(u).is_err() {
                    return FollowError::Ended;
                }
            }
            Err(e) => return e,
        }
    }
    FollowError::Ended
}

#[cfg(test)]
mod tests {
    use super::websocket_url;

    #[test]
    fn the_websocket_is_the_next_port() {
        let ws = |u: &str| websocket_url(u).unwrap();
        assert_eq!(ws("http://127.0.0.1:8899"), "ws://127.0.0.1:8900");
        assert_eq!(
            ws("https://api.devnet.solana.com"),
            "wss://api.devnet.solana.com"
        );
        assert_eq!(
            ws("https://rpc.example.com:8443/key/abc"),
            "wss://rpc.example.com:8444/key/abc"
        );
        assert_eq!(ws("http://[::1]:8899"), "ws://[::1]:8900");
        assert_eq!(ws("localhost:8899"), "ws://localhost:8900");
        assert!(websocket_url("http://exa mple").is_err());
    }
}
