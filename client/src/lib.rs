//! gpumesh-client: everything off chain needs to talk to the gpumesh program. Addresses from the
//! program's own seeds ([`pda`]), one builder per instruction ([`ix`]), receipts and their Ed25519
//! instruction ([`receipt`]), events ([`events`]), typed errors ([`error`]), and one [`Chain`]
//! interface with an in-process backend ([`svm::SvmChain`]).

pub mod chain;
pub mod error;
pub mod events;
pub mod ix;
pub mod local;
pub mod pda;
pub mod receipt;
pub mod svm;
pub mod token;

pub use chain::{Chain, ChainExt, Outcome, RawAccount};
pub use error::ChainError;
pub use events::GpumeshEvent;
/// The program crate: account types, argument types, events, errors.
pub use gpumesh as program;
pub use pda::MarketAddresses;
pub use receipt::SignedReceipt;
pub use solana_keypair::Keypair;
pub use solana_signer::Signer;
pub use svm::SvmChain;
