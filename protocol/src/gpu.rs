//! GPU classes a supplier can claim, with the datasheet facts that set a challenge's deadline
//! and the market's hardware filters.
//!
//! A class's `code()` is stable and always below [`GpuClass::CODE_LIMIT`] (16): the on-chain
//! market keeps a 16-slot reference-price table indexed by it, so codes are never reused or
//! renumbered; new classes take the next free code.

pub use gpumesh_layout::GPU_CLASS_SLOTS;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A GPU class as the market sells it. The CPU class exists so tests and GPU-less local networks
/// can run the whole protocol; it is never a sellable GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "u8", try_from = "u8")]
#[repr(u8)]
pub enum GpuClass {
    Cpu = 0,
    T4 = 1,
    L4 = 2,
    A10g = 3,
    Rtx3090 = 4,
    Rtx4090 = 5,
    L40s = 6,
    A100_40gb = 7,
    A100_80gb = 8,
    H100 = 9,
    H200 = 10,
    Rtx3070 = 11,
    Rtx3080 = 12,
    Rtx3080Ti = 13,
    Rtx4080 = 14,
}

/// Datasheet facts for one class (dense figures: sparsity never helps a seeded random matrix).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GpuSpec {
    /// Dense int8 tensor throughput, in tera-operations per second (one multiply-add = 2 ops).
    pub int8_tops: f64,
    /// Memory on the card, in GB (10^9 bytes).
    pub vram_gb: f64,
    /// Peak memory bandwidth, in GB/s.
    pub memory_bandwidth_gbs: f64,
}

/// Raised when a code or name does not name a known class.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GpuClassError {
    #[error("unknown GPU class code {0}; known codes are 0..={max}", max = GpuClass::ALL.len() - 1)]
    UnknownCode(u8),
    #[error("unknown GPU class {0:?}; use one of: {names}", names = GpuClass::names())]
    UnknownName(String),
}

impl GpuClass {
    /// Codes index the market's 16-slot reference-price table (`gpumesh_layout::GPU_CLASS_SLOTS`).
    pub const CODE_LIMIT: u8 = gpumesh_layout::GPU_CLASS_SLOTS as u8;

    /// Every class, in code order.
    pub const ALL: [GpuClass; 15] = [
        GpuClass::Cpu,
        GpuClass::T4,
        GpuClass::L4,
        GpuClass::A10g,
        GpuClass::Rtx3090,
        GpuClass::Rtx4090,
        GpuClass::L40s,
        GpuClass::A100_40gb,
        GpuClass::A100_80gb,
        GpuClass::H100,
        GpuClass::H200,
        GpuClass::Rtx3070,
        GpuClass::Rtx3080,
        GpuClass::Rtx3080Ti,
        GpuClass::Rtx4080,
    ];

    /// The stable on-chain code (always `< CODE_LIMIT`).
    pub const fn code(self) -> u8 {
        self as u8
    }

    pub fn from_code(code: u8) -> Result<Self, GpuClassError> {
        Self::ALL
            .get(usize::from(code))
            .copied()
            .ok_or(GpuClassError::UnknownCode(code))
    }

