//! NIFs behind `Thunderbolt.load/2` and `Thunderbolt.run/3`.
//!
//! Scheduling: a run of a small model takes microseconds, and hopping to a
//! dirty scheduler costs about as much again, so `session_run` runs on the
//! normal scheduler when this model's measured time for inputs of this size
//! is under the session's budget. Otherwise, or before anything was measured,
//! it returns `:dirty` at once and Elixir calls `session_run_dirty`.

use std::path::PathBuf;
use std::time::Instant;

use rustler::{
    Atom, Binary, Encoder, Env, ListIterator, NifResult, OwnedBinary, ResourceArc, Term,
};
use smallvec::SmallVec;
use thunderbolt_runtime::{
    environment, ElementType, ExecutionProvider, Model, ModelInfo, ModelSource, OptimizationLevel,
    OutputBytes, SessionOptions, ValueInfo,
};

use crate::error::NifError;
use crate::tensor_struct::{self, TensorArg};

rustler::atoms! {
    ok,
    error,
    dirty,
    auto,
    normal,
    file,
    binary,
    nil,
    f16,
    bf16,
    f32,
    f64,
    s8,
    s16,
    s32,
    s64,
    u8,
    u16,
    u32,
    u64,
    bool,
}

/// Element types as atoms, compared by identity on the hot path instead of
/// by name.
fn type_atoms() -> [(Atom, ElementType); 13] {
    [
        (f32(), ElementType::F32),
        (s64(), ElementType::S64),
        (s32(), ElementType::S32),
        (f64(), ElementType::F64),
        (f16(), ElementType::F16),
        (bf16(), ElementType::BF16),
        (s8(), ElementType::S8),
        (s16(), ElementType::S16),
        (u8(), ElementType::U8),
        (u16(), ElementType::U16),
        (u32(), ElementType::U32),
        (u64(), ElementType::U64),
        (bool(), ElementType::Bool),
    ]
}

pub(crate) fn element_type(atom: Atom) -> Option<ElementType> {
    type_atoms()
        .into_iter()
        .find(|(a, _)| *a == atom)
        .map(|(_, t)| t)
}

pub struct SessionRef {
    pub(crate) model: Model,
    max_normal_run_ns: u64,
}

#[rustler::resource_impl]
impl rustler::Resource for SessionRef {}

impl SessionRef {
    /// How long a run on `bytes` of input is expected to take, in
    /// nanoseconds, once runs of that size were measured.
    pub(crate) fn expected_run_ns(&self, bytes: usize) -> Option<u64> {
        self.model.timer().estimate(bytes)
    }

    /// Whether a run on `bytes` of input is known, from this model's
    /// measured times, to fit the normal scheduler's budget. Unmeasured
    /// sizes do not.
    pub(crate) fn fits_normal_scheduler(&self, bytes: usize) -> bool {
        self.expected_run_ns(bytes)
            .is_some_and(|ns| ns <= self.max_normal_run_ns)
    }
}

/// Load options, already validated by `Thunderbolt.load/2`.
#[derive(rustler::NifMap)]
pub struct LoadOptions {
    ort_lib: String,
    intra_op_threads: Option<usize>,
    inter_op_threads: Option<usize>,
    optimization_level: Atom,
    execution_providers: Vec<Atom>,
    pool_size: usize,
    max_normal_run_us: u64,
}

