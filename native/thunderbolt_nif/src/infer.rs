//! The NIF behind `Thunderbolt.OnnxInference`: one call encodes the inputs
//! from nested lists, runs the model and answers JSON-ready predictions
//! made straight from ONNX Runtime's output memory. Going through
//! `Tensor.new`, `run` and `Tensor.to_list` instead crosses into Rust three
//! times and makes an input binary, an output binary and two structs that
//! are thrown away at once.

use std::time::Instant;

use rustler::sys::ErlNifTerm;
use rustler::{Atom, Encoder, Env, ListIterator, ResourceArc, Term, TermType};
use smallvec::SmallVec;
use thunderbolt_runtime::{Dims, ElementType, OutputBytes, OutputTensor, TensorView};

use crate::error::NifError;
use crate::session::{charge_timeslice, element_type, out_binary, SessionRef};
use crate::tensor::{
    element_terms, encode_nested, list_term, nested_list, nested_shape_within, top_k_rows,
};
use crate::tensor_struct::{self, TensorArg};

rustler::atoms! {
    ok,
    error,
    dirty,
    too_large,
}

/// Above this many elements in an input or an output, the work of encoding
/// or listing them belongs on a dirty scheduler (as in `Thunderbolt.Tensor`).
const NORMAL_MAX_ELEMENTS: usize = 20_000;

/// An input as `OnnxInference` hands it over: a `%Thunderbolt.Tensor{}`, or
/// `{nested_lists, type, declared_rank, label}` to encode here. Nested data
/// one dimension short of the declared rank is one sample and gets a batch
/// axis of 1. A `label` (an input name, or `nil`) prefixes its errors.
enum Input<'a> {
    Tensor(TensorArg<'a>),
    Nested {
        data: Term<'a>,
        ty: ElementType,
        shape: Vec<usize>,
        batch_axis: bool,
        label: Option<String>,
    },
}

impl<'a> Input<'a> {
    /// Reads one input; nested data whose shape holds more than `cap`
    /// elements is `Ok(None)`, found without counting much past the cap.
    fn decode(term: Term<'a>, position: usize, cap: usize) -> Result<Option<Self>, NifError> {
        if term.get_type() != TermType::Tuple {
            return Ok(Some(Self::Tensor(TensorArg::decode(term, position)?)));
        }
        let (data, ty, declared_rank, label): (Term<'a>, Atom, usize, Option<String>) =
            term.decode().map_err(|_| {
                NifError::invalid_input(format!(
                    "input {position}: expected {{data, type, declared_rank, label}}"
                ))
            })?;
        let ty = element_type(ty)
            .ok_or_else(|| NifError::invalid_input(format!("input {position}: unknown type")))?;
        let Some(shape) = nested_shape_within(data, cap).map_err(|e| labelled(&label, e))? else {
            return Ok(None);
        };
        let batch_axis = declared_rank > 0 && shape.len() + 1 == declared_rank;
        Ok(Some(Self::Nested {
            data,
            ty,
            shape,
            batch_axis,
            label,
        }))
    }

    fn elements(&self) -> usize {
        match self {
            Self::Tensor(t) => t
                .shape
                .iter()
                .fold(1usize, |n, &d| n.saturating_mul(d.max(0) as usize)),
            Self::Nested { shape, .. } => shape.iter().fold(1usize, |n, &d| n.saturating_mul(d)),
        }
    }

    fn bytes(&self) -> usize {
        match self {
            Self::Tensor(t) => t.data.len(),
            Self::Nested { ty, .. } => self.elements().saturating_mul(ty.byte_size().unwrap_or(1)),
        }
    }
}

/// An input's encoded bytes and shape, owned or borrowed from a tensor.
struct Encoded<'a> {
    ty: ElementType,
    shape: Dims,
    data: std::borrow::Cow<'a, [u8]>,
}

impl<'a> Encoded<'a> {
    fn new<'i: 'a>(input: &'a Input<'i>) -> Result<Self, NifError> {
        Ok(match input {
            Input::Tensor(t) => Self {
                ty: t.element_type,
                shape: t.shape.clone(),
                data: t.data.as_slice().into(),
            },
            Input::Nested {
                data,
                ty,
                shape,
                batch_axis,
                label,
            } => {
                let mut dims: Dims = shape.iter().map(|&d| d as i64).collect();
                if *batch_axis {
                    dims.insert(0, 1);
                }
                Self {
                    ty: *ty,
                    shape: dims,
                    data: encode_nested(*data, shape, *ty)
                        .map_err(|e| labelled(label, e))?
                        .into(),
                }
            }
        })
    }
}

