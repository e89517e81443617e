//! The CUDA backend: the challenge matrices are generated on the GPU (NVRTC-compiled twin of the
//! protocol's generator), multiplied by cuBLASLt in int8 with exact int32 accumulation
//! (CUBLAS_COMPUTE_32I), and C's rows are hashed and the Merkle tree built on the device; only
//! the root, and later the opened rows with their sibling hashes, are copied back.
//!
//! cudarc loads libcuda, libcublasLt and libnvrtc at run time, so this builds without CUDA;
//! detection checks the libraries are loadable before touching them (cudarc panics on a
//! missing library), so a machine without a driver gets a typed error, never a panic.

mod blas;

use crate::backend::{
    BackendError, ComputeBackend, DeviceInfo, DeviceKind, Measurement, Telemetry, check_challenge,
    check_open_request,
};
use blas::Int8Gemm;
use cudarc::driver::sys::CUdevice_attribute;
use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, DriverError, LaunchConfig, PushKernelArg,
};
use cudarc::nvrtc::{CompileOptions, compile_ptx_with_opts};
use gpumesh_protocol::challenge::{PROTOCOL_VERSION, ProverTiming};
use gpumesh_protocol::merkle::{self, Digest, path_positions};
use gpumesh_protocol::{
    Challenge, Commitment, GpuClass, OpenRequest, OpenedRow, Opening, generator,
};
use std::sync::Arc;
use std::time::{Duration, Instant};

const KERNELS: &str = include_str!("kernels.cu");

impl From<DriverError> for BackendError {
    fn from(e: DriverError) -> Self {
        BackendError::Driver(e.to_string())
    }
}

/// Runs a cudarc call that may panic when a library is missing, as an error.
fn guarded<T>(f: impl FnOnce() -> Result<T, BackendError>) -> Result<T, BackendError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .unwrap_or_else(|_| Err(BackendError::Driver("a CUDA library call panicked".into())))
}

/// Fails with `NoDriver` unless libcuda can be loaded.
fn require_driver() -> Result<(), BackendError> {
    // SAFETY: only tries to dlopen the library, calls nothing in it.
    if unsafe { cudarc::driver::sys::is_culib_present() } {
        Ok(())
    } else {
        Err(BackendError::NoDriver)
    }
}

/// Lists the CUDA devices with what the driver and NVML say about them.
pub fn detect() -> Result<Vec<DeviceInfo>, BackendError> {
    require_driver()?;
    guarded(|| {
        cudarc::driver::result::init()?;
        let count = CudaContext::device_count()?;
        if count <= 0 {
            return Err(BackendError::NoDevice);
        }
        let nvml = nvml_wrapper::Nvml::init().ok();
        (0..count as usize)
            .map(|ordinal| {
                let ctx = CudaContext::new(ordinal)?;
                describe(&ctx, nvml.as_ref())
            })
            .collect()
    })
}

fn uuid_string(bytes: &[u8; 16]) -> String {
    let h = gpumesh_protocol::hex(bytes);
    format!(
        "GPU-{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn describe(
    ctx: &Arc<CudaContext>,
    nvml: Option<&nvml_wrapper::Nvml>,
) -> Result<DeviceInfo, BackendError> {
    let name = ctx.name()?;
    let uuid = ctx.uuid()?;
    let uuid = uuid_string(&uuid.bytes.map(|b| b as u8));
    let vram_bytes = ctx.total_mem()? as u64;
    let multiprocessors =
        ctx.attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)? as u32;
    let (major, minor) = ctx.compute_capability()?;
    let pci = nvml
        .and_then(|nvml| nvml.device_by_uuid(uuid.as_str()).ok())
        .and_then(|device| device.pci_info().ok());
    Ok(DeviceInfo {
        kind: DeviceKind::Cuda {
            ordinal: ctx.ordinal() as u32,
        },
        class: GpuClass::from_device_name(&name, vram_bytes),
        name,
        uuid: Some(uuid),
        // NVML packs the PCI device id as (device << 16) | vendor.
        pci_vendor_id: pci.as_ref().map(|p| (p.pci_device_id & 0xFFFF) as u16),
        pci_device_id: pci.as_ref().map(|p| (p.pci_device_id >> 16) as u16),
        pci_bus_id: pci.map(|p| p.bus_id),
        vram_bytes,
        multiprocessors,
        compute_capability: Some((major as u32, minor as u32)),
    })
}

