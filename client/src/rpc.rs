//! The [`Chain`] interface over Solana JSON-RPC: any cluster (the local node from
//! `gpumesh localnet`, devnet, mainnet-beta). Transactions are built from the same instruction
//! builders as everywhere else, signed here, sent with preflight, and confirmed; their events are
//! read back from the confirmed transaction's log messages.
//!
//! Usable from async code: the RPC client runs each blocking call through tokio's
//! `block_in_place`, so call it from a multi-threaded runtime (or `spawn_blocking`), never from a
//! current-thread one. `RpcChain` is `Send + Sync`.

use crate::chain::{AccountFilter, Chain, Outcome, RawAccount};
use crate::error::ChainError;
use crate::events::parse_logs;
use anchor_lang::prelude::Pubkey;
use solana_account_decoder_client_types::UiAccountEncoding;
use solana_clock::Clock;
use solana_commitment_config::CommitmentConfig;
use solana_instruction::Instruction;
use solana_keypair::Keypair;
use solana_rpc_client::rpc_client::RpcClient;
use solana_rpc_client_api::client_error::{Error as ClientError, ErrorKind};
use solana_rpc_client_api::config::{
    RpcAccountInfoConfig, RpcProgramAccountsConfig, RpcTransactionConfig,
};
use solana_rpc_client_api::filter::{Memcmp, RpcFilterType};
use solana_rpc_client_api::request::{RpcError, RpcResponseErrorData};
use solana_signature::Signature;
use solana_signer::Signer;
use solana_transaction::Transaction;
use solana_transaction_status_client_types::UiTransactionEncoding;
use std::str::FromStr;
use std::time::{Duration, Instant};

/// How long one RPC request may take before the cluster counts as unreachable.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to wait for an airdrop or a transaction's logs to become visible.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(60);

pub struct RpcChain {
    client: RpcClient,
    url: String,
}

impl RpcChain {
    /// A chain at `url` (an `http(s)://` JSON-RPC endpoint), read and written at the `confirmed`
    /// commitment. Nothing is sent until the first call.
    pub fn new(url: impl Into<String>) -> Self {
        let url = url.into();
        let client = RpcClient::new_with_timeout_and_commitment(
            url.clone(),
            REQUEST_TIMEOUT,
            CommitmentConfig::confirmed(),
        );
        Self { client, url }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The underlying RPC client, for what the `Chain` interface does not cover.
    pub fn client(&self) -> &RpcClient {
        &self.client
    }

    /// Checks that the endpoint answers (getVersion); the error says which URL and what to do.
    pub fn ping(&self) -> Result<String, ChainError> {
        self.client
            .get_version()
            .map(|v| v.solana_core)
            .map_err(|e| self.rpc_error(e))
    }

    /// An RPC failure in words a user can act on: which URL, and what to do about it.
    fn rpc_error(&self, err: ClientError) -> ChainError {
        match is_unreachable(&err) {
            true => ChainError::Rpc(format!(
                "{} did not answer ({err}). Is the cluster running? Start a local one with \
                 `gpumesh localnet`, or pass another --url",
                self.url
            )),
            false => ChainError::Rpc(format!("{} refused the request: {err}", self.url)),
        }
    }

    /// A failed send: the program's own error when it refused, with the preflight logs.
    fn send_error(&self, err: ClientError) -> ChainError {
        let logs = match err.kind() {
            ErrorKind::RpcError(RpcError::RpcResponseError {
                data: RpcResponseErrorData::SendTransactionPreflightFailure(sim),
                ..
            }) => sim.logs.clone().unwrap_or_default(),
            _ => Vec::new(),
        };
        match err.get_transaction_error() {
            Some(tx_err) => ChainError::from_transaction_error(&tx_err, logs),
            None => self.rpc_error(err),
        }
    }

    /// The log messages of a confirmed transaction (getTransaction).
    fn logs_of(&self, signature: &Signature) -> Result<Vec<String>, ChainError> {
        let config = RpcTransactionConfig {
            encoding: Some(UiTransactionEncoding::Base64),
            commitment: Some(CommitmentConfig::confirmed()),
            max_supported_transaction_version: Some(0),
        };
        let deadline = Instant::now() + CONFIRM_TIMEOUT;
        loop {
            match self.client.get_transaction_with_config(signature, config) {
                Ok(tx) => {
                    let logs: Option<Vec<String>> = tx
                        .transaction
                        .meta
                        .and_then(|meta| meta.log_messages.into());
                    return Ok(logs.unwrap_or_default());
                }
                // A node may confirm a signature a moment before it serves the transaction.
                Err(e) if Instant::now() < deadline && !is_unreachable(&e) => {
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => return Err(self.rpc_error(e)),
            }
        }
    }

    fn wait_for(&self, signature: &Signature) -> Result<(), ChainError> {
        let deadline = Instant::now() + CONFIRM_TIMEOUT;
        loop {
            let status = self
                .client
                .get_signature_status_with_commitment(signature, CommitmentConfig::confirmed())
                .map_err(|e| self.rpc_error(e))?;
            match status {
                Some(Ok(())) => return Ok(()),
                Some(Err(e)) => return Err(ChainError::from_transaction_error(&e, vec![])),
                None if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(200)),
                None => {
                    return Err(ChainError::Rpc(format!(
                        "{} did not confirm {signature} within {} s; check it later with its \
                         signature",
                        self.url,
                        CONFIRM_TIMEOUT.as_secs()
                    )));
                }
            }
        }
    }
}

/// Whether the endpoint did not answer at all (as opposed to answering with an error). Some
/// client calls wrap the transport failure into a message for users, hence the text check.
fn is_unreachable(err: &ClientError) -> bool {
    match err.kind() {
        ErrorKind::Io(_) | ErrorKind::Reqwest(_) => true,
        ErrorKind::RpcError(RpcError::ForUser(message)) => {
            message.contains("error sending request")
        }
        _ => false,
    }
}

impl Chain for RpcChain {
    fn send(
        &mut self,
        instructions: &[Instruction],
        payer: &Keypair,
        signers: &[&Keypair],
    ) -> Result<Outcome, ChainError> {
        let mut all: Vec<&Keypair> = vec![payer];
        all.extend(
            signers
                .iter()
                .copied()
                .filter(|k| k.pubkey() != payer.pubkey()),
        );
        let blockhash = self
            .client
            .get_latest_blockhash()
            .map_err(|e| self.rpc_error(e))?;
        let tx = Transaction::new_signed_with_payer(
            instructions,
            Some(&payer.pubkey()),
            &all,
            blockhash,
        );
        // Preflight runs the transaction first, so a refusal comes back with the program's
        // error and logs and nothing is sent.
        let signature = self
            .client
            .send_and_confirm_transaction(&tx)
            .map_err(|e| self.send_error(e))?;
        let logs = self.logs_of(&signature)?;
        Ok(Outcome {
            signature: signature.to_string(),
            events: parse_logs(&logs),
            logs,
        })
    }