#[rustler::nif(schedule = "DirtyCpu")]
fn session_load<'a>(
    env: Env<'a>,
    source: (Atom, Term<'a>),
    options: LoadOptions,
) -> Result<(ResourceArc<SessionRef>, Term<'a>), NifError> {
    environment::get_or_init(&PathBuf::from(&options.ort_lib))?;
    let session_options = SessionOptions {
        intra_op_threads: options.intra_op_threads,
        inter_op_threads: options.inter_op_threads,
        optimization_level: OptimizationLevel::from_name(&atom_name(
            env,
            options.optimization_level,
        )?)?,
        execution_providers: options
            .execution_providers
            .iter()
            .map(|ep| Ok(ExecutionProvider::from_name(&atom_name(env, *ep)?)?))
            .collect::<Result<_, NifError>>()?,
        pool_size: options.pool_size,
    };
    let (kind, value) = source;
    let model = if kind == file() {
        let path: String = value
            .decode()
            .map_err(|_| NifError::invalid_input("a model path must be a string"))?;
        Model::load(ModelSource::File(path.as_ref()), &session_options)?
    } else if kind == binary() {
        let bytes: Binary = value
            .decode()
            .map_err(|_| NifError::invalid_input("{:binary, bytes} needs a binary"))?;
        Model::load(ModelSource::Bytes(bytes.as_slice()), &session_options)?
    } else {
        return Err(NifError::invalid_input(
            "source must be {:file, path} or {:binary, bytes}",
        ));
    };
    let info = encode_info(env, model.info());
    let resource = ResourceArc::new(SessionRef {
        model,
        max_normal_run_ns: options.max_normal_run_us.saturating_mul(1_000),
    });
    Ok((resource, info))
}

/// Runs on the normal scheduler when the run is known to be short;
/// otherwise answers `:dirty` without running. `inputs` is a list of
/// `%Thunderbolt.Tensor{}` in the model's input order; the answer is
/// `{:ok, %{output_name => %Thunderbolt.Tensor{}}}`. `others_waiting` says
/// whether any process waits in a run queue (the caller reads it; the NIF
/// API cannot).
#[rustler::nif]
fn session_run<'a>(
    env: Env<'a>,
    session: ResourceArc<SessionRef>,
    inputs: ListIterator<'a>,
    outputs: Option<Vec<usize>>,
    mode: Atom,
    others_waiting: bool,
) -> NifResult<Term<'a>> {
    let inputs = match TensorArg::decode_all(inputs) {
        Ok(inputs) => inputs,
        Err(e) => return Ok((error(), e).encode(env)),
    };
    if mode == auto() {
        let bytes = inputs.iter().map(|t| t.data.len()).sum();
        if !session.fits_normal_scheduler(bytes) {
            return Ok(dirty().encode(env));
        }
    }
    if !others_waiting {
        // Nobody to be fair to: the yields would cost the lone caller time
        // for nothing (0.15 us a run at batch 1, measured side by side).
        return Ok(run(env, &session, &inputs, outputs.as_deref()));
    }
    let started = Instant::now();
    let result = run(env, &session, &inputs, outputs.as_deref());
    charge_timeslice(env, started);
    Ok(result)
}

/// Charges the scheduler for a run on it since `started` as if a slice were
/// 25 us rather than the nominal 1 ms: a process running inferences back to
/// back then yields every two runs, so a process that wakes up behind a
/// dozen busy ones waits a fraction of a millisecond instead of a dozen.
/// Measured with 16 runners, sleeper p99 lateness: 100 us gave 2.1 ms,
/// 50 us 1.1-1.9 ms from run to run, 25 us 1.05-1.12 ms at the same
/// throughput. (25 us once cost a lone runner 15% of its speed; a lone
/// caller is no longer charged at all.)
pub(crate) fn charge_timeslice(env: Env<'_>, started: Instant) {
    let percent = (started.elapsed().as_micros() * 4).clamp(1, 100) as i32;
    rustler::schedule::consume_timeslice(env, percent);
}

#[rustler::nif(schedule = "DirtyCpu")]
fn session_run_dirty<'a>(
    env: Env<'a>,
    session: ResourceArc<SessionRef>,
    inputs: ListIterator<'a>,
    outputs: Option<Vec<usize>>,
) -> Term<'a> {
    match TensorArg::decode_all(inputs) {
        Ok(inputs) => run(env, &session, &inputs, outputs.as_deref()),
        Err(e) => (error(), e).encode(env),
    }
}

/// The expected run time in microseconds for inputs of `bytes` bytes, if
/// measured; used by tests and benchmarks to see the scheduler choice.
#[rustler::nif]
fn session_estimated_run_us(session: ResourceArc<SessionRef>, bytes: usize) -> Option<f64> {
    session.expected_run_ns(bytes).map(|ns| ns as f64 / 1_000.0)
}

#[rustler::nif]
fn session_pool_size(session: ResourceArc<SessionRef>) -> usize {
    session.model.pool_size()
}