fn labelled(label: &Option<String>, e: NifError) -> NifError {
    match label {
        Some(label) => e.prefixed(label),
        None => e,
    }
}

/// `{:ok, predictions, finished}`, `:dirty`, `:too_large` or
/// `{:error, {kind, message}}`.
///
/// `predictions` maps each output name to `%{"tensor" => nested lists,
/// "shape" => dims, "dtype" => name}` and, with `top_k`, `"top_k" => rows
/// of {index, score}` for Elixir to label. On the normal scheduler an
/// output too big to list here comes back as a `%Thunderbolt.Tensor{}` for
/// Elixir to list on a dirty one. `finished` is true when neither happened.
///
/// Nested inputs holding more than `limit` elements in all answer
/// `:too_large` before any is encoded; inputs too big to encode here, or a
/// run not known to fit the normal scheduler's budget, answer `:dirty`.
#[rustler::nif]
fn session_infer<'a>(
    env: Env<'a>,
    session: ResourceArc<SessionRef>,
    inputs: ListIterator<'a>,
    limit: Option<usize>,
    outputs: Option<Vec<usize>>,
    top_k: Option<usize>,
    others_waiting: bool,
) -> Term<'a> {
    let inputs = match decode_inputs(inputs, limit, true) {
        Ok(inputs) => inputs,
        Err(answer) => return answer.encode(env),
    };
    let bytes = inputs
        .iter()
        .fold(0usize, |n, input| n.saturating_add(input.bytes()));
    if !session.fits_normal_scheduler(bytes) {
        return dirty().encode(env);
    }
    let started = Instant::now();
    let result = infer(env, &session, &inputs, outputs.as_deref(), top_k, true);
    if others_waiting {
        charge_timeslice(env, started);
    }
    result
}

#[rustler::nif(schedule = "DirtyCpu")]
fn session_infer_dirty<'a>(
    env: Env<'a>,
    session: ResourceArc<SessionRef>,
    inputs: ListIterator<'a>,
    limit: Option<usize>,
    outputs: Option<Vec<usize>>,
    top_k: Option<usize>,
) -> Term<'a> {
    match decode_inputs(inputs, limit, false) {
        Ok(inputs) => infer(env, &session, &inputs, outputs.as_deref(), top_k, false),
        Err(answer) => answer.encode(env),
    }
}

/// Why the inputs were not taken.
enum Refusal {
    Error(NifError),
    TooLarge,
    Dirty,
}

impl Encoder for Refusal {
    fn encode<'a>(&self, env: Env<'a>) -> Term<'a> {
        match self {
            Self::Error(e) => (error(), e).encode(env),
            Self::TooLarge => too_large().encode(env),
            Self::Dirty => dirty().encode(env),
        }
    }
}

/// Decodes the inputs. Nested inputs count against `limit` together, and
/// on a normal scheduler against `NORMAL_MAX_ELEMENTS`, whichever is
/// smaller; each shape is measured only up to what is left.
fn decode_inputs(
    list: ListIterator<'_>,
    limit: Option<usize>,
    normal_scheduler: bool,
) -> Result<SmallVec<[Input<'_>; 4]>, Refusal> {
    let mut under_limit = limit.unwrap_or(usize::MAX);
    let mut under_normal = if normal_scheduler {
        NORMAL_MAX_ELEMENTS
    } else {
        usize::MAX
    };
    let mut inputs = SmallVec::new();
    for (position, term) in list.enumerate() {
        let cap = under_limit.min(under_normal);
        match Input::decode(term, position, cap).map_err(Refusal::Error)? {
            Some(input @ Input::Nested { .. }) => {
                under_limit -= input.elements();
                under_normal = under_normal.saturating_sub(input.elements());
                inputs.push(input);
            }
            Some(input) => inputs.push(input),
            // Over the normal budget only: the dirty NIF checks the limit.
            None if under_normal < under_limit => return Err(Refusal::Dirty),
            None => return Err(Refusal::TooLarge),
        }
    }
    Ok(inputs)
}

