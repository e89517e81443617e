//! What the machine really is, checked before the daemon offers it: GPUs found by the CUDA
//! driver (or the CPU backend for test networks), memory bandwidth measured by the backend, the
//! market's floor, and the worker's on-chain claim when the config gives it. Then the live
//! readings every heartbeat carries: NVML per GPU, CPU and memory from `/proc`.

use super::config::{BackendChoice, Claim, Config, Floor};
use crate::backend::{BackendError, ComputeBackend, DeviceInfo, DeviceKind, Measurement};
use crate::registration::{RegistrationRefusal, RegistrationRule};
use gpumesh_protocol::GpuClass;
use gpumesh_protocol::wire::{GpuReport, GpuTelemetry, HardwareReport, Telemetry};

/// VRAM a GPU may show below its claim (drivers reserve some; datasheets round).
pub const VRAM_ALLOWANCE_PCT: u32 = 5;
/// Measured copy bandwidth reaches 80–95 % of the datasheet figure a claim usually carries; below
/// this share of the claim the machine is not what was registered.
pub const BANDWIDTH_SHARE_PCT: u32 = 75;

/// One GPU slot the worker offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuSlot {
    /// The machine's index for it (the CUDA ordinal; the wire's `gpu_indices`).
    pub index: u16,
    /// "GPU-…" as nvidia-smi prints it (CUDA workers).
    pub uuid: Option<String>,
    /// NVML's index (what CDI device names and nvidia-smi use), when NVML answered.
    pub nvml_index: Option<u32>,
}

/// The machine as detected, measured and checked.
#[derive(Debug, Clone)]
pub struct Machine {
    pub report: HardwareReport,
    /// The slots offered, in index order (CPU workers: nominal slots without devices).
    pub slots: Vec<GpuSlot>,
    pub measurement: Measurement,
}

impl Machine {
    pub fn has_gpus(&self) -> bool {
        self.report.backend == "cuda"
    }

    pub fn slot(&self, index: u16) -> Option<&GpuSlot> {
        self.slots.iter().find(|s| s.index == index)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HardwareError {
    #[error(
        "no usable GPU: {0}. To run a CPU worker (class cpu, test networks), set [hardware] backend = \"cpu\" in the config"
    )]
    NoGpu(BackendError),
    #[error("measuring the machine failed: {0}")]
    Measure(BackendError),
    #[error(
        "{0}. The floor is the market's (`min_worker_vram_mib`, `min_worker_bandwidth_gbps`); the config's [floor] must carry the market's values (defaults: 7629 MiB, 144 GB/s)"
    )]
    BelowFloor(RegistrationRefusal),
    #[error(
        "the machine is not what the worker registered on chain: {what} is {found}, the claim says {claimed}. Fix the machine, or register the worker again with the machine's real hardware and copy the claim into the config's [claim]"
    )]
    ClaimMismatch {
        what: &'static str,
        found: String,
        claimed: String,
    },
    #[error(
        "the GPUs differ ({0}); a worker offers one class: run one daemon per class with CUDA_VISIBLE_DEVICES"
    )]
    MixedClasses(String),
    #[error(
        "cannot tell the class of {0}; name it in the config's [claim] (class, gpus, vram_mib, bandwidth_gbps as registered)"
    )]
    UnknownClass(String),
}

/// Finds, measures and checks the machine (blocking: the measurement takes a few seconds).
pub fn detect(config: &Config) -> Result<(Machine, Box<dyn ComputeBackend>), HardwareError> {
    let (mut backend, devices) = match config.hardware.backend {
        BackendChoice::Cpu => cpu_backend(),
        BackendChoice::Cuda => {
            let backend = crate::cuda::CudaBackend::new(0).map_err(HardwareError::NoGpu)?;
            let devices = crate::cuda::detect().map_err(HardwareError::NoGpu)?;
            (Box::new(backend) as Box<dyn ComputeBackend>, devices)
        }
        BackendChoice::Auto => match crate::cuda::detect() {
            Ok(devices) => match crate::cuda::CudaBackend::new(0) {
                Ok(backend) => (Box::new(backend) as Box<dyn ComputeBackend>, devices),
                Err(why) => {
                    tracing::warn!(
                        "GPUs found but the CUDA backend failed ({why}); running as a CPU worker"
                    );
                    cpu_backend()
                }
            },
            Err(why) => {
                tracing::info!("no GPU ({why}); running as a CPU worker");
                cpu_backend()
            }
        },
    };
    let measurement = backend.measure().map_err(HardwareError::Measure)?;
    let machine = check(&devices, &measurement, &config.floor, config.claim.as_ref())?;
    Ok((machine, backend))
}

