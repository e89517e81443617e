//! The [`Chain`] interface over Solana JSON-RPC: any cluster (the local node from
//! `gpumesh localnet`, devnet, mainnet-beta). Transactions are built from the same instruction
//! builders as everywhere else, signed here, sent with preflight, and confirmed; their events are
//! read back from the confirmed transaction's log messages.
//!
//! A transaction is never reported as "not sent" once it may have left this machine. Its
//! signature is known before it is sent; when sending or confirming times out or the endpoint
//! fails after that point, the signature's status is looked up (getSignatureStatuses with the
//! transaction history): it landed (the send succeeds), it failed (its error), its blockhash
//! expired without it landing ([`ChainError::Expired`]), or nobody can tell
//! ([`ChainError::UnknownOutcome`], carrying the signature).
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
use solana_commitment_config::{CommitmentConfig, CommitmentLevel};
use solana_instruction::Instruction;
use solana_keypair::Keypair;
use solana_rpc_client::rpc_client::RpcClient;
use solana_rpc_client_api::client_error::{Error as ClientError, ErrorKind};
use solana_rpc_client_api::config::{
    RpcAccountInfoConfig, RpcProgramAccountsConfig, RpcSendTransactionConfig, RpcTransactionConfig,
};
use solana_rpc_client_api::filter::{Memcmp, RpcFilterType};
use solana_rpc_client_api::request::{RpcError, RpcResponseErrorData};
use solana_signature::Signature;
use solana_signer::Signer;
use solana_transaction::Transaction;
use solana_transaction_status_client_types::{
    TransactionConfirmationStatus, TransactionStatus, UiTransactionEncoding,
};
use std::str::FromStr;
use std::time::{Duration, Instant};

/// Commitment levels (`processed`, `confirmed`, `finalized`), as [`RpcConfig`] takes them.
pub use solana_commitment_config::CommitmentLevel as Commitment;

/// How long one RPC request may take before the endpoint counts as not answering.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to wait for a sent transaction to reach the commitment. A blockhash lives about 150
/// blocks (about a minute), after which a transaction that has not landed never will; this
/// bound only matters on a node that stops making blocks.
pub const DEFAULT_CONFIRM_TIMEOUT: Duration = Duration::from_secs(120);
/// Status lookups that may fail in a row before the outcome counts as unknown.
const LOOKUP_ATTEMPTS: u32 = 3;
/// How long to wait between status lookups of a sent transaction, unless configured.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(250);

/// How an [`RpcChain`] talks to its endpoint.
#[derive(Debug, Clone, Copy)]
pub struct RpcConfig {
    /// The commitment reads are made at and sent transactions wait for.
    pub commitment: CommitmentLevel,
    /// How long one request may take.
    pub request_timeout: Duration,
    /// How long a sent transaction may take to reach the commitment.
    pub confirm_timeout: Duration,
    /// How long to wait between status lookups of a sent transaction: a shorter wait learns of
    /// the confirmation sooner (a local node confirms at the next slot) for more requests.
    pub poll_interval: Duration,
}

impl Default for RpcConfig {
    fn default() -> Self {
        Self {
            commitment: CommitmentLevel::Confirmed,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            confirm_timeout: DEFAULT_CONFIRM_TIMEOUT,
            poll_interval: DEFAULT_POLL_INTERVAL,
        }
    }
}

/// What the cluster knows of a transaction signature ([`RpcChain::signature_status`]).
#[derive(Debug)]
pub enum SignatureStatus {
    /// The cluster has no record of it: it has not landed (yet); once its blockhash expired
    /// (about a minute after it was signed) it never will.
    NotFound,
    /// It is in a block.
    Landed {
        slot: u64,
        /// `processed`, `confirmed` or `finalized`.
        commitment: CommitmentLevel,
        /// `Ok` when it took effect; its error when it failed (then only the fee was paid).
        result: Result<(), ChainError>,
    },
}

pub struct RpcChain {
    client: RpcClient,
    url: String,
    config: RpcConfig,
}

impl RpcChain {
    /// A chain at `url` (an `http(s)://` JSON-RPC endpoint), read and written at the `confirmed`
    /// commitment. Nothing is sent until the first call.
    pub fn new(url: impl Into<String>) -> Self {
        Self::with_config(url, RpcConfig::default())
    }