    fn account(&self, key: &Pubkey) -> Result<Option<RawAccount>, ChainError> {
        let account = self
            .client
            .get_account_with_commitment(key, CommitmentConfig::confirmed())
            .map_err(|e| self.rpc_error(e))?
            .value;
        Ok(account.map(|a| RawAccount {
            lamports: a.lamports,
            owner: a.owner,
            data: a.data,
        }))
    }

    fn list(
        &self,
        program: &Pubkey,
        filters: &[AccountFilter],
    ) -> Result<Vec<(Pubkey, RawAccount)>, ChainError> {
        let filters = filters
            .iter()
            .map(|f| match f {
                AccountFilter::Memcmp { offset, bytes } => {
                    RpcFilterType::Memcmp(Memcmp::new_base58_encoded(*offset, bytes))
                }
                AccountFilter::DataSize(len) => RpcFilterType::DataSize(*len),
            })
            .collect();
        let config = RpcProgramAccountsConfig {
            filters: Some(filters),
            account_config: RpcAccountInfoConfig {
                encoding: Some(UiAccountEncoding::Base64),
                commitment: Some(CommitmentConfig::confirmed()),
                ..RpcAccountInfoConfig::default()
            },
            ..RpcProgramAccountsConfig::default()
        };
        let accounts = self
            .client
            .get_program_ui_accounts_with_config(program, config)
            .map_err(|e| self.rpc_error(e))?;
        accounts
            .into_iter()
            .map(|(key, ui)| {
                let data = ui.data.decode().ok_or_else(|| {
                    ChainError::Rpc(format!(
                        "{} returned account {key} in an encoding this client cannot read",
                        self.url
                    ))
                })?;
                let owner = Pubkey::from_str(&ui.owner).map_err(|_| {
                    ChainError::Rpc(format!("{} returned an invalid owner for {key}", self.url))
                })?;
                Ok((
                    key,
                    RawAccount {
                        lamports: ui.lamports,
                        owner,
                        data,
                    },
                ))
            })
            .collect()
    }

    fn unix_time(&self) -> Result<i64, ChainError> {
        let raw = self.account(&solana_sdk_ids::sysvar::clock::ID)?.ok_or(
            ChainError::AccountNotFound(solana_sdk_ids::sysvar::clock::ID),
        )?;
        let clock: Clock = bincode::deserialize(&raw.data).map_err(|e| ChainError::Decode {
            key: solana_sdk_ids::sysvar::clock::ID,
            expected: "Clock",
            reason: e.to_string(),
        })?;
        Ok(clock.unix_timestamp)
    }

    fn airdrop(&mut self, to: &Pubkey, lamports: u64) -> Result<(), ChainError> {
        let signature = self.client.request_airdrop(to, lamports).map_err(|e| {
            match self.rpc_error(e) {
                ChainError::Rpc(m) => ChainError::Rpc(format!(
                    "{m}. Airdrops work on localnet and devnet only; on other clusters fund the \
                     wallet by a transfer"
                )),
                other => other,
            }
        })?;
        self.wait_for(&signature)
    }

    fn rent_exempt_minimum(&self, data_len: usize) -> Result<u64, ChainError> {
        self.client
            .get_minimum_balance_for_rent_exemption(data_len)
            .map_err(|e| self.rpc_error(e))
    }
}