fn cpu_backend() -> (Box<dyn ComputeBackend>, Vec<DeviceInfo>) {
    let cpu = crate::cpu::CpuBackend::new();
    let mut info = cpu.describe().clone();
    // The CPU's "device memory" is the host's.
    info.vram_bytes = host_memory().map_or(0, |(total, _)| total);
    (Box::new(cpu), vec![info])
}

/// Checks detected devices against the floor and the claim and builds what the daemon reports.
/// A CPU worker is one device (`DeviceKind::Cpu`) offered as the claim's number of slots.
pub fn check(
    devices: &[DeviceInfo],
    measured: &Measurement,
    floor: &Floor,
    claim: Option<&Claim>,
) -> Result<Machine, HardwareError> {
    let Some(first) = devices.first() else {
        return Err(HardwareError::NoGpu(BackendError::NoDevice));
    };
    let cpu = first.kind == DeviceKind::Cpu;
    let class = if cpu {
        GpuClass::Cpu
    } else {
        let classes: Vec<Option<GpuClass>> = devices.iter().map(|d| d.class).collect();
        if classes.iter().any(|c| *c != classes[0]) {
            let names: Vec<&str> = devices.iter().map(|d| d.name.as_str()).collect();
            return Err(HardwareError::MixedClasses(names.join(", ")));
        }
        match (classes[0], claim) {
            (Some(class), _) => class,
            (None, Some(claim)) => {
                tracing::warn!(
                    "cannot tell the class of {} from its name; taking the claim's {}",
                    first.name,
                    claim.class
                );
                claim.class
            }
            (None, None) => return Err(HardwareError::UnknownClass(first.name.clone())),
        }
    };

    // How many slots are offered: the claim's count (a machine may offer fewer GPUs than it has).
    let found = if cpu { None } else { Some(devices.len()) };
    let slots = match (claim, found) {
        (Some(claim), Some(found)) if usize::from(claim.gpus) > found => {
            return Err(HardwareError::ClaimMismatch {
                what: "the GPU count",
                found: found.to_string(),
                claimed: claim.gpus.to_string(),
            });
        }
        (Some(claim), _) => usize::from(claim.gpus),
        (None, Some(found)) => found,
        (None, None) => 1,
    };
    // Per slot: a CPU's memory is shared by its slots.
    let per_slot_vram = |d: &DeviceInfo| {
        if cpu {
            d.vram_bytes / slots.max(1) as u64
        } else {
            d.vram_bytes
        }
    };

    let rule = RegistrationRule {
        min_vram_bytes: u64::from(floor.min_vram_mib) << 20,
        min_memory_bandwidth_gbs: floor.min_bandwidth_gbps,
    };
    for d in devices.iter().take(if cpu { 1 } else { slots }) {
        let mut slot = d.clone();
        slot.vram_bytes = per_slot_vram(d);
        rule.check(&slot, measured)
            .map_err(HardwareError::BelowFloor)?;
    }

    if let Some(claim) = claim {
        if claim.class != class {
            return Err(HardwareError::ClaimMismatch {
                what: "the class",
                found: class.to_string(),
                claimed: claim.class.to_string(),
            });
        }
        let vram_mib = per_slot_vram(first) >> 20;
        if vram_mib * 100 < u64::from(claim.vram_mib) * u64::from(100 - VRAM_ALLOWANCE_PCT) {
            return Err(HardwareError::ClaimMismatch {
                what: "the memory per GPU",
                found: format!("{vram_mib} MiB"),
                claimed: format!(
                    "{} MiB (at least {}% of it is needed)",
                    claim.vram_mib,
                    100 - VRAM_ALLOWANCE_PCT
                ),
            });
        }
        if measured.memory_bandwidth_gbs * 100.0
            < f64::from(claim.bandwidth_gbps) * f64::from(BANDWIDTH_SHARE_PCT)
        {
            return Err(HardwareError::ClaimMismatch {
                what: "the measured memory bandwidth",
                found: format!("{:.0} GB/s", measured.memory_bandwidth_gbs),
                claimed: format!(
                    "{} GB/s (at least {BANDWIDTH_SHARE_PCT}% of it is needed)",
                    claim.bandwidth_gbps
                ),
            });
        }
    }

    let driver = driver_version().unwrap_or_default();
    let (gpus, slot_list) = if cpu {
        let vram_mib = (per_slot_vram(first) >> 20).min(u64::from(u32::MAX)) as u32;
        let reports = (0..slots as u16)
            .map(|index| GpuReport {
                index,
                name: first.name.clone(),
                vram_mib,
                pci: String::new(),
                driver: String::new(),
            })
            .collect();
        let slot_list = (0..slots as u16)
            .map(|index| GpuSlot {
                index,
                uuid: None,
                nvml_index: None,
            })
            .collect();
        (reports, slot_list)
    } else {
        let mut reports = Vec::new();
        let mut slot_list = Vec::new();
        for d in devices.iter().take(slots) {
            let index = match d.kind {
                DeviceKind::Cuda { ordinal } => ordinal as u16,
                DeviceKind::Cpu => 0,
            };
            reports.push(GpuReport {
                index,
                name: d.name.clone(),
                vram_mib: (d.vram_bytes >> 20).min(u64::from(u32::MAX)) as u32,
                pci: d.pci_bus_id.clone().unwrap_or_default(),
                driver: driver.clone(),
            });
            slot_list.push(GpuSlot {
                index,
                nvml_index: d.uuid.as_deref().and_then(nvml_index),
                uuid: d.uuid.clone(),
            });
        }
        (reports, slot_list)
    };
    Ok(Machine {
        report: HardwareReport {
            class,
            gpus,
            measured_bandwidth_gbps: measured.memory_bandwidth_gbs,
            backend: if cpu { "cpu" } else { "cuda" }.into(),
        },
        slots: slot_list,
        measurement: *measured,
    })
}

