//! Regions: a code below 64 per region (`gpumesh_layout::REGION_SLOTS`), so that an order's
//! allowed regions fit one `u64` bit set on chain. Names are what users type; codes are what the
//! chain and the scheduler keep. The chain accepts any code below 64; the first ones have names.

use std::fmt;
use std::str::FromStr;

pub use gpumesh_layout::REGION_SLOTS;

/// Names of the known regions, in code order. New regions are appended; codes never change.
pub const REGION_NAMES: &[&str] = &[
    "us-east",
    "us-central",
    "us-west",
    "ca-central",
    "sa-east",
    "eu-west",
    "eu-central",
    "eu-north",
    "uk-south",
    "me-central",
    "af-south",
    "ap-south",
    "ap-southeast",
    "ap-northeast",
    "ap-east",
    "oc-east",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Region(u8);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RegionError {
    #[error("unknown region {0:?}; use one of: {names}", names = REGION_NAMES.join(", "))]
    UnknownName(String),
    #[error("region code {0} is out of range: codes are below {REGION_SLOTS}")]
    UnknownCode(u8),
}

impl Region {
    pub fn code(self) -> u8 {
        self.0
    }

    /// Any code the chain accepts (below 64), named or not.
    pub fn from_code(code: u8) -> Result<Self, RegionError> {
        if code < REGION_SLOTS {
            Ok(Region(code))
        } else {
            Err(RegionError::UnknownCode(code))
        }
    }

    /// The region's name, or `None` for a code without one yet.
    pub fn known_name(self) -> Option<&'static str> {
        REGION_NAMES.get(self.0 as usize).copied()
    }

    /// The region's name, or `"unnamed"` for a code without one yet.
    pub fn name(self) -> &'static str {
        self.known_name().unwrap_or("unnamed")
    }

    /// The on-chain bit set of a list of regions.
    pub fn set(regions: &[Region]) -> u64 {
        regions.iter().fold(0, |acc, r| acc | (1u64 << r.0))
    }

    /// The regions in an on-chain bit set.
    pub fn from_set(set: u64) -> Vec<Region> {
        (0..REGION_SLOTS)
            .filter(|c| set & (1u64 << c) != 0)
            .map(Region)
            .collect()
    }
}

/// The regions an order accepts, as the chain stores them: bit `r` set means region `r` is
/// allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct RegionSet(pub u64);

impl RegionSet {
    pub const ALL: RegionSet = RegionSet(u64::MAX);

    pub fn of(regions: &[Region]) -> Self {
        RegionSet(Region::set(regions))
    }

    pub fn contains(self, region: Region) -> bool {
        self.0 & (1u64 << region.0) != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The allowed regions in ascending code order.
    pub fn iter(self) -> impl Iterator<Item = Region> {
        let mut bits = self.0;
        std::iter::from_fn(move || {
            if bits == 0 {
                return None;
            }
            let r = bits.trailing_zeros() as u8;
            bits &= bits - 1;
            Some(Region(r))
        })
    }
}

impl FromStr for Region {
    type Err = RegionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase();
        REGION_NAMES
            .iter()
            .position(|r| *r == wanted)
            .map(|i| Region(i as u8))
            .ok_or_else(|| RegionError::UnknownName(s.to_string()))
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.known_name() {
            Some(name) => f.write_str(name),
            None => write!(f, "region-{}", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_fit_a_u64_set() {
        assert!(REGION_NAMES.len() <= REGION_SLOTS as usize);
        for (i, name) in REGION_NAMES.iter().enumerate() {
            let r: Region = name.parse().unwrap();
            assert_eq!(r.code() as usize, i);
            assert_eq!(r.to_string(), *name);
        }
        let set = Region::set(&["eu-west".parse().unwrap(), "us-east".parse().unwrap()]);
        assert_eq!(set, (1 << 5) | 1);
        assert_eq!(Region::from_set(set).len(), 2);
        assert!("mars-north".parse::<Region>().is_err());
        assert!(Region::from_code(64).is_err());
        let set = RegionSet::of(&[Region(3), Region(63)]);
        assert!(set.contains(Region(63)) && !set.contains(Region(4)));
        assert_eq!(set.iter().collect::<Vec<_>>(), vec![Region(3), Region(63)]);
        assert!(RegionSet::default().is_empty());
        let unnamed = Region::from_code(40).unwrap();
        assert_eq!(
            (unnamed.known_name(), unnamed.to_string()),
            (None, "region-40".into())
        );
    }
}
