//! Checked money math. Every token amount is a u64 of base units; products go through u128 and
//! come back with a checked cast, so an overflow is an error that names its call site, never a
//! wrapped balance.

use crate::errors::GpumeshError;
use crate::state::BPS_DENOMINATOR;
use anchor_lang::prelude::*;

pub trait SafeMath: Sized {
    fn safe_add(self, rhs: Self) -> Result<Self>;
    fn safe_sub(self, rhs: Self) -> Result<Self>;
    fn safe_mul(self, rhs: Self) -> Result<Self>;
}

macro_rules! impl_safe_math {
    ($($t:ty),*) => {$(
        impl SafeMath for $t {
            #[track_caller]
            #[inline(always)]
            fn safe_add(self, rhs: Self) -> Result<Self> {
                self.checked_add(rhs).ok_or_else(overflow)
            }
            #[track_caller]
            #[inline(always)]
            fn safe_sub(self, rhs: Self) -> Result<Self> {
                self.checked_sub(rhs).ok_or_else(overflow)
            }
            #[track_caller]
            #[inline(always)]
            fn safe_mul(self, rhs: Self) -> Result<Self> {
                self.checked_mul(rhs).ok_or_else(overflow)
            }
        }
    )*};
}
impl_safe_math!(u16, u32, u64, u128, i64);

#[track_caller]
fn overflow() -> Error {
    let caller = std::panic::Location::caller();
    msg!("arithmetic overflow at {}:{}", caller.file(), caller.line());
    error!(GpumeshError::MathOverflow)
}

/// `u128` back to `u64`, or an overflow error.
#[track_caller]
pub fn to_u64(v: u128) -> Result<u64> {
    u64::try_from(v).map_err(|_| overflow())
}

/// `amount * num / den`, rounded down, through u128.
#[track_caller]
pub fn mul_div_floor(amount: u64, num: u64, den: u64) -> Result<u64> {
    if den == 0 {
        return Err(overflow());
    }
    to_u64((amount as u128).safe_mul(num as u128)? / den as u128)
}

/// Basis points of `amount`, rounded down (the payer keeps the dust).
#[track_caller]
pub fn bps_of(amount: u64, bps: u16) -> Result<u64> {
    mul_div_floor(amount, bps as u64, BPS_DENOMINATOR)
}

/// `amount * num / den`, rounded up, through u128.
#[track_caller]
pub fn mul_div_ceil(amount: u64, num: u64, den: u64) -> Result<u64> {
    if den == 0 {
        return Err(overflow());
    }
    to_u64(
        (amount as u128)
            .safe_mul(num as u128)?
            .div_ceil(den as u128),
    )
}

/// Cost of `seconds` on `gpus` GPUs at `price` base units per GPU-second.
#[track_caller]
pub fn lease_cost(seconds: u64, gpus: u16, price: u64) -> Result<u64> {
    to_u64(
        (seconds as u128)
            .safe_mul(gpus as u128)?
            .safe_mul(price as u128)?,
    )
}

/// The protocol fee owed on a lease's cumulative payments: `floor(amount_paid × fee_bps / 10⁴)`.
/// Charging each receipt the difference between this and what was already charged makes the fee
/// exact over the lease however small its receipts are.
#[track_caller]
pub fn cumulative_fee(amount_paid: u64, fee_bps: u16) -> Result<u64> {
    bps_of(amount_paid, fee_bps)
}

/// The circuit breaker's cap for a reference price: `reference × (10⁴ + band) / 10⁴`, rounded
/// down, saturating at `u64::MAX`; none while the reference is unknown (zero).
#[track_caller]
pub fn breaker_cap(reference: u64, band_bps: u32) -> Result<Option<u64>> {
    if reference == 0 {
        return Ok(None);
    }
    let factor = (BPS_DENOMINATOR as u128).safe_add(band_bps as u128)?;
    let cap = (reference as u128).safe_mul(factor)? / BPS_DENOMINATOR as u128;
    Ok(Some(u64::try_from(cap).unwrap_or(u64::MAX)))
}

/// One step of the reference price toward a lease price: `smoothing_bps` of the gap, rounded
/// toward the old reference (an unknown reference, zero, takes the price as it is).
#[track_caller]
pub fn reference_step(before: u64, price: u64, smoothing_bps: u16) -> Result<u64> {
    if before == 0 {
        return Ok(price);
    }
    let gap = price.abs_diff(before);
    let step = mul_div_floor(gap, smoothing_bps as u64, BPS_DENOMINATOR)?;
    if price >= before {
        before.safe_add(step)
    } else {
        before.safe_sub(step)
    }
}

/// The split of one slash between the buyer and the treasury.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlashSplit {
    pub amount: u64,
    pub to_treasury: u64,
    pub to_buyer: u64,
}