/// Total and available host memory, bytes (`/proc/meminfo`).
pub fn host_memory() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map(|kb| kb * 1024)
    };
    Some((field("MemTotal:")?, field("MemAvailable:")?))
}

/// Busy and total jiffies of all CPUs (`/proc/stat`).
fn cpu_jiffies() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let values: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    if values.len() < 4 {
        return None;
    }
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let total: u64 = values.iter().take(8).sum();
    let idle = values[3] + values.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// A float for the wire: telemetry is hashed as JSON, where NaN has no spelling.
fn finite(x: f32) -> f32 {
    if x.is_finite() { x } else { 0.0 }
}

/// Reads the machine's state for heartbeats.
pub struct TelemetrySampler {
    previous: Option<(u64, u64)>,
    slots: Vec<GpuSlot>,
    #[cfg(feature = "cuda")]
    nvml: Option<nvml_wrapper::Nvml>,
}

impl TelemetrySampler {
    pub fn new(machine: &Machine) -> Self {
        TelemetrySampler {
            previous: cpu_jiffies(),
            slots: if machine.has_gpus() {
                machine.slots.clone()
            } else {
                Vec::new()
            },
            #[cfg(feature = "cuda")]
            nvml: nvml_wrapper::Nvml::init().ok(),
        }
    }

    pub fn sample(&mut self) -> Telemetry {
        let mut cpu_pct = 0.0;
        if let Some((busy, total)) = cpu_jiffies() {
            if let Some((pb, pt)) = self.previous
                && total > pt
            {
                cpu_pct = (busy.saturating_sub(pb)) as f32 * 100.0 / (total - pt) as f32;
            }
            self.previous = Some((busy, total));
        }
        let (total, available) = host_memory().unwrap_or((0, 0));
        Telemetry {
            gpus: self.gpus(),
            cpu_pct: finite(cpu_pct),
            memory_used_mib: total.saturating_sub(available) >> 20,
            memory_total_mib: total >> 20,
        }
    }

