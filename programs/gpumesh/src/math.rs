//! Checked money math. Every token amount is a u64 of base units; products go through u128 and
//! come back with a checked cast, so an overflow is an error that names its call site, never a
//! wrapped balance.

use crate::errors::GpumeshError;
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
    mul_div_floor(amount, bps as u64, crate::state::BPS_DENOMINATOR)
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
}