#[rustler::nif]
fn runtime_info(env: Env<'_>) -> Term<'_> {
    match environment::loaded_library() {
        Some((path, version)) => {
            let map = Term::map_new(env);
            map.map_put("version", version)
                .and_then(|m| m.map_put("path", path.to_string_lossy().as_ref()))
                .unwrap_or(map)
        }
        None => nil().encode(env),
    }
}

fn run<'a>(
    env: Env<'a>,
    session: &SessionRef,
    inputs: &[TensorArg<'a>],
    outputs: Option<&[usize]>,
) -> Term<'a> {
    match run_inner(env, session, inputs, outputs) {
        Ok(map) => (ok(), map).encode(env),
        Err(e) => (error(), e).encode(env),
    }
}

fn run_inner<'a>(
    env: Env<'a>,
    session: &SessionRef,
    inputs: &[TensorArg<'a>],
    outputs: Option<&[usize]>,
) -> Result<Term<'a>, NifError> {
    let views = TensorArg::views(inputs)?;
    let pairs = session.model.run_into(
        &views,
        outputs,
        |bytes| Some(OwnedBinary::new(bytes)),
        |out| {
            let bin = out_binary(out.data);
            let tensor = tensor_struct::encode(
                env,
                tensor_struct::type_term(env, out.element_type),
                &out.shape,
                Binary::from_owned(bin, env).to_term(env),
            );
            Ok((out.name.encode(env), tensor))
        },
    )?;
    let (names, tensors): (SmallVec<[Term; 4]>, SmallVec<[Term; 4]>) = pairs.into_iter().unzip();
    Ok(Term::map_from_term_arrays(env, &names, &tensors).expect("distinct output names"))
}

/// An output as a BEAM binary: the one ONNX Runtime wrote into, or else
/// the one copy of its own bytes.
pub(crate) fn out_binary(data: OutputBytes<'_, OwnedBinary>) -> OwnedBinary {
    match data {
        OutputBytes::Written(bin) => bin,
        OutputBytes::Borrowed(bytes) => {
            let mut bin = OwnedBinary::new(bytes.len());
            bin.as_mut_slice().copy_from_slice(bytes);
            bin
        }
    }
}

fn atom_name(env: Env<'_>, atom: Atom) -> Result<String, NifError> {
    atom.to_term(env)
        .atom_to_string()
        .map_err(|_| NifError::invalid_input("expected an atom"))
}

fn encode_values<'a>(env: Env<'a>, values: &[ValueInfo]) -> Term<'a> {
    values
        .iter()
        .map(|v| {
            let ty = match v.element_type {
                Some(t) => Atom::from_str(env, t.name()).map(|a| a.encode(env)),
                None => Ok(nil().encode(env)),
            }
            .unwrap_or_else(|_| nil().encode(env));
            let shape: Vec<Term> = v
                .shape
                .iter()
                .map(|d| match d {
                    Some(d) => d.encode(env),
                    None => nil().encode(env),
                })
                .collect();
            (v.name.as_str(), ty, shape).encode(env)
        })
        .collect::<Vec<_>>()
        .encode(env)
}

fn encode_info<'a>(env: Env<'a>, info: &ModelInfo) -> Term<'a> {
    let opt = |s: &Option<String>| match s {
        Some(s) => s.as_str().encode(env),
        None => nil().encode(env),
    };
    let custom: Vec<(&str, &str)> = info
        .custom_metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let pairs: Vec<(Term, Term)> = vec![
        ("inputs".encode(env), encode_values(env, &info.inputs)),
        ("outputs".encode(env), encode_values(env, &info.outputs)),
        ("producer".encode(env), opt(&info.producer)),
        ("graph_name".encode(env), opt(&info.graph_name)),
        ("domain".encode(env), opt(&info.domain)),
        ("description".encode(env), opt(&info.description)),
        ("version".encode(env), info.version.encode(env)),
        ("opset".encode(env), info.opset.encode(env)),
        ("custom_metadata".encode(env), custom.encode(env)),
        ("providers".encode(env), info.providers.encode(env)),
        ("warnings".encode(env), info.warnings.encode(env)),
    ];
    Term::map_from_pairs(env, &pairs).unwrap_or_else(|_| nil().encode(env))
}