    #[cfg(feature = "cuda")]
    fn gpus(&self) -> Vec<GpuTelemetry> {
        use nvml_wrapper::enum_wrappers::device::{Clock, TemperatureSensor};
        let Some(nvml) = &self.nvml else {
            return Vec::new();
        };
        self.slots
            .iter()
            .filter_map(|slot| {
                let device = nvml.device_by_uuid(slot.uuid.as_deref()?).ok()?;
                let memory = device.memory_info().ok();
                Some(GpuTelemetry {
                    index: slot.index,
                    temperature_c: device
                        .temperature(TemperatureSensor::Gpu)
                        .map_or(0.0, |t| t as f32),
                    utilization_pct: device.utilization_rates().map_or(0.0, |u| u.gpu as f32),
                    memory_used_mib: memory.as_ref().map_or(0, |m| (m.used >> 20) as u32),
                    memory_total_mib: memory.as_ref().map_or(0, |m| (m.total >> 20) as u32),
                    power_w: finite(device.power_usage().map_or(0.0, |mw| mw as f32 / 1e3)),
                    sm_clock_mhz: device.clock_info(Clock::SM).unwrap_or(0),
                    memory_clock_mhz: device.clock_info(Clock::Memory).unwrap_or(0),
                })
            })
            .collect()
    }

    #[cfg(not(feature = "cuda"))]
    fn gpus(&self) -> Vec<GpuTelemetry> {
        // Without NVML there is nothing to read; a CUDA worker is always built with it.
        let _ = &self.slots;
        Vec::new()
    }
}

#[cfg(feature = "cuda")]
fn driver_version() -> Option<String> {
    nvml_wrapper::Nvml::init().ok()?.sys_driver_version().ok()
}

#[cfg(not(feature = "cuda"))]
fn driver_version() -> Option<String> {
    None
}

#[cfg(feature = "cuda")]
fn nvml_index(uuid: &str) -> Option<u32> {
    nvml_wrapper::Nvml::init()
        .ok()?
        .device_by_uuid(uuid)
        .ok()?
        .index()
        .ok()
}

