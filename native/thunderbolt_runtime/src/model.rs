use std::borrow::BorrowMut;
use std::ffi::{c_char, CString};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, TryLockError};
use std::time::Instant;

use ort::session::Session;
use ort::value::ValueType;
use ort::AsPointer;
use smallvec::SmallVec;

use crate::element_type::ElementType;
use crate::error::{Result, RuntimeError};
use crate::options::{ExecutionProvider, SessionOptions};
use crate::output_plan::{OutputPlans, PlannedOutput};
use crate::raw;
use crate::tensor::TensorView;
use crate::timing::RunTimer;

/// Where a model comes from.
#[derive(Clone, Copy, Debug)]
pub enum ModelSource<'a> {
    File(&'a Path),
    Bytes(&'a [u8]),
}

/// One graph input or output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValueInfo {
    pub name: String,
    /// `None` for non-tensor values (sequences, maps).
    pub element_type: Option<ElementType>,
    /// `None` marks a dynamic dimension.
    pub shape: Vec<Option<i64>>,
}

/// What a loaded model declares about itself.
#[derive(Clone, Debug, Default)]
pub struct ModelInfo {
    pub inputs: Vec<ValueInfo>,
    pub outputs: Vec<ValueInfo>,
    pub producer: Option<String>,
    pub graph_name: Option<String>,
    pub domain: Option<String>,
    pub description: Option<String>,
    pub version: Option<i64>,
    pub opset: Option<u32>,
    pub custom_metadata: Vec<(String, String)>,
    /// The execution providers the sessions were built with, best first.
    pub providers: Vec<String>,
    /// Requested providers that were skipped, and why.
    pub warnings: Vec<String>,
}

/// A tensor's dimensions; most have few enough to stay on the stack.
pub type Dims = SmallVec<[i64; 6]>;

/// Where an output's bytes are, for [`Model::run_into`]'s callback.
#[derive(Debug)]
pub enum OutputBytes<'a, B> {
    /// ONNX Runtime's own memory, valid until the callback returns.
    Borrowed(&'a [u8]),
    /// The caller's buffer, which ONNX Runtime wrote the output into.
    Written(B),
}

/// One output of [`Model::run_into`].
#[derive(Debug)]
pub struct Output<'a, B> {
    pub index: usize,
    pub name: &'a str,
    pub element_type: ElementType,
    pub shape: Dims,
    pub data: OutputBytes<'a, B>,
}

/// One output of a run, borrowed from ONNX Runtime's memory until the
/// callback returns, so the caller copies it exactly once.
#[derive(Debug)]
pub struct OutputTensor<'a> {
    pub index: usize,
    pub name: &'a str,
    pub element_type: ElementType,
    pub shape: Dims,
    pub data: &'a [u8],
}

/// A model loaded into a small pool of ONNX Runtime sessions.
///
/// `Session::run` needs exclusive access, so one session behind one lock
/// would serialise every caller. Each run checks out a free session instead,
/// and only waits when all of them are busy.
pub struct Model {
    sessions: Box<[Mutex<Session>]>,
    next: AtomicUsize,
    info: ModelInfo,
    input_names: Names,
    output_names: Names,
    all_outputs: Vec<usize>,
    timer: RunTimer,
    plans: OutputPlans,
}

/// Graph value names as C strings, with their pointers made once: `Run`
/// takes arrays of them on every call.
struct Names {
    // Only held, so that `ptrs` stay valid.
    _owned: Vec<CString>,
    ptrs: Vec<*const c_char>,
}

// SAFETY: the pointers point into `_owned`'s heap buffers, which are never
// mutated or moved while `Names` lives, so sharing them across threads is
// as safe as sharing the `CString`s themselves.
unsafe impl Send for Names {}
unsafe impl Sync for Names {}

impl Names {
    fn new(values: &[ValueInfo]) -> Result<Names> {
        let owned = values
            .iter()
            .map(|v| {
                CString::new(v.name.as_str())
                    .map_err(|_| RuntimeError::Load(format!("name {:?} contains NUL", v.name)))
            })
            .collect::<Result<Vec<_>>>()?;
        let ptrs = owned.iter().map(|n| n.as_ptr()).collect();
        Ok(Names {
            _owned: owned,
            ptrs,
        })
    }
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("pool_size", &self.sessions.len())
            .field("info", &self.info)
            .finish()
    }
}