    /// A chain at `url` with the given commitment and timeouts.
    pub fn with_config(url: impl Into<String>, config: RpcConfig) -> Self {
        let url = url.into();
        let client = RpcClient::new_with_timeouts_and_commitment(
            url.clone(),
            config.request_timeout,
            CommitmentConfig {
                commitment: config.commitment,
            },
            config.confirm_timeout,
        );
        Self {
            client,
            url,
            config,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn config(&self) -> &RpcConfig {
        &self.config
    }

    /// The underlying RPC client, for what the `Chain` interface does not cover.
    pub fn client(&self) -> &RpcClient {
        &self.client
    }

    fn commitment(&self) -> CommitmentConfig {
        CommitmentConfig {
            commitment: self.config.commitment,
        }
    }

    /// Checks that the endpoint answers (getVersion); the error says which URL and what to do.
    pub fn ping(&self) -> Result<String, ChainError> {
        self.client
            .get_version()
            .map(|v| v.solana_core)
            .map_err(|e| self.rpc_error(e))
    }

    /// What the cluster knows of `signature` (getSignatureStatuses, searching the transaction
    /// history). A failed transaction's error is decoded as the program's when it is one, with
    /// its logs where the node serves them.
    pub fn signature_status(&self, signature: &Signature) -> Result<SignatureStatus, ChainError> {
        match self.lookup(signature).map_err(|e| self.rpc_error(e))? {
            None => Ok(SignatureStatus::NotFound),
            Some(status) => Ok(SignatureStatus::Landed {
                slot: status.slot,
                commitment: match status.confirmation_status() {
                    TransactionConfirmationStatus::Processed => CommitmentLevel::Processed,
                    TransactionConfirmationStatus::Confirmed => CommitmentLevel::Confirmed,
                    TransactionConfirmationStatus::Finalized => CommitmentLevel::Finalized,
                },
                result: match &status.err {
                    None => Ok(()),
                    Some(err) => Err(ChainError::from_transaction_error(
                        err,
                        self.logs_of(signature).unwrap_or_default(),
                    )),
                },
            }),
        }
    }

    /// An RPC failure in words a user can act on: which URL, and what to do about it. Only for
    /// failures before anything was sent.
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

    /// A refused send: the program's own error when preflight refused it, with its logs.
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

    /// One getSignatureStatuses call with the transaction history.
    fn lookup(&self, signature: &Signature) -> Result<Option<TransactionStatus>, ClientError> {
        Ok(self
            .client
            .get_signature_statuses_with_history(&[*signature])?
            .value
            .into_iter()
            .next()
            .flatten())
    }

    /// Waits until a sent transaction reaches the commitment, fails, or can no longer land
    /// (the cluster's block height passed `last_valid_block_height`). When the endpoint cannot
    /// answer [`LOOKUP_ATTEMPTS`] times in a row, or the wait outlasts the confirm timeout, the
    /// outcome is unknown: never "not sent".
    fn settle_outcome(
        &self,
        signature: &Signature,
        last_valid_block_height: Option<u64>,
    ) -> Result<(), ChainError> {
        let deadline = Instant::now() + self.config.confirm_timeout;
        let unknown = |reason: String| ChainError::UnknownOutcome {
            signature: signature.to_string(),
            reason,
        };
        let mut failures = 0;
        loop {
            let pending = match self.lookup(signature) {
                Ok(Some(status)) => {
                    if let Some(err) = &status.err {
                        return Err(ChainError::from_transaction_error(
                            err,
                            self.logs_of(signature).unwrap_or_default(),
                        ));
                    }
                    if status.satisfies_commitment(self.commitment()) {
                        return Ok(());
                    }
                    failures = 0;
                    format!(
                        "it is in slot {} but not yet {}",
                        status.slot, self.config.commitment
                    )
                }
                Ok(None) => {
                    failures = 0;
                    if let Some(last_valid) = last_valid_block_height {
                        match self
                            .client
                            .get_block_height_with_commitment(CommitmentConfig::confirmed())
                        {
                            // Past its last valid height it can no longer land; look once more
                            // in case it landed in between.
                            Ok(height) if height > last_valid => match self.lookup(signature) {
                                Ok(None) => {
                                    return Err(ChainError::Expired {
                                        signature: signature.to_string(),
                                    });
                                }
                                Ok(Some(_)) => continue,
                                Err(e) => return Err(unknown(e.to_string())),
                            },
                            Ok(_) => {}
                            Err(_) => failures += 1,
                        }
                    }
                    format!("{} has no record of it yet", self.url)
                }
                Err(e) => {
                    failures += 1;
                    format!("{} did not answer the status lookup: {e}", self.url)
                }
            };
            if failures >= LOOKUP_ATTEMPTS {
                return Err(unknown(pending));
            }
            if Instant::now() >= deadline {
                return Err(unknown(format!(
                    "no answer within {} s: {pending}",
                    self.config.confirm_timeout.as_secs()
                )));
            }
            std::thread::sleep(self.config.poll_interval);
        }
    }

    /// The log messages of a landed transaction (getTransaction).
    fn logs_of(&self, signature: &Signature) -> Result<Vec<String>, ChainError> {
        let config = RpcTransactionConfig {
            encoding: Some(UiTransactionEncoding::Base64),
            commitment: Some(match self.config.commitment {
                // getTransaction serves confirmed or finalized transactions only.
                CommitmentLevel::Processed => CommitmentConfig::confirmed(),
                _ => self.commitment(),
            }),
            max_supported_transaction_version: Some(0),
        };
        let deadline = Instant::now() + self.config.confirm_timeout.min(Duration::from_secs(30));
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
                    std::thread::sleep(self.config.poll_interval.min(Duration::from_millis(200)));
                }
                Err(e) => return Err(self.rpc_error(e)),
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

/// Whether a failed sendTransaction may still have reached the cluster. Only an answer from
/// the node (a preflight refusal, an RPC error object) or a connection that never opened prove
/// it did not; a timeout, a dropped connection or an unreadable answer prove nothing.
fn may_have_been_sent(err: &ClientError) -> bool {
    match err.kind() {
        ErrorKind::RpcError(RpcError::RpcResponseError { .. }) => false,
        ErrorKind::TransactionError(_) | ErrorKind::SigningError(_) => false,
        ErrorKind::Reqwest(e) => !e.is_connect() && !e.is_builder(),
        _ => true,
    }
}

impl RpcChain {
    /// Signs `instructions` with `blockhash` and sends them (preflight first). Returns the
    /// signature once the transaction may have left this machine; an error means it was not
    /// sent.
    fn sign_and_send(
        &self,
        instructions: &[Instruction],
        payer: &Keypair,
        signers: &[&Keypair],
        blockhash: solana_hash::Hash,
    ) -> Result<Signature, ChainError> {
        let mut all: Vec<&Keypair> = vec![payer];
        all.extend(
            signers
                .iter()
                .copied()
                .filter(|k| k.pubkey() != payer.pubkey()),
        );
        let tx = Transaction::new_signed_with_payer(
            instructions,
            Some(&payer.pubkey()),
            &all,
            blockhash,
        );
        // The payer signs first: its signature names the transaction.
        let Some(signature) = tx.signatures.first().copied() else {
            return Err(ChainError::Transaction {
                error: "the transaction has no signature".into(),
                logs: vec![],
            });
        };
        // Preflight runs the transaction first, so a refusal comes back with the program's
        // error and logs and nothing is sent.
        let config = RpcSendTransactionConfig {
            skip_preflight: false,
            preflight_commitment: Some(self.config.commitment),
            encoding: Some(UiTransactionEncoding::Base64),
            max_retries: None,
            min_context_slot: None,
        };
        if let Err(e) = self.client.send_transaction_with_config(&tx, config)
            && !may_have_been_sent(&e)
        {
            return Err(self.send_error(e));
        }
        Ok(signature)
    }

    /// Waits for a sent transaction's outcome and reads its events.
    fn outcome_of(
        &self,
        signature: &Signature,
        last_valid_block_height: u64,
    ) -> Result<Outcome, ChainError> {
        // Sent, or perhaps sent: from here on only the signature's status tells.
        self.settle_outcome(signature, Some(last_valid_block_height))?;
        // It landed. Its logs carry the events; a node that stops answering now does not undo
        // the transaction, so they are read on a best-effort basis.
        let logs = self.logs_of(signature).unwrap_or_default();
        Ok(Outcome {
            signature: signature.to_string(),
            events: parse_logs(&logs),
            logs,
        })
    }
}

impl Chain for RpcChain {
    fn send(
        &mut self,
        instructions: &[Instruction],
        payer: &Keypair,
        signers: &[&Keypair],
    ) -> Result<Outcome, ChainError> {
        // Nothing has left this machine until sendTransaction: a failure up to here is "not sent".
        let (blockhash, last_valid_block_height) = self
            .client
            .get_latest_blockhash_with_commitment(self.commitment())
            .map_err(|e| self.rpc_error(e))?;
        let signature = self.sign_and_send(instructions, payer, signers, blockhash)?;
        self.outcome_of(&signature, last_valid_block_height)
    }

    /// Pipelined: one blockhash, every transaction sent before any is waited for, then each
    /// outcome looked up (by then most have landed together, so the lookups cost one round trip
    /// each). A transaction that may have been sent is never reported "not sent", as with
    /// [`Chain::send`].
    fn send_all(
        &mut self,
        transactions: &[Vec<Instruction>],
        payer: &Keypair,
        signers: &[&Keypair],
    ) -> Vec<Result<Outcome, ChainError>> {
        let (blockhash, last_valid_block_height) = match self
            .client
            .get_latest_blockhash_with_commitment(self.commitment())
        {
            Ok(latest) => latest,
            Err(e) => {
                let why = self.rpc_error(e).to_string();
                return transactions
                    .iter()
                    .map(|_| Err(ChainError::Rpc(why.clone())))
                    .collect();
            }
        };
        let sent: Vec<Result<Signature, ChainError>> = transactions
            .iter()
            .map(|ixs| self.sign_and_send(ixs, payer, signers, blockhash))
            .collect();
        sent.into_iter()
            .map(|s| s.and_then(|sig| self.outcome_of(&sig, last_valid_block_height)))
            .collect()
    }

    fn account(&self, key: &Pubkey) -> Result<Option<RawAccount>, ChainError> {
        let account = self
            .client
            .get_account_with_commitment(key, self.commitment())
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
                commitment: Some(self.commitment()),
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
        self.settle_outcome(&signature, None)
    }

    fn rent_exempt_minimum(&self, data_len: usize) -> Result<u64, ChainError> {
        self.client
            .get_minimum_balance_for_rent_exemption(data_len)
            .map_err(|e| self.rpc_error(e))
    }
}
