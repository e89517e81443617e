//! One module per role: the market authority, suppliers (workers), buyers (orders) and the
//! orchestrator (leases and settlement). Each instruction takes one `Args` struct; handlers check,
//! move tokens, update state, check invariants, then emit an event.

pub mod admin;
pub mod lease;
pub mod order;
pub mod settle;
pub mod slash;
pub mod token;
pub mod worker;

pub use admin::*;
pub use lease::*;
pub use order::*;
pub use settle::*;
pub use slash::*;
pub use worker::*;