/// NVRTC's virtual architecture for a compute capability (PTX, so the driver JIT-compiles it for
/// the exact chip, e.g. sm_90 for H100/H200).
fn arch_for(major: i32, minor: i32) -> &'static str {
    match (major, minor) {
        (7, 5) => "compute_75",
        (8, 0) => "compute_80",
        (8, 6) => "compute_86",
        (8, 7) => "compute_87",
        (8, 9) => "compute_89",
        (9, _) => "compute_90",
        (10, _) => "compute_100",
        (12, _) => "compute_120",
        (m, _) if m > 12 => "compute_120",
        _ => "compute_75",
    }
}

struct Kernels {
    generate_a: CudaFunction,
    generate_bt: CudaFunction,
    hash_rows: CudaFunction,
    merkle_level: CudaFunction,
    copy16: CudaFunction,
    generator_vectors: CudaFunction,
}

/// The last committed answer, kept on the device.
struct Answer {
    challenge_id: u64,
    n: u32,
    c: CudaSlice<i32>,
    /// Merkle levels, leaves first, 8 u32 words per node.
    levels: Vec<CudaSlice<u32>>,
}

/// Timings of one commit, split by phase on the GPU's own clock (events).
#[derive(Debug, Clone, Copy, Default)]
pub struct PhaseTimes {
    pub generate: Duration,
    pub multiply: Duration,
    pub hash: Duration,
    pub merkle: Duration,
    pub total: Duration,
}

pub struct CudaBackend {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    kernels: Kernels,
    gemm: Int8Gemm,
    keys: CudaSlice<u32>,
    info: DeviceInfo,
    nvml: Option<nvml_wrapper::Nvml>,
    answer: Option<Answer>,
    last_phases: PhaseTimes,
}

