//! The [`Chain`] interface over Solana JSON-RPC: any cluster (the local node from
//! `gpumesh localnet`, devnet, mainnet-beta). Transactions are built from the same instruction
//! builders as everywhere else, signed here, sent with preflight, and confirmed; their events are
//! read back from the confirmed transaction's log messages.

use crate::chain::{Chain, Outcome, RawAccount};
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
use solana_rpc_client_api::filter::RpcFilterType;
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

    /// Accounts of `owner` (a program) that pass `filters` (getProgramAccounts).
    pub fn program_accounts(
        &self,
        owner: &Pubkey,
        filters: Vec<RpcFilterType>,
    ) -> Result<Vec<(Pubkey, RawAccount)>, ChainError> {
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
            .get_program_ui_accounts_with_config(owner, config)
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

    fn warp(&mut self, _seconds: i64) -> Result<(), ChainError> {
        Err(ChainError::Unsupported("moving a cluster's clock"))
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

/// Where an order's `market` and `buyer` fields sit in its account data: after the 8-byte
/// discriminator, `version` and `bump` (one byte each). Checked against a serialized order in
/// the tests below.
pub const ORDER_MARKET_OFFSET: usize = 8 + 1 + 1;
pub const ORDER_BUYER_OFFSET: usize = ORDER_MARKET_OFFSET + 32;

/// getProgramAccounts filters for `buyer`'s orders in `market`.
pub fn order_filters(market: &Pubkey, buyer: &Pubkey) -> Vec<RpcFilterType> {
    use anchor_lang::Discriminator;
    use solana_rpc_client_api::filter::Memcmp;
    vec![
        RpcFilterType::Memcmp(Memcmp::new_base58_encoded(
            0,
            gpumesh::state::Order::DISCRIMINATOR,
        )),
        RpcFilterType::Memcmp(Memcmp::new_base58_encoded(
            ORDER_MARKET_OFFSET,
            market.as_ref(),
        )),
        RpcFilterType::Memcmp(Memcmp::new_base58_encoded(
            ORDER_BUYER_OFFSET,
            buyer.as_ref(),
        )),
    ]
}

/// Where a lease's `order` field sits in its account data: after the discriminator, `version`,
/// `bump` and `market`. Checked against a serialized lease in the tests below.
pub const LEASE_ORDER_OFFSET: usize = 8 + 1 + 1 + 32;

/// getProgramAccounts filters for the live leases of `order`.
pub fn lease_filters(order: &Pubkey) -> Vec<RpcFilterType> {
    use anchor_lang::Discriminator;
    use solana_rpc_client_api::filter::Memcmp;
    vec![
        RpcFilterType::Memcmp(Memcmp::new_base58_encoded(
            0,
            gpumesh::state::Lease::DISCRIMINATOR,
        )),
        RpcFilterType::Memcmp(Memcmp::new_base58_encoded(
            LEASE_ORDER_OFFSET,
            order.as_ref(),
        )),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use anchor_lang::AccountSerialize;
    use gpumesh::state::{Lease, Order, OrderMode, OrderRequirements, OrderStatus, OrderTerms};

    #[test]
    fn order_filter_offsets_match_the_account_layout() {
        let market = Pubkey::new_unique();
        let buyer = Pubkey::new_unique();
        let order = Order {
            version: 1,
            bump: 255,
            market,
            buyer,
            order_id: 7,
            terms: OrderTerms {
                requirements: OrderRequirements {
                    gpu_class: 9,
                    gpu_count: 1,
                    min_vram_mib: 0,
                    min_bandwidth_gbps: 0,
                    regions: 1,
                },
                max_price_per_gpu_second: 1,
                duration: 1,
                mode: OrderMode::Spot,
                job_spec_hash: [0; 32],
            },
            status: OrderStatus::Open,
            escrow_deposited: 0,
            escrow_remaining: 0,
            total_paid: 0,
            gpus_assigned: 0,
            active_leases: 0,
            created_ts: 0,
            close_requested_ts: 0,
            buyer_exit_ts: 0,
            reserved: [0; 64],
        };
        let mut data = Vec::new();
        order.try_serialize(&mut data).unwrap();
        assert_eq!(
            &data[ORDER_MARKET_OFFSET..ORDER_MARKET_OFFSET + 32],
            market.as_ref()
        );
        assert_eq!(
            &data[ORDER_BUYER_OFFSET..ORDER_BUYER_OFFSET + 32],
            buyer.as_ref()
        );
    }

    #[test]
    fn lease_filter_offset_matches_the_account_layout() {
        let order = Pubkey::new_unique();
        let lease = Lease {
            version: 1,
            bump: 255,
            market: Pubkey::new_unique(),
            order,
            worker: Pubkey::new_unique(),
            nonce: 3,
            rent_payer: Pubkey::new_unique(),
            gpus: 1,
            price_per_gpu_second: 1,
            fee_bps: 0,
            start_ts: 0,
            seconds_settled: 0,
            amount_paid: 0,
            fee_paid: 0,
            last_settle_ts: 0,
            last_chain_head: [0; 32],
            reward_acc_snapshot: 0,
            reserved: [0; 64],
        };
        let mut data = Vec::new();
        lease.try_serialize(&mut data).unwrap();
        assert_eq!(
            &data[LEASE_ORDER_OFFSET..LEASE_ORDER_OFFSET + 32],
            order.as_ref()
        );
    }
}