#[cfg(not(feature = "cuda"))]
fn nvml_index(_uuid: &str) -> Option<u32> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpu(ordinal: u32, name: &str, gb: u64, class: Option<GpuClass>) -> DeviceInfo {
        DeviceInfo {
            kind: DeviceKind::Cuda { ordinal },
            name: name.into(),
            uuid: Some(format!("GPU-{ordinal}")),
            pci_vendor_id: Some(0x10de),
            pci_device_id: None,
            pci_bus_id: Some(format!("0000:0{ordinal}:00.0")),
            vram_bytes: gb * 1_000_000_000,
            multiprocessors: 132,
            compute_capability: Some((9, 0)),
            class,
        }
    }

    fn measured(gbs: f64) -> Measurement {
        Measurement {
            memory_bandwidth_gbs: gbs,
            int8_tops: 1000.0,
            gemm_n: 4096,
        }
    }

    fn h100_claim(gpus: u16) -> Claim {
        Claim {
            class: GpuClass::H100,
            gpus,
            vram_mib: 76_293,
            bandwidth_gbps: 3_350,
        }
    }

    #[test]
    fn a_gpu_machine_is_checked_against_the_floor_and_the_claim() {
        let h100s = vec![
            gpu(0, "NVIDIA H100 80GB HBM3", 85, Some(GpuClass::H100)),
            gpu(1, "NVIDIA H100 80GB HBM3", 85, Some(GpuClass::H100)),
        ];
        let m = check(
            &h100s,
            &measured(2_900.0),
            &Floor::default(),
            Some(&h100_claim(2)),
        )
        .expect("matches");
        assert_eq!((m.report.class, m.report.gpus.len()), (GpuClass::H100, 2));
        assert_eq!(m.slots[1].uuid.as_deref(), Some("GPU-1"));
        // Offering fewer GPUs than the machine has is fine; more is not.
        let one = check(
            &h100s,
            &measured(2_900.0),
            &Floor::default(),
            Some(&h100_claim(1)),
        );
        assert_eq!(one.expect("one of two").slots.len(), 1);
        let err = check(
            &h100s,
            &measured(2_900.0),
            &Floor::default(),
            Some(&h100_claim(4)),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("GPU count is 2, the claim says 4"), "{err}");
        // Slow memory against the claim, and against the floor.
        let err = check(
            &h100s,
            &measured(1_000.0),
            &Floor::default(),
            Some(&h100_claim(2)),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("measured memory bandwidth is 1000 GB/s"),
            "{err}"
        );
        let err = check(&h100s, &measured(100.0), &Floor::default(), None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("at least 144 GB/s") && err.contains("[floor]"),
            "{err}"
        );
        // A card below the memory floor.
        let small = vec![gpu(0, "NVIDIA T4", 6, Some(GpuClass::T4))];
        let err = check(&small, &measured(300.0), &Floor::default(), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("GB of memory"), "{err}");
        // The wrong class.
        let l4 = vec![gpu(0, "NVIDIA L4", 24, Some(GpuClass::L4))];
        let err = check(
            &l4,
            &measured(280.0),
            &Floor::default(),
            Some(&h100_claim(1)),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("class is l4, the claim says h100"), "{err}");
        // Mixed cards, and a card nobody can name without a claim.
        let mixed = vec![
            h100s[0].clone(),
            gpu(1, "NVIDIA L4", 24, Some(GpuClass::L4)),
        ];
        assert!(matches!(
            check(&mixed, &measured(2_900.0), &Floor::default(), None),
            Err(HardwareError::MixedClasses(_))
        ));
        let odd = vec![gpu(0, "NVIDIA Future", 96, None)];
        assert!(matches!(
            check(&odd, &measured(2_900.0), &Floor::default(), None),
            Err(HardwareError::UnknownClass(_))
        ));
    }

    #[test]
    fn a_cpu_worker_reports_class_cpu_and_needs_a_lowered_floor() {
        let mut cpu = crate::cpu::CpuBackend::new().describe().clone();
        cpu.vram_bytes = 16 << 30;
        let err = check(&[cpu.clone()], &measured(12.0), &Floor::default(), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("[floor]"), "{err}");
        let test_floor = Floor {
            min_vram_mib: 1_024,
            min_bandwidth_gbps: 1.0,
        };
        let claim = Claim {
            class: GpuClass::Cpu,
            gpus: 2,
            vram_mib: 8_000,
            bandwidth_gbps: 10,
        };
        let m = check(&[cpu.clone()], &measured(12.0), &test_floor, Some(&claim)).expect("ok");
        assert_eq!(m.report.class, GpuClass::Cpu);
        assert_eq!(m.report.backend, "cpu");
        assert_eq!(m.report.gpus.len(), 2);
        assert_eq!(
            m.report.gpus[0].vram_mib, 8_192,
            "host memory shared by the slots"
        );
        let h100 = h100_claim(1);
        let err = check(&[cpu], &measured(12.0), &test_floor, Some(&h100))
            .unwrap_err()
            .to_string();
        assert!(err.contains("class is cpu, the claim says h100"), "{err}");
    }

    #[test]
    fn telemetry_reads_proc_and_stays_finite() {
        let machine = Machine {
            report: HardwareReport {
                class: GpuClass::Cpu,
                gpus: vec![],
                measured_bandwidth_gbps: 1.0,
                backend: "cpu".into(),
            },
            slots: vec![],
            measurement: measured(1.0),
        };
        let mut s = TelemetrySampler::new(&machine);
        std::thread::sleep(std::time::Duration::from_millis(20));
        let t = s.sample();
        assert!(t.memory_total_mib > 0 && t.memory_used_mib <= t.memory_total_mib);
        assert!((0.0..=100.0).contains(&t.cpu_pct), "{}", t.cpu_pct);
        let json = t.digest_bytes();
        let back: Telemetry = serde_json::from_slice(&json).expect("round trip");
        assert_eq!(back.digest_bytes(), json, "the digest survives the wire");
    }
}