impl CudaBackend {
    /// Opens device `ordinal`, compiles the kernels for it and sets up cuBLASLt.
    pub fn new(ordinal: u32) -> Result<Self, BackendError> {
        require_driver()?;
        // SAFETY: as in `require_driver`.
        if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
            return Err(BackendError::MissingLibrary {
                library: "libnvrtc",
            });
        }
        if !unsafe { cudarc::cublaslt::sys::is_culib_present() } {
            return Err(BackendError::MissingLibrary {
                library: "libcublasLt",
            });
        }
        guarded(|| {
            cudarc::driver::result::init()?;
            if CudaContext::device_count()? <= ordinal as i32 {
                return Err(BackendError::NoDevice);
            }
            let ctx = CudaContext::new(ordinal as usize)?;
            let nvml = nvml_wrapper::Nvml::init().ok();
            let info = describe(&ctx, nvml.as_ref())?;
            let stream = ctx.default_stream();
            let (major, minor) = ctx.compute_capability()?;
            let source = format!("{}\n{}", generator::CUDA_SOURCE, KERNELS);
            let ptx = compile_ptx_with_opts(
                source,
                CompileOptions {
                    arch: Some(arch_for(major, minor)),
                    options: vec!["--std=c++17".into()],
                    ..Default::default()
                },
            )
            .map_err(|e| BackendError::Kernel(e.to_string()))?;
            let module = ctx.load_module(ptx)?;
            let kernels = Kernels {
                generate_a: module.load_function("generate_a")?,
                generate_bt: module.load_function("generate_bt")?,
                hash_rows: module.load_function("hash_rows")?,
                merkle_level: module.load_function("merkle_level")?,
                copy16: module.load_function("copy16")?,
                generator_vectors: module.load_function("generator_vectors")?,
            };
            let mut key_words = merkle::key_words(merkle::leaf_key()).to_vec();
            key_words.extend(merkle::key_words(merkle::node_key()));
            let keys = stream.clone_htod(&key_words)?;
            let gemm = Int8Gemm::new(stream.clone(), major)?;
            Ok(CudaBackend {
                ctx,
                stream,
                kernels,
                gemm,
                keys,
                info,
                nvml,
                answer: None,
                last_phases: PhaseTimes::default(),
            })
        })
    }

    /// Phase timings of the last commit (for the GPU check's table).
    pub fn last_phases(&self) -> PhaseTimes {
        self.last_phases
    }

    /// The generator's test vectors computed by the CUDA twin; must equal
    /// `gpumesh_protocol::generator::TEST_VECTORS`.
    pub fn generator_vectors(&self) -> Result<Vec<u64>, BackendError> {
        let mut seed = [0u8; 32];
        for (i, b) in seed.iter_mut().enumerate() {
            *b = i as u8;
        }
        let [k0, k1, k2, k3] = generator::key_from_seed(&seed);
        let mut out = self.stream.alloc_zeros::<u64>(6)?;
        let mut launch = self.stream.launch_builder(&self.kernels.generator_vectors);
        launch.arg(&mut out).arg(&k0).arg(&k1).arg(&k2).arg(&k3);
        // SAFETY: the kernel writes 6 words into `out`, which has 6.
        unsafe { launch.launch(LaunchConfig::for_num_elems(1)) }?;
        Ok(self.stream.clone_dtoh(&out)?)
    }

    /// Generates A (row-major) and Bt (B column-major) for `seed` on the device.
    fn generate(
        &self,
        seed: &[u8; 32],
        n: u32,
    ) -> Result<(CudaSlice<u8>, CudaSlice<u8>), BackendError> {
        let [k0, k1, k2, k3] = generator::key_from_seed(seed);
        let elems = n as usize * n as usize;
        // SAFETY: both buffers are fully written by the kernels below before any read.
        let mut a = unsafe { self.stream.alloc::<u8>(elems) }?;
        let mut bt = unsafe { self.stream.alloc::<u8>(elems) }?;
        {
            let words = elems as u64 / 8;
            let blocks = words.div_ceil(256).min(65535 * 16) as u32;
            // SAFETY: A as u64 words; the allocation is elems bytes, a multiple of 8.
            let mut a_words = unsafe { a.transmute_mut::<u64>(elems / 8) }
                .ok_or_else(|| BackendError::Driver("A buffer too small".into()))?;
            let mut launch = self.stream.launch_builder(&self.kernels.generate_a);
            launch
                .arg(&mut a_words)
                .arg(&n)
                .arg(&k0)
                .arg(&k1)
                .arg(&k2)
                .arg(&k3);
            let cfg = LaunchConfig {
                grid_dim: (blocks, 1, 1),
                block_dim: (256, 1, 1),
                shared_mem_bytes: 0,
            };
            // SAFETY: grid-stride loop bounded by n * n / 8 words.
            unsafe { launch.launch(cfg) }?;
        }
        {
            let tiles = n / 64;
            let mut launch = self.stream.launch_builder(&self.kernels.generate_bt);
            launch
                .arg(&mut bt)
                .arg(&n)
                .arg(&k0)
                .arg(&k1)
                .arg(&k2)
                .arg(&k3);
            let cfg = LaunchConfig {
                grid_dim: (tiles, tiles, 1),
                block_dim: (512, 1, 1),
                shared_mem_bytes: 0,
            };
            // SAFETY: n is a multiple of 64, so the tiles cover Bt exactly.
            unsafe { launch.launch(cfg) }?;
        }
        Ok((a, bt))
    }

    /// Hashes C's rows and builds the Merkle levels on the device.
    fn hash_and_tree(
        &self,
        c: &CudaSlice<i32>,
        n: u32,
    ) -> Result<Vec<CudaSlice<u32>>, BackendError> {
        let mut leaves = self.stream.alloc_zeros::<u32>(n as usize * 8)?;
        let chunks = n.div_ceil(256);
        let threads = chunks.div_ceil(32).clamp(1, 8) * 32;
        let mut launch = self.stream.launch_builder(&self.kernels.hash_rows);
        launch.arg(c).arg(&n).arg(&self.keys).arg(&mut leaves);
        let cfg = LaunchConfig {
            grid_dim: (n, 1, 1),
            block_dim: (threads, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: one block per row of an n × n C; leaves has 8 words per row.
        unsafe { launch.launch(cfg) }?;
        let mut levels = vec![leaves];
        let mut width = n;
        while width > 1 {
            let up = width.div_ceil(2);
            let mut above = self.stream.alloc_zeros::<u32>(up as usize * 8)?;
            let below = levels
                .last()
                .ok_or(BackendError::Driver("no level".into()))?;
            let mut launch = self.stream.launch_builder(&self.kernels.merkle_level);
            launch
                .arg(below)
                .arg(&width)
                .arg(&self.keys)
                .arg(&mut above);
            // SAFETY: `up` threads, each reading two nodes of `below` and writing one of `above`.
            unsafe { launch.launch(LaunchConfig::for_num_elems(up)) }?;
            levels.push(above);
            width = up;
        }
        Ok(levels)
    }

    fn read_digest(&self, level: &CudaSlice<u32>, index: usize) -> Result<Digest, BackendError> {
        let words = self
            .stream
            .clone_dtoh(&level.slice(index * 8..index * 8 + 8))?;
        let mut bytes = [0u8; 32];
        for (dst, w) in bytes.chunks_exact_mut(4).zip(&words) {
            dst.copy_from_slice(&w.to_le_bytes());
        }
        Ok(Digest(bytes))
    }

    /// Bytes of device memory a challenge of size n needs: A, Bt, C, the tree, the workspace.
    fn memory_needed(n: u32) -> u64 {
        let n = u64::from(n);
        2 * n * n + 4 * n * n + 2 * n * 32 + (64 << 20)
    }

    /// An event that can time: cudarc's `new_event(None)` disables timing, and
    /// `cuEventElapsedTime` then fails with "invalid resource handle" (measured on an H200).
    fn timing_event(&self) -> Result<cudarc::driver::CudaEvent, cudarc::driver::DriverError> {
        self.ctx
            .new_event(Some(cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT))
    }

    fn event_ms(
        start: &cudarc::driver::CudaEvent,
        end: &cudarc::driver::CudaEvent,
    ) -> Result<Duration, BackendError> {
        Ok(Duration::from_secs_f64(
            f64::from(start.elapsed_ms(end)?.max(0.0)) / 1e3,
        ))
    }
}

impl ComputeBackend for CudaBackend {
    fn describe(&self) -> &DeviceInfo {
        &self.info
    }

    fn measure(&mut self) -> Result<Measurement, BackendError> {
        // Bandwidth: copy 1 GiB device to device, best of 5, bytes read + written.
        let bytes: usize = 1 << 30;
        let count = bytes / 16;
        let src = self.stream.alloc_zeros::<u8>(bytes)?;
        let mut dst = self.stream.alloc_zeros::<u8>(bytes)?;
        let sms = self.info.multiprocessors.max(1);
        let mut best = f64::MAX;
        for _ in 0..5 {
            let start = self.timing_event()?;
            let end = self.timing_event()?;
            start.record(&self.stream)?;
            let mut launch = self.stream.launch_builder(&self.kernels.copy16);
            let count = count as u64;
            launch.arg(&src).arg(&mut dst).arg(&count);
            let cfg = LaunchConfig {
                grid_dim: (sms * 8, 1, 1),
                block_dim: (512, 1, 1),
                shared_mem_bytes: 0,
            };
            // SAFETY: both buffers hold `count` 16-byte elements.
            unsafe { launch.launch(cfg) }?;
            end.record(&self.stream)?;
            end.synchronize()?;
            best = best.min(Self::event_ms(&start, &end)?.as_secs_f64());
        }
        let bandwidth = 2.0 * bytes as f64 / best / 1e9;
        drop((src, dst));
        // Throughput: the challenge product at n = 8192 (4096 on small cards), best of 3.
        let free = self.ctx.mem_get_info()?.0 as u64;
        let n: u32 = if free > Self::memory_needed(8192) {
            8192
        } else {
            4096
        };
        let (a, bt) = self.generate(&[0x5A; 32], n)?;
        let mut c = self.stream.alloc_zeros::<i32>(n as usize * n as usize)?;
        let mut best = f64::MAX;
        for _ in 0..3 {
            let start = self.timing_event()?;
            let end = self.timing_event()?;
            start.record(&self.stream)?;
            self.gemm.multiply(&bt, &a, &mut c, n)?;
            end.record(&self.stream)?;
            end.synchronize()?;
            best = best.min(Self::event_ms(&start, &end)?.as_secs_f64());
        }
        Ok(Measurement {
            memory_bandwidth_gbs: bandwidth,
            int8_tops: 2.0 * f64::from(n).powi(3) / best / 1e12,
            gemm_n: n,
        })
    }

    fn telemetry(&self) -> Result<Telemetry, BackendError> {
        use nvml_wrapper::enum_wrappers::device::{Clock, TemperatureSensor};
        let nvml = self
            .nvml
            .as_ref()
            .ok_or_else(|| BackendError::Telemetry("libnvidia-ml.so could not be loaded".into()))?;
        let uuid = self.info.uuid.as_deref().unwrap_or_default();
        let device = nvml
            .device_by_uuid(uuid)
            .map_err(|e| BackendError::Telemetry(e.to_string()))?;
        Ok(Telemetry {
            temperature_c: device.temperature(TemperatureSensor::Gpu).ok(),
            power_w: device.power_usage().ok().map(|mw| f64::from(mw) / 1e3),
            utilization_pct: device.utilization_rates().ok().map(|u| u.gpu),
            memory_used_bytes: device.memory_info().ok().map(|m| m.used),
            sm_clock_mhz: device.clock_info(Clock::SM).ok(),
            memory_clock_mhz: device.clock_info(Clock::Memory).ok(),
        })
    }

    fn commit(&mut self, challenge: &Challenge) -> Result<Commitment, BackendError> {
        check_challenge(challenge)?;
        self.answer = None; // frees the previous answer's device memory first
        let n = challenge.n;
        let free = self.ctx.mem_get_info()?.0 as u64;
        let needed = Self::memory_needed(n);
        if needed > free {
            return Err(BackendError::OutOfMemory { n, needed, free });
        }
        let wall = Instant::now();
        let e: Vec<_> = (0..5)
            .map(|_| self.timing_event())
            .collect::<Result<_, _>>()?;
        e[0].record(&self.stream)?;
        let (a, bt) = self.generate(&challenge.seed, n)?;
        e[1].record(&self.stream)?;
        // SAFETY: fully written by the product.
        let mut c = unsafe { self.stream.alloc::<i32>(n as usize * n as usize) }?;
        self.gemm.multiply(&bt, &a, &mut c, n)?;
        e[2].record(&self.stream)?;
        drop((a, bt));
        let levels = self.hash_and_tree(&c, n)?;
        e[3].record(&self.stream)?;
        let root_level = levels
            .last()
            .ok_or(BackendError::Driver("empty tree".into()))?;
        let root = self.read_digest(root_level, 0)?;
        e[4].record(&self.stream)?;
        e[4].synchronize()?;
        let total = wall.elapsed();
        self.last_phases = PhaseTimes {
            generate: Self::event_ms(&e[0], &e[1])?,
            multiply: Self::event_ms(&e[1], &e[2])?,
            hash: Self::event_ms(&e[2], &e[3])?,
            merkle: Self::event_ms(&e[3], &e[4])?,
            total,
        };
        self.answer = Some(Answer {
            challenge_id: challenge.id,
            n,
            c,
            levels,
        });
        Ok(Commitment {
            version: PROTOCOL_VERSION,
            challenge_id: challenge.id,
            rows: n,
            root,
            timing: ProverTiming {
                generate: self.last_phases.generate,
                multiply: self.last_phases.multiply,
                hash: self.last_phases.hash + self.last_phases.merkle,
                total,
            },
        })
    }

    fn open(&mut self, request: &OpenRequest) -> Result<Opening, BackendError> {
        let committed = self.answer.as_ref().map(|a| (a.challenge_id, a.n));
        check_open_request(request, committed)?;
        let Some(answer) = self.answer.as_ref() else {
            return Err(BackendError::NotCommitted {
                requested: request.challenge_id,
                committed: None,
            });
        };
        let n = answer.n as usize;
        let mut rows = Vec::with_capacity(request.rows.len());
        for &index in &request.rows {
            let i = index as usize;
            let values = self
                .stream
                .clone_dtoh(&answer.c.slice(i * n..(i + 1) * n))?;
            let path = path_positions(n, i)
                .into_iter()
                .map(|(level, sibling)| self.read_digest(&answer.levels[level], sibling))
                .collect::<Result<_, _>>()?;
            rows.push(OpenedRow {
                index,
                values,
                path,
            });
        }
        Ok(Opening {
            version: PROTOCOL_VERSION,
            challenge_id: request.challenge_id,
            rows,
        })
    }
}
