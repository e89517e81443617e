//! gpumesh-client, the SDK: everything off chain needs to talk to the gpumesh program. Addresses
//! from the program's own seeds ([`pda`]), one builder per instruction ([`ix`]), receipts in the
//! Ed25519 instruction that settles them ([`receipt`]), events ([`events`]), typed errors
//! ([`error`]), exact token amounts ([`amount`]), SPL Token helpers ([`token`]), cluster monikers
//! and keypair files ([`cluster`]), and one [`Chain`] interface with its JSON-RPC backend
//! ([`rpc::RpcChain`]). The in-process runtime that implements the same interface for tests and
//! the local node is `gpumesh-svm`; nothing here links it.

pub mod amount;
pub mod audit;
pub mod chain;
pub mod cluster;
pub mod error;
pub mod events;
pub mod filters;
pub mod ix;
pub mod pda;
pub mod pubsub;
pub mod receipt;
pub mod rpc;
pub mod stake_yield;
pub mod token;

pub use anchor_lang::prelude::Pubkey;
pub use chain::{AccountFilter, Chain, ChainExt, Outcome, RawAccount};
pub use error::ChainError;
pub use events::GpumeshEvent;
/// The program crate: account types, argument types, events, errors.
pub use gpumesh as program;
pub use gpumesh_protocol::SignedReceipt;
pub use pda::MarketAddresses;
pub use rpc::RpcChain;
pub use solana_instruction::Instruction;
pub use solana_keypair::Keypair;
pub use solana_signature::Signature;
pub use solana_signer::Signer;
