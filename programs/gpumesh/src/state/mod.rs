//! On-chain accounts. Each carries a version byte, its stored bump(s) and reserved bytes so its
//! layout can grow without a migration, and an `invariant()` that the instructions changing it
//! call before they return.

pub mod lease;
pub mod market;
pub mod order;
pub mod seeds;
pub mod worker;

pub use lease::*;
pub use market::*;
pub use order::*;
pub use worker::*;

/// Current layout version of every account.
pub const ACCOUNT_VERSION: u8 = 1;
/// Basis-point denominator (100% = 10_000 bps).
pub const BPS_DENOMINATOR: u64 = 10_000;
/// Slots in the per-class reference-price table; GPU class codes are below this.
pub const GPU_CLASS_SLOTS: usize = 16;
/// Region codes are bit positions of a `u64` region set.
pub const REGION_SLOTS: u8 = 64;
