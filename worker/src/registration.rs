//! The rule a worker enforces before it offers a GPU on the market: enough memory and enough
//! measured bandwidth, so buyers are not sold cards that cannot run today's models.

use crate::backend::{DeviceInfo, Measurement};
use serde::{Deserialize, Serialize};

/// Minimums for offering a device. Defaults: 8 GB of memory and 144 GB/s of measured bandwidth
/// (roughly the floor of a current data-center or gaming card; a T4 has 320 GB/s on paper).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RegistrationRule {
    pub min_vram_bytes: u64,
    pub min_memory_bandwidth_gbs: f64,
}

impl Default for RegistrationRule {
    fn default() -> Self {
        RegistrationRule {
            min_vram_bytes: 8_000_000_000,
            min_memory_bandwidth_gbs: 144.0,
        }
    }
}

/// Why a device may not be offered.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RegistrationRefusal {
    #[error(
        "{name} has {have_gb:.1} GB of memory; the market needs at least {need_gb:.1} GB per GPU, so this card cannot be offered"
    )]
    TooLittleMemory {
        name: String,
        have_gb: f64,
        need_gb: f64,
    },
    #[error(
        "{name} measured {have:.0} GB/s of memory bandwidth; the market needs at least {need:.0} GB/s. Check that nothing else is using the GPU and that it runs at full PCIe/memory clocks, then measure again"
    )]
    TooLittleBandwidth { name: String, have: f64, need: f64 },
}

impl RegistrationRule {
    /// Ok when the device, as detected and measured, may be offered.
    pub fn check(
        &self,
        device: &DeviceInfo,
        measured: &Measurement,
    ) -> Result<(), RegistrationRefusal> {
        if device.vram_bytes < self.min_vram_bytes {
            return Err(RegistrationRefusal::TooLittleMemory {
                name: device.name.clone(),
                have_gb: device.vram_bytes as f64 / 1e9,
                need_gb: self.min_vram_bytes as f64 / 1e9,
            });
        }
        if measured.memory_bandwidth_gbs < self.min_memory_bandwidth_gbs {
            return Err(RegistrationRefusal::TooLittleBandwidth {
                name: device.name.clone(),
                have: measured.memory_bandwidth_gbs,
                need: self.min_memory_bandwidth_gbs,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::DeviceKind;

    fn device(vram_gb: u64) -> DeviceInfo {
        DeviceInfo {
            kind: DeviceKind::Cuda { ordinal: 0 },
            name: "NVIDIA T4".into(),
            uuid: None,
            pci_vendor_id: Some(0x10de),
            pci_device_id: None,
            pci_bus_id: None,
            vram_bytes: vram_gb * 1_000_000_000,
            multiprocessors: 40,
            compute_capability: Some((7, 5)),
            class: None,
        }
    }

    fn measured(gbs: f64) -> Measurement {
        Measurement {
            memory_bandwidth_gbs: gbs,
            int8_tops: 50.0,
            gemm_n: 4096,
        }
    }

    #[test]
    fn enforces_memory_and_bandwidth() {
        let rule = RegistrationRule::default();
        assert_eq!(rule.check(&device(16), &measured(250.0)), Ok(()));
        let err = rule.check(&device(6), &measured(250.0)).unwrap_err();
        assert!(matches!(err, RegistrationRefusal::TooLittleMemory { .. }));
        assert!(err.to_string().contains("at least 8.0 GB"));
        let err = rule.check(&device(16), &measured(100.0)).unwrap_err();
        assert!(matches!(
            err,
            RegistrationRefusal::TooLittleBandwidth { .. }
        ));
        let lenient = RegistrationRule {
            min_memory_bandwidth_gbs: 50.0,
            ..Default::default()
        };
        assert_eq!(lenient.check(&device(16), &measured(100.0)), Ok(()));
    }
}
