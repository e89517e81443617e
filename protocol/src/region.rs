//! Regions: a code below 64 per region, so that an order's allowed regions fit one `u64` bit set
//! on chain. Names are what users type; codes are what the chain and the scheduler keep.

use std::fmt;
use std::str::FromStr;

/// Known regions, in code order. New regions are appended; codes never change.
pub const REGIONS: &[&str] = &[
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
    #[error("unknown region {0:?}; use one of: {names}", names = REGIONS.join(", "))]
    UnknownName(String),
    #[error("unknown region code {0}; known codes are 0..={max}", max = REGIONS.len() - 1)]
    UnknownCode(u8),
}

impl Region {
    pub fn code(self) -> u8 {
        self.0
    }

    pub fn from_code(code: u8) -> Result<Self, RegionError> {
        if (code as usize) < REGIONS.len() {
            Ok(Region(code))
        } else {
            Err(RegionError::UnknownCode(code))
        }
    }

    pub fn name(self) -> &'static str {
        REGIONS[self.0 as usize]
    }

    /// The on-chain bit set of a list of regions.
    pub fn set(regions: &[Region]) -> u64 {
        regions.iter().fold(0, |acc, r| acc | (1u64 << r.0))
    }

    /// The regions in an on-chain bit set (unknown bits are skipped).
    pub fn from_set(set: u64) -> Vec<Region> {
        (0..REGIONS.len() as u8)
            .filter(|c| set & (1u64 << c) != 0)
            .map(Region)
            .collect()
    }
}

impl FromStr for Region {
    type Err = RegionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase();
        REGIONS
            .iter()
            .position(|r| *r == wanted)
            .map(|i| Region(i as u8))
            .ok_or_else(|| RegionError::UnknownName(s.to_string()))
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_fit_a_u64_set() {
        assert!(REGIONS.len() <= 64);
        for (i, name) in REGIONS.iter().enumerate() {
            let r: Region = name.parse().unwrap();
            assert_eq!(r.code() as usize, i);
            assert_eq!(r.to_string(), *name);
        }
        let set = Region::set(&["eu-west".parse().unwrap(), "us-east".parse().unwrap()]);
        assert_eq!(set, (1 << 5) | 1);
        assert_eq!(Region::from_set(set).len(), 2);
        assert!("mars-north".parse::<Region>().is_err());
        assert!(Region::from_code(200).is_err());
    }
}
