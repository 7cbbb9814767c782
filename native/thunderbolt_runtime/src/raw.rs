//! The few ONNX Runtime C calls that `ort`'s safe API does not offer in the
//! shape we need: tensors over borrowed bytes of any element type, and
//! outputs read as bytes. Everything unsafe in the crate lives here.

use std::ffi::{c_char, CStr, CString};
use std::ptr::{self, NonNull};
use std::sync::OnceLock;

use ort::sys::{OrtMemoryInfo, OrtStatusPtr, OrtValue};
use smallvec::SmallVec;

use crate::element_type::ElementType;
use crate::error::{Result, RuntimeError};
use crate::model::Dims;

/// A run's values: few enough, for most models, to stay on the stack.
pub(crate) type Values = SmallVec<[Value; 4]>;

fn api() -> &'static ort::sys::OrtApi {
    ort::api()
}

/// Turns an `OrtStatus` into a `Result`, releasing it.
pub(crate) fn check(status: OrtStatusPtr) -> Result<()> {
    if status.0.is_null() {
        return Ok(());
    }
    // SAFETY: a non-null status is owned by us until released.
    let message = unsafe {
        let msg = (api().GetErrorMessage)(status.0);
        let text = if msg.is_null() {
            "unknown error".to_string()
        } else {
            CStr::from_ptr(msg).to_string_lossy().into_owned()
        };
        (api().ReleaseStatus)(status.0);
        text
    };
    Err(RuntimeError::Ort(message))
}

struct CpuMemoryInfo(NonNull<OrtMemoryInfo>);
// SAFETY: an OrtMemoryInfo is immutable after creation and only read.
unsafe impl Send for CpuMemoryInfo {}
unsafe impl Sync for CpuMemoryInfo {}

static CPU_MEMORY: OnceLock<CpuMemoryInfo> = OnceLock::new();

fn cpu_memory() -> Result<*const OrtMemoryInfo> {
    if let Some(info) = CPU_MEMORY.get() {
        return Ok(info.0.as_ptr());
    }
    let mut out = ptr::null_mut();
    // SAFETY: plain constructor call with a valid out pointer.
    check(unsafe {
        (api().CreateCpuMemoryInfo)(
            ort::sys::OrtAllocatorType::OrtArenaAllocator,
            ort::sys::OrtMemType::OrtMemTypeDefault,
            &mut out,
        )
    })?;
    let info = NonNull::new(out).ok_or_else(|| RuntimeError::Ort("no memory info".into()))?;
    // A racing thread may have won; its value is kept and ours is leaked
    // once, which is harmless for a process-wide singleton.
    Ok(CPU_MEMORY.get_or_init(|| CpuMemoryInfo(info)).0.as_ptr())
}

/// An `OrtValue` that is released on drop.
pub(crate) struct Value(pub(crate) NonNull<OrtValue>);

impl Drop for Value {
    fn drop(&mut self) {
        // SAFETY: we own the value.
        unsafe { (api().ReleaseValue)(self.0.as_ptr()) }
    }
}

/// Wraps `data` as a tensor without copying it.
///
/// # Safety
/// `data` must stay alive and unchanged until the returned value is dropped;
/// ONNX Runtime reads it in place.
pub(crate) unsafe fn tensor_over(ty: ElementType, shape: &[i64], data: &[u8]) -> Result<Value> {
    let mut out = ptr::null_mut();
    check(unsafe {
        (api().CreateTensorWithDataAsOrtValue)(
            cpu_memory()?,
            // ONNX Runtime takes a mutable pointer but never writes inputs.
            data.as_ptr() as *mut _,
            data.len(),
            shape.as_ptr(),
            shape.len(),
            ty.to_onnx(),
            &mut out,
        )
    })?;
    NonNull::new(out)
        .map(Value)
        .ok_or_else(|| RuntimeError::Ort("CreateTensorWithDataAsOrtValue returned null".into()))
}

/// Wraps `data` as a tensor that ONNX Runtime may write an output into.
///
/// # Safety
/// `data` must stay alive, and be neither read nor written by anyone else,
/// until the returned value is dropped.
pub(crate) unsafe fn tensor_over_mut(
    ty: ElementType,
    shape: &[i64],
    data: &mut [u8],
) -> Result<Value> {
    // SAFETY: as `tensor_over`, with the caller's promise of exclusive use.
    unsafe { tensor_over(ty, shape, data) }
}

