//! gpumesh-client: everything off chain needs to talk to the gpumesh program. Addresses from the
//! program's own seeds ([`pda`]), one builder per instruction ([`ix`]), receipts and their Ed25519
//! instruction ([`receipt`]), events ([`events`]), typed errors ([`error`]), and one [`Chain`]
//! interface with two backends: in process ([`svm::SvmChain`]) and over JSON-RPC
//! ([`rpc::RpcChain`]).

pub mod amount;
pub mod chain;
pub mod cluster;
pub mod deploy;
pub mod error;
pub mod events;
pub mod ix;
pub mod local;
pub mod pda;
pub mod receipt;
pub mod rpc;
pub mod svm;
pub mod token;

pub use chain::{Chain, ChainExt, Outcome, RawAccount};
pub use error::ChainError;
pub use events::GpumeshEvent;
/// The program crate: account types, argument types, events, errors.
pub use gpumesh as program;
pub use pda::MarketAddresses;
pub use receipt::SignedReceipt;
pub use rpc::RpcChain;
pub use solana_keypair::Keypair;
pub use solana_signer::Signer;
pub use svm::SvmChain;
