//! One interface over any chain the program runs on: the in-process runtime (tests, demos, the
//! embedded local network) and, later, a real cluster over RPC. Callers build instructions with
//! [`crate::ix`], send them here, and read accounts back decoded.

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

pub trait Chain {
    /// Sends `instructions` in one transaction paid by `payer` and signed by it and `signers`.
    /// Either all of it takes effect or none of it does.
    fn send(
        &mut self,
        instructions: &[Instruction],
        payer: &Keypair,
        signers: &[&Keypair],
    ) -> Result<Outcome, ChainError>;

    fn account(&self, key: &Pubkey) -> Result<Option<RawAccount>, ChainError>;

    /// The cluster's clock (unix seconds), as the program sees it.
    fn unix_time(&self) -> Result<i64, ChainError>;

    /// Moves the clock forward. Only test backends can.
    fn warp(&mut self, seconds: i64) -> Result<(), ChainError>;

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
}

impl<C: Chain + ?Sized> ChainExt for C {}

fn decode<T: AccountDeserialize>(key: &Pubkey, data: &[u8]) -> Result<T, ChainError> {
    T::try_deserialize(&mut &data[..]).map_err(|e| ChainError::Decode {
        key: *key,
        expected: std::any::type_name::<T>(),
        reason: e.to_string(),
    })
}