/// Runs a session on raw values. Returns one owned value per output name:
/// `preallocated` (empty, or one per name) if given, which ONNX Runtime
/// fills in place, or values it allocates.
///
/// # Safety
/// `session` must be a live session used by no other thread during the call.
pub(crate) unsafe fn run(
    session: *const ort::sys::OrtSession,
    input_names: &[*const c_char],
    inputs: &[*const OrtValue],
    output_names: &[*const c_char],
    preallocated: Values,
) -> Result<Values> {
    let mut raw: SmallVec<[*mut OrtValue; 4]> = if preallocated.is_empty() {
        smallvec::smallvec![ptr::null_mut(); output_names.len()]
    } else {
        // Ownership passes to `raw`, and from it to the values returned.
        preallocated
            .into_iter()
            .map(|v| std::mem::ManuallyDrop::new(v).0.as_ptr())
            .collect()
    };
    let status = unsafe {
        (api().Run)(
            session.cast_mut(),
            ptr::null(),
            input_names.as_ptr(),
            inputs.as_ptr(),
            inputs.len(),
            output_names.as_ptr(),
            output_names.len(),
            raw.as_mut_ptr(),
        )
    };
    // Take ownership first so that values are released even on error.
    let values: SmallVec<[Option<Value>; 4]> = raw
        .into_iter()
        .map(|p| NonNull::new(p).map(Value))
        .collect();
    check(status)?;
    values
        .into_iter()
        .map(|v| v.ok_or_else(|| RuntimeError::Ort("Run returned a null output".into())))
        .collect()
}

/// Element type, shape and bytes of a tensor output.
pub(crate) fn read_tensor(value: &Value) -> Result<(ElementType, Dims, &[u8])> {
    let api = api();
    let mut is_tensor = 0;
    check(unsafe { (api.IsTensor)(value.0.as_ptr(), &mut is_tensor) })?;
    if is_tensor == 0 {
        return Err(RuntimeError::Unsupported(
            "the model returned a sequence or map; only tensor outputs are supported".into(),
        ));
    }
    let mut info = ptr::null_mut();
    check(unsafe { (api.GetTensorTypeAndShape)(value.0.as_ptr(), &mut info) })?;
    struct Info(*mut ort::sys::OrtTensorTypeAndShapeInfo);
    impl Drop for Info {
        fn drop(&mut self) {
            unsafe { (ort::api().ReleaseTensorTypeAndShapeInfo)(self.0) }
        }
    }
    let info = Info(info);
    let mut onnx_type =
        ort::sys::ONNXTensorElementDataType::ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
    check(unsafe { (api.GetTensorElementType)(info.0, &mut onnx_type) })?;
    let ty = ElementType::from_onnx(onnx_type).ok_or_else(|| {
        RuntimeError::Unsupported(format!(
            "output element type {onnx_type:?} has no Thunderbolt equivalent"
        ))
    })?;
    let Some(size) = ty.byte_size() else {
        return Err(RuntimeError::Unsupported(
            "string outputs are not supported; only numeric and bool tensors are".into(),
        ));
    };
    let mut rank = 0usize;
    check(unsafe { (api.GetDimensionsCount)(info.0, &mut rank) })?;
    let mut shape: Dims = smallvec::smallvec![0i64; rank];
    check(unsafe { (api.GetDimensions)(info.0, shape.as_mut_ptr(), rank) })?;
    let count: usize = shape.iter().map(|&d| d.max(0) as usize).product();
    let bytes = count * size;
    if bytes == 0 {
        return Ok((ty, shape, &[]));
    }
    let mut data = ptr::null_mut();
    check(unsafe { (api.GetTensorMutableData)(value.0.as_ptr(), &mut data) })?;
    if data.is_null() {
        return Err(RuntimeError::Ort("output tensor has no data".into()));
    }
    // SAFETY: ONNX Runtime owns `bytes` bytes at `data` for the value's life,
    // which the returned slice borrows.
    Ok((ty, shape, unsafe {
        std::slice::from_raw_parts(data as *const u8, bytes)
    }))
}

/// The providers compiled into the loaded library.
pub(crate) fn available_providers() -> Result<Vec<String>> {
    let api = api();
    let mut list: *mut *mut c_char = ptr::null_mut();
    let mut len = 0;
    check(unsafe { (api.GetAvailableProviders)(&mut list, &mut len) })?;
    if list.is_null() {
        return Ok(Vec::new());
    }
    let names = (0..len.max(0) as usize)
        .map(|i| unsafe { CStr::from_ptr(*list.add(i)).to_string_lossy().into_owned() })
        .collect();
    check(unsafe { (api.ReleaseAvailableProviders)(list, len) })?;
    Ok(names)
}

/// Appends CUDA with default options to a session builder.
pub(crate) fn append_cuda(options: *mut ort::sys::OrtSessionOptions) -> Result<()> {
    let api = api();
    let mut cuda = ptr::null_mut();
    check(unsafe { (api.CreateCUDAProviderOptions)(&mut cuda) })?;
    let status = unsafe { (api.SessionOptionsAppendExecutionProvider_CUDA_V2)(options, cuda) };
    unsafe { (api.ReleaseCUDAProviderOptions)(cuda) };
    check(status)
}

/// Appends a provider through the generic, name-based entry point.
pub(crate) fn append_generic(options: *mut ort::sys::OrtSessionOptions, name: &str) -> Result<()> {
    let name =
        CString::new(name).map_err(|_| RuntimeError::InvalidOption("bad provider name".into()))?;
    check(unsafe {
        (api().SessionOptionsAppendExecutionProvider)(
            options,
            name.as_ptr(),
            ptr::null(),
            ptr::null(),
            0,
        )
    })
}
