//! One interface over any chain the program runs on: a cluster over JSON-RPC ([`crate::rpc`]) and
//! the in-process runtime (`gpumesh-svm`: tests, the demo, the local node). Callers build
//! instructions with [`crate::ix`], send them here, and read accounts back decoded. Moving the
//! clock is not part of it: only the in-process runtime can, and it offers that itself.

use crate::error::ChainError;
use crate::events::GpumeshEvent;
use anchor_lang::AccountDeserialize;
use anchor_lang::prelude::Pubkey;
use solana_instruction::Instruction;
use solana_keypair::Keypair;

/// What a confirmed transaction left behind.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub signature: String,
    pub logs: Vec<String>,
    pub events: Vec<GpumeshEvent>,
}

/// An account as stored on chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawAccount {
    pub lamports: u64,
    pub owner: Pubkey,
    pub data: Vec<u8>,
}

/// A condition on an account's data when listing a program's accounts (getProgramAccounts'
/// filters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountFilter {
    /// The data has `bytes` at `offset`.
    Memcmp { offset: usize, bytes: Vec<u8> },
    /// The data is exactly this long.
    DataSize(u64),
}

impl AccountFilter {
    pub fn matches(&self, data: &[u8]) -> bool {
        match self {
            AccountFilter::Memcmp { offset, bytes } => offset
                .checked_add(bytes.len())
                .and_then(|end| data.get(*offset..end))
                .is_some_and(|slice| slice == bytes.as_slice()),
            AccountFilter::DataSize(len) => data.len() as u64 == *len,
        }
    }
}

pub trait Chain {
    /// Sends `instructions` in one transaction paid by `payer` and signed by it and `signers`.
    /// Either all of it takes effect or none of it does.
    fn send(
        &mut self,
        instructions: &[Instruction],
        payer: &Keypair,
        signers: &[&Keypair],
    ) -> Result<Outcome, ChainError>;

    /// Sends several independent transactions (each all or nothing, none relying on another's
    /// effects), one result per transaction in order. A backend that can keeps them in flight
    /// together and confirms them as a group; this default sends them one after the other.
    fn send_all(
        &mut self,
        transactions: &[Vec<Instruction>],
        payer: &Keypair,
        signers: &[&Keypair],
    ) -> Vec<Result<Outcome, ChainError>> {
        transactions
            .iter()
            .map(|ixs| self.send(ixs, payer, signers))
            .collect()
    }

    fn account(&self, key: &Pubkey) -> Result<Option<RawAccount>, ChainError>;

    /// Accounts owned by `program` whose data passes every filter, in no particular order.
    fn list(
        &self,
        program: &Pubkey,
        filters: &[AccountFilter],
    ) -> Result<Vec<(Pubkey, RawAccount)>, ChainError>;

    /// The cluster's clock (unix seconds), as the program sees it.
    fn unix_time(&self) -> Result<i64, ChainError>;

    /// Gives `to` lamports for fees and rent. Only local backends can.
    fn airdrop(&mut self, to: &Pubkey, lamports: u64) -> Result<(), ChainError>;

    fn rent_exempt_minimum(&self, data_len: usize) -> Result<u64, ChainError>;
}

/// Typed reads on top of any [`Chain`].
pub trait ChainExt: Chain {
    /// Reads and decodes a gpumesh account (checks its discriminator).
    fn fetch<T: AccountDeserialize>(&self, key: &Pubkey) -> Result<T, ChainError> {
        let raw = self
            .account(key)?
            .ok_or(ChainError::AccountNotFound(*key))?;
        decode(key, &raw.data)
    }

    /// Like [`ChainExt::fetch`], but `None` for a missing (e.g. closed) account.
    fn fetch_opt<T: AccountDeserialize>(&self, key: &Pubkey) -> Result<Option<T>, ChainError> {
        match self.account(key)? {
            Some(raw) => decode(key, &raw.data).map(Some),
            None => Ok(None),
        }
    }

    /// Token balance of an SPL token account; 0 if it does not exist.
    fn token_balance(&self, key: &Pubkey) -> Result<u64, ChainError> {
        Ok(self
            .fetch_opt::<anchor_spl::token::TokenAccount>(key)?
            .map(|t| t.amount)
            .unwrap_or(0))
    }

    fn lamports(&self, key: &Pubkey) -> Result<u64, ChainError> {
        Ok(self.account(key)?.map(|a| a.lamports).unwrap_or(0))
    }

    /// The gpumesh accounts of type `T` that pass `filters` (the type's discriminator is added),
    /// decoded; accounts that do not decode are skipped.
    fn list_decoded<T: AccountDeserialize + anchor_lang::Discriminator>(
        &self,
        filters: &[AccountFilter],
    ) -> Result<Vec<(Pubkey, T)>, ChainError> {
        let mut all = vec![AccountFilter::Memcmp {
            offset: 0,
            bytes: T::DISCRIMINATOR.to_vec(),
        }];
        all.extend_from_slice(filters);
        Ok(self
            .list(&gpumesh::ID, &all)?
            .into_iter()
            .filter_map(|(key, raw)| decode::<T>(&key, &raw.data).ok().map(|t| (key, t)))
            .collect())
    }
}

impl<C: Chain + ?Sized> ChainExt for C {}

fn decode<T: AccountDeserialize>(key: &Pubkey, data: &[u8]) -> Result<T, ChainError> {
    T::try_deserialize(&mut &data[..]).map_err(|e| ChainError::Decode {
        key: *key,
        expected: std::any::type_name::<T>(),
        reason: e.to_string(),
    })
}