    /// The lower-case name used on the command line and in messages.
    pub const fn name(self) -> &'static str {
        match self {
            GpuClass::Cpu => "cpu",
            GpuClass::T4 => "t4",
            GpuClass::L4 => "l4",
            GpuClass::A10g => "a10g",
            GpuClass::Rtx3090 => "rtx3090",
            GpuClass::Rtx4090 => "rtx4090",
            GpuClass::L40s => "l40s",
            GpuClass::A100_40gb => "a100-40gb",
            GpuClass::A100_80gb => "a100-80gb",
            GpuClass::H100 => "h100",
            GpuClass::H200 => "h200",
            GpuClass::Rtx3070 => "rtx3070",
            GpuClass::Rtx3080 => "rtx3080",
            GpuClass::Rtx3080Ti => "rtx3080ti",
            GpuClass::Rtx4080 => "rtx4080",
        }
    }

    fn names() -> String {
        Self::ALL.map(GpuClass::name).join(", ")
    }

    /// Datasheet facts. Sources (NVIDIA product datasheets / architecture whitepapers, dense
    /// int8 = half the "with sparsity" figure where only that is printed):
    /// - T4: T4 datasheet: 130 INT8 TOPS, 16 GB GDDR6, 320 GB/s.
    /// - L4: L4 datasheet: 485 INT8 TOPS with sparsity -> 242.5 dense, 24 GB, 300 GB/s.
    /// - A10G: AWS G5 (A10G) uses the A10 datasheet figures: 250 INT8 TOPS dense (500 sparse),
    ///   24 GB, 600 GB/s.
    /// - RTX 3090: Ampere GA102 whitepaper: 284 INT8 TOPS dense, 24 GB GDDR6X, 936 GB/s.
    /// - RTX 4090: Ada Lovelace whitepaper: 660.6 INT8 TOPS dense, 24 GB GDDR6X, 1008 GB/s.
    /// - L40S: L40S datasheet: 1466 INT8 TOPS with sparsity -> 733 dense, 48 GB, 864 GB/s.
    /// - A100 40GB: A100 datasheet: 624 INT8 TOPS dense, 40 GB HBM2, 1555 GB/s.
    /// - A100 80GB (SXM): A100 datasheet: 624 INT8 TOPS dense, 80 GB HBM2e, 2039 GB/s.
    /// - H100 (SXM): H100 datasheet: 3958 INT8 TOPS with sparsity -> 1979 dense, 80 GB HBM3,
    ///   3350 GB/s.
    /// - H200 (SXM): H200 datasheet: 3958 INT8 TOPS with sparsity -> 1979 dense, 141 GB HBM3e,
    ///   4800 GB/s.
    /// - RTX 3070: Ampere GA102/GA104 whitepaper: 162.6 INT8 TOPS dense, 8 GB GDDR6, 448 GB/s.
    /// - RTX 3080 (10 GB): Ampere GA102 whitepaper: 238 INT8 TOPS dense, 10 GB GDDR6X, 760 GB/s.
    /// - RTX 3080 Ti: Ampere GA102 whitepaper figures: 272.8 INT8 TOPS dense, 12 GB GDDR6X,
    ///   912 GB/s.
    /// - RTX 4080 (16 GB): Ada Lovelace whitepaper: 389.9 INT8 TOPS dense, 16 GB GDDR6X,
    ///   716.8 GB/s.
    /// - CPU (test class): a deliberately modest 0.05 TOPS (50 GOPS, a few cores with
    ///   vectorized int8) and a nominal 16 GB / 20 GB/s, so any machine running the test suite
    ///   meets its deadlines.
    pub const fn spec(self) -> GpuSpec {
        let (int8_tops, vram_gb, memory_bandwidth_gbs) = match self {
            GpuClass::Cpu => (0.05, 16.0, 20.0),
            GpuClass::T4 => (130.0, 16.0, 320.0),
            GpuClass::L4 => (242.5, 24.0, 300.0),
            GpuClass::A10g => (250.0, 24.0, 600.0),
            GpuClass::Rtx3090 => (284.0, 24.0, 936.0),
            GpuClass::Rtx4090 => (660.6, 24.0, 1008.0),
            GpuClass::L40s => (733.0, 48.0, 864.0),
            GpuClass::A100_40gb => (624.0, 40.0, 1555.0),
            GpuClass::A100_80gb => (624.0, 80.0, 2039.0),
            GpuClass::H100 => (1979.0, 80.0, 3350.0),
            GpuClass::H200 => (1979.0, 141.0, 4800.0),
            GpuClass::Rtx3070 => (162.6, 8.0, 448.0),
            GpuClass::Rtx3080 => (238.0, 10.0, 760.0),
            GpuClass::Rtx3080Ti => (272.8, 12.0, 912.0),
            GpuClass::Rtx4080 => (389.9, 16.0, 716.8),
        };
        GpuSpec {
            int8_tops,
            vram_gb,
            memory_bandwidth_gbs,
        }
    }

    /// Best guess of the class from a CUDA device name (e.g. "NVIDIA H100 80GB HBM3") and its
    /// memory, for the worker's self-description; the supplier's claim is what gets challenged.
    pub fn from_device_name(name: &str, vram_bytes: u64) -> Option<Self> {
        let name = name.to_ascii_lowercase();
        let gb = vram_bytes as f64 / 1e9;
        let class = if name.contains("h200") {
            GpuClass::H200
        } else if name.contains("h100") {
            GpuClass::H100
        } else if name.contains("a100") {
            if gb > 48.0 {
                GpuClass::A100_80gb
            } else {
                GpuClass::A100_40gb
            }
        } else if name.contains("l40s") {
            GpuClass::L40s
        } else if name.contains("4090") {
            GpuClass::Rtx4090
        } else if name.contains("3090") {
            GpuClass::Rtx3090
        } else if name.contains("a10g") || name.contains("a10 ") || name.ends_with("a10") {
            GpuClass::A10g
        } else if name.contains(" l4") {
            GpuClass::L4
        } else if name.contains("t4") {
            GpuClass::T4
        } else {
            return None;
        };
        Some(class)
    }
}