fn infer<'a>(
    env: Env<'a>,
    session: &SessionRef,
    inputs: &[Input<'_>],
    outputs: Option<&[usize]>,
    top_k: Option<usize>,
    normal_scheduler: bool,
) -> Term<'a> {
    match infer_inner(env, session, inputs, outputs, top_k, normal_scheduler) {
        Ok((map, finished)) => (ok(), map, finished).encode(env),
        Err(e) => (error(), e).encode(env),
    }
}

fn infer_inner<'a>(
    env: Env<'a>,
    session: &SessionRef,
    inputs: &[Input<'_>],
    outputs: Option<&[usize]>,
    top_k: Option<usize>,
    normal_scheduler: bool,
) -> Result<(Term<'a>, bool), NifError> {
    let encoded: SmallVec<[Encoded; 4]> =
        inputs.iter().map(Encoded::new).collect::<Result<_, _>>()?;
    let views: SmallVec<[TensorView; 4]> = encoded
        .iter()
        .map(|e| TensorView::new(e.ty, &e.shape, &e.data))
        .collect::<Result<_, _>>()?;
    let mut finished = top_k.is_none();
    let pairs = session.model.run(&views, outputs, |out| {
        let elements: usize = out.shape.iter().map(|&d| d.max(0) as usize).product();
        let value = if normal_scheduler && elements > NORMAL_MAX_ELEMENTS {
            finished = false;
            Ok(tensor_term(env, &out))
        } else {
            prediction(env, &out, top_k)
        };
        Ok((out.name.encode(env), value))
    })?;
    let mut names: SmallVec<[Term; 4]> = SmallVec::new();
    let mut values: SmallVec<[Term; 4]> = SmallVec::new();
    for (name, value) in pairs {
        names.push(name);
        values.push(value?);
    }
    let map = Term::map_from_term_arrays(env, &names, &values).expect("distinct output names");
    Ok((map, finished))
}

/// `%{"tensor" => nested lists, "shape" => dims, "dtype" => name}`, plus
/// `"top_k"` rows when asked.
fn prediction<'a>(
    env: Env<'a>,
    out: &OutputTensor<'_>,
    top_k: Option<usize>,
) -> Result<Term<'a>, NifError> {
    // Bool outputs read as u8, as `Thunderbolt.Tensor` types them.
    let ty = match out.element_type {
        ElementType::Bool => ElementType::U8,
        ty => ty,
    };
    let terms = element_terms(env, ty, out.data, true)?;
    let tensor = nested_list(env, &terms, &out.shape)?;
    let dims: SmallVec<[ErlNifTerm; 6]> =
        out.shape.iter().map(|d| d.encode(env).as_c_arg()).collect();
    let mut keys: SmallVec<[Term; 4]> = SmallVec::new();
    let mut values: SmallVec<[Term; 4]> = SmallVec::new();
    keys.extend(["tensor", "shape", "dtype"].map(|k| k.encode(env)));
    values.extend([tensor, list_term(env, &dims)?, ty.name().encode(env)]);
    if let Some(k) = top_k {
        keys.push("top_k".encode(env));
        values.push(ranked(env, ty, out, k)?);
    }
    Ok(Term::map_from_term_arrays(env, &keys, &values).expect("distinct keys"))
}

/// Rows as `Thunderbolt.Tensor.top_k/2` ranks them: a tensor of rank 0 or 1
/// is one row, otherwise the leading axis counts the rows.
fn ranked<'a>(
    env: Env<'a>,
    ty: ElementType,
    out: &OutputTensor<'_>,
    k: usize,
) -> Result<Term<'a>, NifError> {
    let dims: SmallVec<[usize; 6]> = out.shape.iter().map(|&d| d.max(0) as usize).collect();
    let (rows, row_len) = match dims.as_slice() {
        [] => (1, 1),
        [n] => (1, *n),
        [rows, inner @ ..] => (*rows, inner.iter().product()),
    };
    if rows * row_len == 0 {
        let empty: Vec<Vec<Term>> = vec![Vec::new(); rows];
        return Ok(empty.encode(env));
    }
    top_k_rows(env, ty, out.data, row_len, k)
}

/// An output as a `%Thunderbolt.Tensor{}`, its bytes copied once.
fn tensor_term<'a>(env: Env<'a>, out: &OutputTensor<'_>) -> Term<'a> {
    let bin = out_binary(OutputBytes::Borrowed(out.data));
    tensor_struct::encode(
        env,
        tensor_struct::type_term(env, out.element_type),
        &out.shape,
        rustler::Binary::from_owned(bin, env).to_term(env),
    )
}