impl Model {
    /// Loads a model with the process-wide environment (see
    /// [`crate::environment::get_or_init`], which must have succeeded).
    pub fn load(source: ModelSource<'_>, options: &SessionOptions) -> Result<Model> {
        options.validate()?;
        let env = crate::environment::get()
            .ok_or_else(|| RuntimeError::Library("ONNX Runtime is not initialised".into()))?;
        match source {
            ModelSource::File(path) => check_model_file(path)?,
            ModelSource::Bytes([]) => {
                return Err(RuntimeError::Load("the model binary is empty".into()))
            }
            ModelSource::Bytes(_) => {}
        }
        let (mut providers, mut warnings) = plan_providers(&options.execution_providers)?;
        let mut sessions = Vec::with_capacity(options.pool_size);
        for _ in 0..options.pool_size {
            // The first session drops an accelerator that will not start,
            // so the rest of the pool does not try it again.
            let session = guard_panics(|| {
                build_session(env, source, options, &mut providers, &mut warnings)
            })?;
            sessions.push(Mutex::new(session));
        }
        let info = describe(&sessions[0], providers, warnings)?;
        Ok(Model {
            input_names: Names::new(&info.inputs)?,
            output_names: Names::new(&info.outputs)?,
            all_outputs: (0..info.outputs.len()).collect(),
            sessions: sessions.into_boxed_slice(),
            next: AtomicUsize::new(0),
            info,
            timer: RunTimer::default(),
            plans: OutputPlans::default(),
        })
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    pub fn pool_size(&self) -> usize {
        self.sessions.len()
    }

    pub fn timer(&self) -> &RunTimer {
        &self.timer
    }

    /// Runs the model. `inputs` are positional, one per model input.
    /// `outputs` selects output indices (all when `None`). `emit` sees each
    /// output while ONNX Runtime still owns its bytes.
    pub fn run<R>(
        &self,
        inputs: &[TensorView<'_>],
        outputs: Option<&[usize]>,
        mut emit: impl FnMut(OutputTensor<'_>) -> Result<R>,
    ) -> Result<Vec<R>> {
        self.run_into(
            inputs,
            outputs,
            |_| None::<Vec<u8>>,
            |out| {
                // Always borrowed here, since no buffer is ever allocated.
                let owned;
                let data = match out.data {
                    OutputBytes::Borrowed(data) => data,
                    OutputBytes::Written(buffer) => {
                        owned = buffer;
                        &owned[..]
                    }
                };
                emit(OutputTensor {
                    index: out.index,
                    name: out.name,
                    element_type: out.element_type,
                    shape: out.shape,
                    data,
                })
            },
        )
    }

    /// Like [`Model::run`], but when an earlier run with the same input
    /// shapes showed what the outputs will be, asks `allocate` for a buffer
    /// of each output's size and has ONNX Runtime write the output there,
    /// so `emit` gets it filled ([`OutputBytes::Written`]) with no copy.
    /// Otherwise, or when `allocate` declines, `emit` gets ONNX Runtime's
    /// own bytes to copy ([`OutputBytes::Borrowed`]).
    pub fn run_into<B: BorrowMut<[u8]>, R>(
        &self,
        inputs: &[TensorView<'_>],
        outputs: Option<&[usize]>,
        mut allocate: impl FnMut(usize) -> Option<B>,
        mut emit: impl FnMut(Output<'_, B>) -> Result<R>,
    ) -> Result<Vec<R>> {
        self.check_inputs(inputs)?;
        let selected: &[usize] = match outputs {
            Some(indices) => {
                for (i, &idx) in indices.iter().enumerate() {
                    if idx >= self.all_outputs.len() {
                        return Err(RuntimeError::InvalidInput(format!(
                            "output index {idx} is out of range; the model has {} outputs",
                            self.all_outputs.len()
                        )));
                    }
                    if indices[..i].contains(&idx) {
                        return Err(RuntimeError::InvalidInput(format!(
                            "output {:?} is selected twice",
                            self.info.outputs[idx].name
                        )));
                    }
                }
                indices
            }
            None => &self.all_outputs,
        };
        let input_shapes: SmallVec<[&[i64]; 4]> = inputs.iter().map(|v| v.shape()).collect();

        // Buffers for the outputs, when this input shape was seen before.
        let mut buffers: SmallVec<[B; 4]> = SmallVec::new();
        // Empty outputs gain nothing from a buffer of no bytes.
        let planned = self
            .plans
            .lookup(&input_shapes, selected)
            .filter(|planned| planned.iter().all(|o| o.bytes > 0));
        if let Some(planned) = &planned {
            for output in planned {
                match allocate(output.bytes) {
                    Some(buffer) => buffers.push(buffer),
                    None => break,
                }
            }
            if buffers.len() != planned.len() {
                buffers.clear();
            }
        }

        let results =
            match self.run_raw(inputs, outputs, selected, planned.as_deref(), &mut buffers) {
                // Run again without buffers. If that works, a planned output
                // had another shape this time (it depends on the input's
                // values, not only its shape), and this model is not planned
                // again.
                Err(_) if !buffers.is_empty() => {
                    buffers.clear();
                    let results = self.run_raw(inputs, outputs, selected, None, &mut buffers)?;
                    self.plans.disable();
                    results
                }
                other => other?,
            };

        let mut seen: SmallVec<[PlannedOutput; 4]> = SmallVec::new();
        let mut emitted = Vec::with_capacity(results.len());
        if buffers.is_empty() {
            for (value, &index) in results.iter().zip(selected) {
                let (element_type, shape, data) = raw::read_tensor(value)?;
                seen.push(PlannedOutput {
                    element_type,
                    shape: shape.clone(),
                    bytes: data.len(),
                });
                emitted.push(emit(self.output(
                    index,
                    element_type,
                    shape,
                    OutputBytes::Borrowed(data),
                ))?);
            }
        } else {
            // ONNX Runtime wrote into the buffers; the values over them are
            // released before the buffers are handed on.
            let mut written: SmallVec<[(ElementType, Dims); 4]> = SmallVec::new();
            for (value, buffer) in results.iter().zip(buffers.iter_mut()) {
                let (element_type, shape, data) = raw::read_tensor(value)?;
                let buffer: &mut [u8] = buffer.borrow_mut();
                if data.len() != buffer.len() {
                    return Err(RuntimeError::Ort(format!(
                        "ONNX Runtime returned {} bytes for an output planned as {}",
                        data.len(),
                        buffer.len()
                    )));
                }
                if data.as_ptr() != buffer.as_ptr() {
                    // Not seen with ONNX Runtime 1.31 (constant and
                    // pass-through outputs are written in place too), but
                    // a provider may hand back its own memory: copy it,
                    // and stop planning for this model.
                    buffer.copy_from_slice(data);
                    self.plans.disable();
                }
                written.push((element_type, shape));
            }
            drop(results);
            for ((buffer, (element_type, shape)), &index) in
                buffers.into_iter().zip(written).zip(selected)
            {
                emitted.push(emit(self.output(
                    index,
                    element_type,
                    shape,
                    OutputBytes::Written(buffer),
                ))?);
            }
            return Ok(emitted);
        }
        self.plans.record(&input_shapes, selected, &seen);
        Ok(emitted)
    }

    fn output<'a, B>(
        &'a self,
        index: usize,
        element_type: ElementType,
        shape: Dims,
        data: OutputBytes<'a, B>,
    ) -> Output<'a, B> {
        Output {
            index,
            name: &self.info.outputs[index].name,
            element_type,
            shape,
            data,
        }
    }

    /// One `Run` call. With `planned` outputs, `buffers` holds one buffer
    /// per output, of the planned size, for ONNX Runtime to write into.
    fn run_raw<B: BorrowMut<[u8]>>(
        &self,
        inputs: &[TensorView<'_>],
        outputs: Option<&[usize]>,
        selected: &[usize],
        planned: Option<&[PlannedOutput]>,
        buffers: &mut [B],
    ) -> Result<raw::Values> {
        // Misaligned views (sub-binaries) are copied once into aligned
        // storage; everything else is read by ONNX Runtime in place.
        let aligned: Vec<Option<Vec<u64>>> = if inputs.iter().all(|v| v.is_aligned()) {
            Vec::new()
        } else {
            inputs
                .iter()
                .map(|v| (!v.is_aligned()).then(|| copy_aligned(v.data())))
                .collect()
        };
        let mut values = raw::Values::with_capacity(inputs.len());
        let mut input_bytes = 0usize;
        for (i, (view, spec)) in inputs.iter().zip(&self.info.inputs).enumerate() {
            let data = match aligned.get(i).and_then(Option::as_ref) {
                Some(words) => &bytemuck_bytes(words)[..view.data().len()],
                None => view.data(),
            };
            input_bytes += data.len();
            // A u8 tensor may feed a bool input: create it with the
            // declared type so ONNX Runtime sees a bool tensor.
            let ty = spec.element_type.unwrap_or(view.element_type());
            // SAFETY: `data` borrows `inputs` or `aligned`, both of which
            // outlive `values`, which is dropped at the end of this call.
            values.push(unsafe { raw::tensor_over(ty, view.shape(), data)? });
        }
        let input_ptrs: SmallVec<[*const ort::sys::OrtValue; 4]> =
            values.iter().map(|v| v.0.as_ptr() as *const _).collect();
        let chosen_names: Vec<*const c_char>;
        let output_names: &[*const c_char] = match outputs {
            None => &self.output_names.ptrs,
            Some(_) => {
                chosen_names = selected
                    .iter()
                    .map(|&i| self.output_names.ptrs[i])
                    .collect();
                &chosen_names
            }
        };
        let mut preallocated = raw::Values::new();
        if let (Some(planned), false) = (planned, buffers.is_empty()) {
            for (output, buffer) in planned.iter().zip(buffers.iter_mut()) {
                // SAFETY: the buffer outlives the value, which the caller
                // drops (inside the returned `Values`) before using it.
                preallocated.push(unsafe {
                    raw::tensor_over_mut(output.element_type, &output.shape, buffer.borrow_mut())?
                });
            }
        }

        let session = self.checkout();
        let started = Instant::now();
        // SAFETY: the guard gives this thread exclusive use of the session.
        let results = unsafe {
            raw::run(
                session.ptr(),
                &self.input_names.ptrs,
                &input_ptrs,
                output_names,
                preallocated,
            )
        };
        self.timer
            .record(input_bytes, started.elapsed().as_nanos() as u64);
        results
    }

    fn check_inputs(&self, inputs: &[TensorView<'_>]) -> Result<()> {
        let expected = &self.info.inputs;
        if inputs.len() != expected.len() {
            return Err(RuntimeError::InvalidInput(format!(
                "the model takes {} input(s) ({}), got {}",
                expected.len(),
                expected
                    .iter()
                    .map(|v| v.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                inputs.len()
            )));
        }
        for (view, spec) in inputs.iter().zip(expected) {
            let Some(declared) = spec.element_type else {
                return Err(RuntimeError::Unsupported(format!(
                    "input {:?} is not a tensor; only tensor inputs are supported",
                    spec.name
                )));
            };
            if !declared.accepts(view.element_type()) {
                return Err(RuntimeError::InvalidInput(format!(
                    "input {:?} expects {} but got {}",
                    spec.name,
                    declared.name(),
                    view.element_type().name()
                )));
            }
            let shape = view.shape();
            let rank_ok = shape.len() == spec.shape.len();
            let dims_ok = rank_ok
                && shape
                    .iter()
                    .zip(&spec.shape)
                    .all(|(&got, want)| want.is_none_or(|w| w == got));
            if !dims_ok {
                return Err(RuntimeError::InvalidInput(format!(
                    "input {:?} expects shape {} but got {:?}",
                    spec.name,
                    format_shape(&spec.shape),
                    shape
                )));
            }
        }
        Ok(())
    }

    fn checkout(&self) -> MutexGuard<'_, Session> {
        // The first free session, not the next in turn: each session holds
        // its own copy of the weights, and a lone caller that keeps to one
        // session finds them in cache (measured for cerebros_trained.onnx
        // at batch 1 with the default pool of 2: 15.6 us p50 in turn, 14.5
        // first free).
        for session in self.sessions.iter() {
            match session.try_lock() {
                Ok(guard) => return guard,
                // A panic cannot happen while the lock is held (ONNX Runtime
                // reports errors as statuses), but a poisoned session is still
                // usable: it holds no Rust invariants of ours.
                Err(TryLockError::Poisoned(p)) => return p.into_inner(),
                Err(TryLockError::WouldBlock) => {}
            }
        }
        // All busy: wait on one in turn, so that waiters spread out.
        let start = self.next.fetch_add(1, Ordering::Relaxed) % self.sessions.len();
        self.sessions[start]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn format_shape(shape: &[Option<i64>]) -> String {
    let dims: Vec<String> = shape
        .iter()
        .map(|d| d.map_or("?".to_string(), |d| d.to_string()))
        .collect();
    format!("[{}]", dims.join(", "))
}

fn copy_aligned(bytes: &[u8]) -> Vec<u64> {
    let mut words = vec![0u64; bytes.len().div_ceil(8)];
    bytemuck_bytes_mut(&mut words)[..bytes.len()].copy_from_slice(bytes);
    words
}

fn bytemuck_bytes(words: &[u64]) -> &[u8] {
    // SAFETY: u64 has no padding and any byte pattern is a valid u8.
    unsafe { std::slice::from_raw_parts(words.as_ptr() as *const u8, words.len() * 8) }
}

fn bytemuck_bytes_mut(words: &mut [u64]) -> &mut [u8] {
    // SAFETY: as above; the borrow is unique.
    unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr() as *mut u8, words.len() * 8) }
}

fn check_model_file(path: &Path) -> Result<()> {
    let meta = std::fs::metadata(path)
        .map_err(|e| RuntimeError::Load(format!("cannot read {}: {e}", path.display())))?;
    if meta.is_dir() {
        return Err(RuntimeError::Load(format!(
            "{} is a directory, not a model file",
            path.display()
        )));
    }
    // A FIFO or a device would block or never end: ONNX Runtime reads the
    // whole file.
    if !meta.is_file() {
        return Err(RuntimeError::Load(format!(
            "{} is not a regular file",
            path.display()
        )));
    }
    if meta.len() == 0 {
        return Err(RuntimeError::Load(format!("{} is empty", path.display())));
    }
    Ok(())
}

/// `ort` has a few `expect`s on paths that a hostile model could reach; a
/// panic must never unwind into the VM.
fn guard_panics<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown panic".into());
        Err(RuntimeError::Ort(format!("internal error: {message}")))
    })
}

/// Decides which requested providers this library can offer. CPU always
/// ends the list, so a missing accelerator degrades to CPU instead of failing.
fn plan_providers(requested: &[ExecutionProvider]) -> Result<(Vec<String>, Vec<String>)> {
    let available = raw::available_providers()?;
    let mut providers = Vec::new();
    let mut warnings = Vec::new();
    for ep in requested {
        let name = ep.ort_name();
        if *ep == ExecutionProvider::Cpu || providers.iter().any(|p| p == name) {
            continue;
        }
        if available.iter().any(|a| a == name) {
            providers.push(name.to_string());
        } else {
            warnings.push(format!(
                "{name} is not available in this ONNX Runtime build (it has {}); using the next provider",
                available.join(", ")
            ));
        }
    }
    providers.push(ExecutionProvider::Cpu.ort_name().to_string());
    Ok((providers, warnings))
}

/// A session with the first of `providers` that starts. An accelerator
/// that ONNX Runtime offers may still fail here (its libraries or driver
/// missing, no device): it is dropped from `providers` with a warning and
/// the next one is used, CPU last, as `plan_providers` promises.
fn build_session(
    env: &ort::environment::Environment,
    source: ModelSource<'_>,
    options: &SessionOptions,
    providers: &mut Vec<String>,
    warnings: &mut Vec<String>,
) -> Result<Session> {
    let mut builder = session_builder(env, options)?;
    let mut failed = Vec::new();
    for name in providers.iter() {
        let Some(ep) = options
            .execution_providers
            .iter()
            .find(|ep| ep.ort_name() == name && **ep != ExecutionProvider::Cpu)
        else {
            continue;
        };
        let options_ptr = builder.ptr_mut();
        let registered = match (*ep, ep.generic_name()) {
            (ExecutionProvider::Cuda, _) => raw::append_cuda(options_ptr),
            (_, Some(generic)) => raw::append_generic(options_ptr, generic),
            (other, None) => {
                return Err(RuntimeError::Unsupported(format!(
                    "{} is available but Thunderbolt cannot register it yet",
                    other.ort_name()
                )))
            }
        };
        if let Err(e) = registered {
            warnings.push(format!(
                "{name} could not be started ({e}); using the next provider"
            ));
            failed.push(name.clone());
        }
    }
    providers.retain(|name| !failed.contains(name));
    match commit(builder, source) {
        Err(e) if providers.len() > 1 => {
            // A model that CPU cannot load either gets CPU's error.
            let cpu = commit(session_builder(env, options)?, source)?;
            warnings.push(format!(
                "{} failed when the session started ({e}); using {}",
                providers[..providers.len() - 1].join(", "),
                ExecutionProvider::Cpu.ort_name()
            ));
            providers.drain(..providers.len() - 1);
            Ok(cpu)
        }
        result => result,
    }
}

fn session_builder(
    env: &ort::environment::Environment,
    options: &SessionOptions,
) -> Result<ort::session::builder::SessionBuilder> {
    let ort_err =
        |e: ort::Error<ort::session::builder::SessionBuilder>| RuntimeError::Ort(e.to_string());
    // Failures come back to the caller as values; ONNX Runtime's own log
    // lines on stderr would only repeat them.
    let mut builder = Session::builder(env)?
        .with_log_level(ort::logging::LogLevel::Fatal)
        .map_err(ort_err)?
        .with_optimization_level(options.optimization_level.to_ort())
        .map_err(ort_err)?;
    if let Some(n) = options.intra_op_threads {
        builder = builder.with_intra_threads(n).map_err(ort_err)?;
    }
    if let Some(n) = options.inter_op_threads {
        builder = builder.with_inter_threads(n).map_err(ort_err)?;
    }
    Ok(builder)
}

fn commit(
    mut builder: ort::session::builder::SessionBuilder,
    source: ModelSource<'_>,
) -> Result<Session> {
    let session = match source {
        ModelSource::File(path) => builder.commit_from_file(path),
        ModelSource::Bytes(bytes) => builder.commit_from_memory(bytes),
    };
    session.map_err(|e| RuntimeError::Load(e.to_string()))
}

fn describe(
    session: &Mutex<Session>,
    providers: Vec<String>,
    warnings: Vec<String>,
) -> Result<ModelInfo> {
    let session = session.lock().unwrap_or_else(|p| p.into_inner());
    let value_info = |outlet: &ort::value::Outlet| match outlet.dtype() {
        ValueType::Tensor { ty, shape, .. } => ValueInfo {
            name: outlet.name().to_string(),
            element_type: ElementType::from_ort(*ty),
            shape: shape.iter().map(|&d| (d >= 0).then_some(d)).collect(),
        },
        _ => ValueInfo {
            name: outlet.name().to_string(),
            element_type: None,
            shape: Vec::new(),
        },
    };
    let inputs = session.inputs().iter().map(value_info).collect();
    let outputs = session.outputs().iter().map(value_info).collect();
    let metadata = session.metadata()?;
    let mut custom_metadata = Vec::new();
    for key in metadata.custom_keys()? {
        if let Some(value) = metadata.custom(&key) {
            custom_metadata.push((key, value));
        }
    }
    custom_metadata.sort();
    let non_empty = |s: Option<String>| s.filter(|s| !s.is_empty());
    Ok(ModelInfo {
        inputs,
        outputs,
        producer: non_empty(metadata.producer()),
        graph_name: non_empty(metadata.name()),
        domain: non_empty(metadata.domain()),
        description: non_empty(metadata.description()),
        // ONNX Runtime reports an unset model_version as i64::MAX.
        version: metadata.version().filter(|&v| v != i64::MAX),
        opset: session.opset_for_domain(""),
        custom_metadata,
        providers,
        warnings,
    })
}