impl From<GpuClass> for u8 {
    fn from(class: GpuClass) -> u8 {
        class.code()
    }
}

impl TryFrom<u8> for GpuClass {
    type Error = GpuClassError;
    fn try_from(code: u8) -> Result<Self, Self::Error> {
        GpuClass::from_code(code)
    }
}

impl fmt::Display for GpuClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for GpuClass {
    type Err = GpuClassError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase().replace(['_', ' '], "-");
        // "rtx 4090" and "rtx-4090" mean "rtx4090". A bare "a100" is refused: 40 GB and 80 GB
        // parts differ in memory and bandwidth, and the buyer pays for the difference.
        let wanted = wanted.replace("rtx-", "rtx");
        Self::ALL
            .into_iter()
            .find(|class| class.name() == wanted)
            .ok_or_else(|| GpuClassError::UnknownName(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_fit_the_price_table_and_round_trip() {
        for (i, class) in GpuClass::ALL.into_iter().enumerate() {
            assert!(class.code() < GpuClass::CODE_LIMIT);
            assert_eq!(usize::from(class.code()), i);
            assert_eq!(GpuClass::from_code(class.code()), Ok(class));
            assert_eq!(class.name().parse::<GpuClass>(), Ok(class));
            assert_eq!(class.to_string(), class.name());
        }
        assert_eq!(GpuClass::from_code(15), Err(GpuClassError::UnknownCode(15)));
        assert!("a100".parse::<GpuClass>().is_err());
        assert_eq!("RTX 4090".parse::<GpuClass>(), Ok(GpuClass::Rtx4090));
    }

    #[test]
    fn serde_uses_the_code() {
        let json = serde_json::to_string(&GpuClass::H100).unwrap();
        assert_eq!(json, "9");
        assert_eq!(
            serde_json::from_str::<GpuClass>("10").unwrap(),
            GpuClass::H200
        );
        assert!(serde_json::from_str::<GpuClass>("99").is_err());
    }

    #[test]
    fn device_names_map_to_classes() {
        let gb = 1_000_000_000u64;
        assert_eq!(
            GpuClass::from_device_name("NVIDIA H200", 141 * gb),
            Some(GpuClass::H200)
        );
        assert_eq!(
            GpuClass::from_device_name("NVIDIA H100 80GB HBM3", 80 * gb),
            Some(GpuClass::H100)
        );
        assert_eq!(
            GpuClass::from_device_name("NVIDIA A100-SXM4-80GB", 80 * gb),
            Some(GpuClass::A100_80gb)
        );
        assert_eq!(
            GpuClass::from_device_name("NVIDIA GeForce RTX 4090", 24 * gb),
            Some(GpuClass::Rtx4090)
        );
        assert_eq!(
            GpuClass::from_device_name("Tesla T4", 16 * gb),
            Some(GpuClass::T4)
        );
        assert_eq!(
            GpuClass::from_device_name("NVIDIA L4", 24 * gb),
            Some(GpuClass::L4)
        );
        assert_eq!(GpuClass::from_device_name("Quadro K2200", 4 * gb), None);
    }
}
