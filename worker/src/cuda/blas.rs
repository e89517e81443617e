//! The int8 product through cuBLASLt with 32-bit integer compute (exact int32 results).
//!
//! Layouts: cuBLASLt is column-major and its int8 tensor-core kernels want the "TN" form with
//! 16-aligned dimensions. Row-major C = A·B is column-major Cᵀ = Bᵀ·Aᵀ, so we ask for
//! D = op_T(X) · op_N(Y) with X = Bt viewed column-major (k × m, i.e. B column-major, which
//! is why the generator writes B transposed) and Y = A's row-major bytes viewed column-major
//! (k × n = Aᵀ). D (m × n, column-major, ld = m) then holds C in row-major order.

use crate::backend::BackendError;
use cudarc::cublaslt::result as lt;
use cudarc::cublaslt::sys;
use cudarc::driver::{CudaSlice, CudaStream, DevicePtr, DevicePtrMut};
use std::ffi::c_void;
use std::sync::Arc;

fn blas_err(e: lt::CublasError) -> BackendError {
    BackendError::Blas(format!("{e:?}"))
}

pub(crate) struct Int8Gemm {
    handle: sys::cublasLtHandle_t,
    workspace: CudaSlice<u8>,
    stream: Arc<CudaStream>,
}

// SAFETY: the handle is only used from the stream's owner, one call at a time (&mut self).
unsafe impl Send for Int8Gemm {}

impl Drop for Int8Gemm {
    fn drop(&mut self) {
        // SAFETY: created in `new`, destroyed once.
        let _ = unsafe { lt::destroy_handle(self.handle) };
    }
}

/// Owns the cuBLASLt descriptors of one call and frees them on every path.
struct Descriptors {
    desc: sys::cublasLtMatmulDesc_t,
    layouts: Vec<sys::cublasLtMatrixLayout_t>,
    pref: sys::cublasLtMatmulPreference_t,
}

impl Drop for Descriptors {
    fn drop(&mut self) {
        // SAFETY: each was created once and is destroyed once here.
        unsafe {
            let _ = lt::destroy_matmul_desc(self.desc);
            for layout in &self.layouts {
                let _ = lt::destroy_matrix_layout(*layout);
            }
            let _ = lt::destroy_matmul_pref(self.pref);
        }
    }
}

impl Int8Gemm {
    pub(crate) fn new(stream: Arc<CudaStream>, cc_major: i32) -> Result<Self, BackendError> {
        let handle = lt::create_handle().map_err(blas_err)?;
        // NVIDIA's recommended workspace: 32 MiB on Hopper and newer, 4 MiB before.
        let size = if cc_major >= 9 { 32 << 20 } else { 4 << 20 };
        let workspace = stream.alloc_zeros::<u8>(size)?;
        Ok(Int8Gemm {
            handle,
            workspace,
            stream,
        })
    }

    /// c (n × n i32, row-major) = A · B, with `a` = A row-major and `bt` = B column-major.
    pub(crate) fn multiply(
        &mut self,
        bt: &CudaSlice<u8>,
        a: &CudaSlice<u8>,
        c: &mut CudaSlice<i32>,
        n: u32,
    ) -> Result<(), BackendError> {
        let dim = u64::from(n);
        let ld = i64::from(n);
        let desc = lt::create_matmul_desc(
            sys::cublasComputeType_t::CUBLAS_COMPUTE_32I,
            sys::cudaDataType::CUDA_R_32I,
        )
        .map_err(blas_err)?;
        let pref = match lt::create_matmul_pref() {
            Ok(pref) => pref,
            Err(e) => {
                // SAFETY: created just above.
                let _ = unsafe { lt::destroy_matmul_desc(desc) };
                return Err(blas_err(e));
            }
        };
        let mut d = Descriptors {
            desc,
            layouts: Vec::new(),
            pref,
        };
        for (ty, rows, cols) in [
            (sys::cudaDataType::CUDA_R_8I, dim, dim),  // X = Bt: k × m
            (sys::cudaDataType::CUDA_R_8I, dim, dim),  // Y = A: k × n
            (sys::cudaDataType::CUDA_R_32I, dim, dim), // C/D: m × n
        ] {
            d.layouts
                .push(lt::create_matrix_layout(ty, rows, cols, ld).map_err(blas_err)?);
        }
        let transpose: i32 = 1;
        let no_transpose: i32 = 0;
        let workspace_size = self.workspace.len();
        // SAFETY: attribute buffers are plain integers of the documented sizes.
        unsafe {
            lt::set_matmul_desc_attribute(
                d.desc,
                sys::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_TRANSA,
                (&transpose) as *const i32 as *const c_void,
                size_of::<i32>(),
            )
            .map_err(blas_err)?;
            lt::set_matmul_desc_attribute(
                d.desc,
                sys::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_TRANSB,
                (&no_transpose) as *const i32 as *const c_void,
                size_of::<i32>(),
            )
            .map_err(blas_err)?;
            lt::set_matmul_pref_attribute(
                d.pref,
                sys::cublasLtMatmulPreferenceAttributes_t::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                (&workspace_size) as *const usize as *const c_void,
                size_of::<usize>(),
            )
            .map_err(blas_err)?;
        }
        let (x_layout, y_layout, c_layout) = (d.layouts[0], d.layouts[1], d.layouts[2]);
        // SAFETY: descriptors are live; the heuristic only reads them.
        let heuristic = unsafe {
            lt::get_matmul_algo_heuristic(
                self.handle,
                d.desc,
                x_layout,
                y_layout,
                c_layout,
                c_layout,
                d.pref,
            )
        }
        .map_err(blas_err)?;
        let alpha: i32 = 1;
        let beta: i32 = 0;
        let stream = self.stream.clone();
        let (x_ptr, _x_sync) = bt.device_ptr(&stream);
        let (y_ptr, _y_sync) = a.device_ptr(&stream);
        let (c_ptr, _c_sync) = c.device_ptr_mut(&stream);
        let (w_ptr, _w_sync) = self.workspace.device_ptr_mut(&stream);
        // SAFETY: buffers hold n × n elements of the declared types; alpha/beta are i32 as the
        // CUDA_R_32I scale type requires; D aliases C (beta = 0).
        unsafe {
            lt::matmul(
                self.handle,
                d.desc,
                (&alpha) as *const i32 as *const c_void,
                (&beta) as *const i32 as *const c_void,
                x_ptr as *const c_void,
                x_layout,
                y_ptr as *const c_void,
                y_layout,
                c_ptr as *const c_void,
                c_layout,
                c_ptr as *mut c_void,
                c_layout,
                &heuristic.algo,
                w_ptr as *mut c_void,
                workspace_size,
                stream.cu_stream() as sys::cudaStream_t,
            )
        }
        .map_err(blas_err)
    }
}
