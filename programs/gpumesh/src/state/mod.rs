//! On-chain accounts. Each carries its own layout version (`VERSION`, so one layout can change
//! without the others), its stored bump, reserved bytes so it can grow without a migration, a
//! size asserted at compile time, and an `invariant()` that the instructions changing it call
//! before they return.

pub mod lease;
pub mod market;
pub mod order;
pub mod seeds;
pub mod worker;

pub use lease::*;
pub use market::*;
pub use order::*;
pub use worker::*;

/// Basis-point denominator (100% = 10_000 bps).
pub const BPS_DENOMINATOR: u64 = 10_000;
/// Slots in the per-class reference-price table (GPU class codes are below it), and the limit of
/// region codes (bit positions of a `u64` region set): written once, in `gpumesh-layout`.
pub use gpumesh_layout::{GPU_CLASS_SLOTS, REGION_SLOTS};
