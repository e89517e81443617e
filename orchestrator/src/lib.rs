//! The gpumesh orchestrator: matches buyers' GPU orders to suppliers' workers and, in later
//! steps, talks to workers, verifies their proofs, settles on chain, and serves the API.
//!
//! For now it holds the [`scheduler`] (a pure, deterministic matching engine), the chain sync
//! that feeds it from the chain's accounts and checks its proposals with the program's own rules
//! ([`sync`]), and the orchestrator's moves on chain ([`actions`]), which the service, the demo
//! and the tests share.

pub mod actions;
pub mod scheduler;
pub mod service;
pub mod settlement;
pub mod sync;