/// A slash of `rate_bps` of the share `share_gpus / gpu_count` of `slashable`:
/// `amount = min(ceil(slashable × share_gpus × rate_bps / (gpu_count × 10⁴)), slashable)`, rounded
/// up in the buyer's favour and never more than the worker has. Of it,
/// `floor(amount × treasury_share_bps / 10⁴)` goes to the treasury, the rest to the buyer.
#[track_caller]
pub fn slash_split(
    slashable: u64,
    share_gpus: u16,
    gpu_count: u16,
    rate_bps: u16,
    treasury_share_bps: u16,
) -> Result<SlashSplit> {
    if gpu_count == 0 || share_gpus > gpu_count {
        return Err(overflow());
    }
    let numerator = (slashable as u128)
        .safe_mul(share_gpus as u128)?
        .safe_mul(rate_bps as u128)?;
    let denominator = (gpu_count as u128).safe_mul(BPS_DENOMINATOR as u128)?;
    let amount = to_u64(numerator.div_ceil(denominator))?.min(slashable);
    let to_treasury = bps_of(amount, treasury_share_bps)?;
    Ok(SlashSplit {
        amount,
        to_treasury,
        to_buyer: amount.safe_sub(to_treasury)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bps_rounds_down() {
        assert_eq!(bps_of(999, 100).unwrap(), 9);
        assert_eq!(bps_of(u64::MAX, 10_000).unwrap(), u64::MAX);
    }

    #[test]
    fn overflow_is_an_error() {
        assert!(u64::MAX.safe_add(1).is_err());
        assert!(0u64.safe_sub(1).is_err());
        assert!(lease_cost(u64::MAX, 2, 1).is_err());
        assert_eq!(lease_cost(10, 8, 3).unwrap(), 240);
        assert!(mul_div_floor(1, 1, 0).is_err());
    }

    #[test]
    fn cumulative_fee_charges_small_receipts_in_total() {
        // 250 bps: a receipt of 39 base units pays no fee on its own, but 100 of them pay 97.
        let mut paid = 0u64;
        let mut fee_charged = 0u64;
        for _ in 0..100 {
            paid += 39;
            let due = cumulative_fee(paid, 250).unwrap();
            fee_charged += due - fee_charged;
        }
        assert_eq!(fee_charged, 3_900 * 250 / 10_000);
        assert_eq!(bps_of(39, 250).unwrap() * 100, 0);
    }

    #[test]
    fn breaker_cap_and_reference_step() {
        assert_eq!(breaker_cap(0, 30_000).unwrap(), None);
        assert_eq!(breaker_cap(100, 30_000).unwrap(), Some(400));
        assert_eq!(breaker_cap(u64::MAX, 100_000).unwrap(), Some(u64::MAX));
        assert_eq!(reference_step(0, 77, 1_000).unwrap(), 77);
        assert_eq!(reference_step(100, 400, 1_000).unwrap(), 130);
        assert_eq!(reference_step(100, 0, 1_000).unwrap(), 90);
        assert_eq!(reference_step(100, 105, 1_000).unwrap(), 100);
        assert_eq!(
            reference_step(u64::MAX, 0, 5_000).unwrap(),
            u64::MAX / 2 + 1
        );
    }

    #[test]
    fn slash_rounds_up_for_the_buyer_and_never_exceeds_the_stake() {
        let s = slash_split(1_001, 1, 1, 500, 0).unwrap();
        assert_eq!(s.amount, 51); // 50.05 rounded up
        assert_eq!((s.to_buyer, s.to_treasury), (51, 0));
        let s = slash_split(1_000, 1, 1, 10_000, 0).unwrap();
        assert_eq!(s.amount, 1_000);
        let s = slash_split(0, 1, 1, 5_000, 0).unwrap();
        assert_eq!(s.amount, 0);
        let s = slash_split(999, 1, 1, 5_000, 3_333).unwrap();
        assert_eq!(s.amount, 500);
        assert_eq!(s.to_treasury, 166); // floor: the buyer keeps the rounding
        assert_eq!(s.to_buyer, 334);
        let s = slash_split(u64::MAX, 1024, 1024, 10_000, 10_000).unwrap();
        assert_eq!((s.amount, s.to_buyer), (u64::MAX, 0));
    }

    #[test]
    fn a_lease_is_slashed_for_its_share_of_the_gpus() {
        // 8 GPUs, 8,000 staked, a 2-GPU lease at 50%: a quarter of the stake, half of it.
        let s = slash_split(8_000, 2, 8, 5_000, 0).unwrap();
        assert_eq!(s.amount, 1_000);
        // Rounded up on the whole product, not per factor.
        let s = slash_split(1_001, 1, 3, 500, 0).unwrap();
        assert_eq!(s.amount, 17); // 1001 / 3 × 5% = 16.68
        assert!(slash_split(1, 2, 1, 1, 0).is_err());
        assert!(slash_split(1, 0, 0, 1, 0).is_err());
        assert_eq!(slash_split(1_000, 0, 4, 5_000, 0).unwrap().amount, 0);
    }
}
