//! The gpumesh orchestrator: matches buyers' GPU orders to suppliers' workers and, in later
//! steps, talks to workers, verifies their proofs, settles on chain, and serves the API.
//!
//! For now it holds the [`scheduler`]: a pure, deterministic matching engine.

pub mod scheduler;
