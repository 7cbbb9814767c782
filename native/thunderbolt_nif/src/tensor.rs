//! NIFs behind `Thunderbolt.Tensor.new/2` and `to_list/2`: converting
//! between Elixir number lists and tensor bytes element by element is the
//! slowest part of serving JSON-shaped requests when done in Elixir.

use rustler::sys::{enif_make_list_from_array, ErlNifTerm};
use rustler::{Atom, Binary, Encoder, Env, OwnedBinary, Term, TermType};
use thunderbolt_runtime::number::{self, Number};
use thunderbolt_runtime::ElementType;

use crate::error::NifError;
use crate::session::element_type;

rustler::atoms! {
    nan,
    infinity,
    neg_infinity,
    atoms,
    strings,
}

/// Builds a tensor from a number or nested lists of numbers in one walk:
/// the shape comes from the nesting, every row must match it, and every
/// leaf must be a number. Returns `{shape, bytes}`.
#[rustler::nif]
fn tensor_from_nested<'a>(
    env: Env<'a>,
    data: Term<'a>,
    ty: Atom,
) -> Result<(Vec<usize>, Binary<'a>), NifError> {
    from_nested(env, data, ty)
}

#[rustler::nif(schedule = "DirtyCpu")]
fn tensor_from_nested_dirty<'a>(
    env: Env<'a>,
    data: Term<'a>,
    ty: Atom,
) -> Result<(Vec<usize>, Binary<'a>), NifError> {
    from_nested(env, data, ty)
}

/// How many elements `encode_nested` reserves room for at most before it
/// has seen them.
const RESERVE_AHEAD: usize = 1 << 20;

/// Deeper nesting than this is refused rather than recursed into.
const MAX_RANK: usize = 32;

fn from_nested<'a>(
    env: Env<'a>,
    data: Term<'a>,
    ty: Atom,
) -> Result<(Vec<usize>, Binary<'a>), NifError> {
    let ty = tensor_type(ty)?;
    let shape = nested_shape(data)?;
    let bytes = encode_nested(data, &shape, ty)?;
    let mut bin = OwnedBinary::new(bytes.len());
    bin.as_mut_slice().copy_from_slice(&bytes);
    Ok((shape, Binary::from_owned(bin, env)))
}

/// The shape of nested lists, read along the first element of each level;
/// `encode_nested` checks that every other row matches it.
pub(crate) fn nested_shape(data: Term<'_>) -> Result<Vec<usize>, NifError> {
    Ok(nested_shape_within(data, usize::MAX)?.expect("no shape holds more than usize::MAX"))
}

/// Like `nested_shape`, but `None` as soon as the shape holds more than
/// `cap` elements: each level's length is counted only as far as the cap
/// needs, so a huge list costs no more to refuse than a small one.
pub(crate) fn nested_shape_within(
    data: Term<'_>,
    cap: usize,
) -> Result<Option<Vec<usize>>, NifError> {
    let mut shape = Vec::new();
    let mut elements: usize = 1;
    let mut probe = data;
    while probe.get_type() == TermType::List {
        if shape.len() == MAX_RANK {
            return Err(NifError::invalid_input(format!(
                "lists nested deeper than {MAX_RANK}"
            )));
        }
        // More than `cap / elements` here would take the shape over the cap.
        let Some(len) = list_length_within(probe, cap / elements.max(1))? else {
            return Ok(None);
        };
        shape.push(len);
        elements = elements.saturating_mul(len);
        match probe.into_list_iterator().ok().and_then(|mut it| it.next()) {
            Some(first) => probe = first,
            None => break,
        }
    }
    Ok(Some(shape))
}

/// A proper list's length, or `None` when it is longer than `cap`.
fn list_length_within(list: Term<'_>, cap: usize) -> Result<Option<usize>, NifError> {
    if cap == usize::MAX {
        return list.list_length().map(Some).map_err(|_| improper());
    }
    let mut rest = list;
    let mut len = 0;
    while let Ok((_, tail)) = rest.list_get_cell() {
        if len == cap {
            return Ok(None);
        }
        len += 1;
        rest = tail;
    }
    if !rest.is_empty_list() {
        return Err(improper());
    }
    Ok(Some(len))
}

fn improper() -> NifError {
    NifError::invalid_input("an improper list is not a tensor")
}

fn ragged() -> NifError {
    NifError::invalid_input("ragged list: rows must all have the same shape")
}

/// The bytes of nested lists of `shape` (from `nested_shape`), refusing
/// ragged rows and leaves that are not numbers.
pub(crate) fn encode_nested(
    data: Term<'_>,
    shape: &[usize],
    ty: ElementType,
) -> Result<Vec<u8>, NifError> {
    // The shape is read along the first element of each level, so ragged
    // lists can claim far more elements than they hold ([big_row, [], [],
    // ...]): reserving for the claim once aborted the VM on an 80 GB
    // allocation. Reserve at most a million elements ahead; the walk
    // refuses the rows that do not match before it writes more than the
    // data holds.
    let claimed = shape.iter().fold(1usize, |n, &d| n.saturating_mul(d));
    let size = ty.byte_size().unwrap_or(1);
    let mut bytes = Vec::with_capacity(claimed.min(RESERVE_AHEAD) * size);
    walk(data, shape, ty, &mut bytes)?;
    Ok(bytes)
}

fn walk(
    term: Term<'_>,
    shape: &[usize],
    ty: ElementType,
    out: &mut Vec<u8>,
) -> Result<(), NifError> {
    let Some((&len, inner)) = shape.split_first() else {
        // A list here is refused by `to_number`, as ragged.
        return Ok(number::encode(ty, to_number(term)?, out)?);
    };
    if !term.is_list() {
        return Err(ragged());
    }
    // Cell by cell rather than with rustler's list iterator, which panics
    // at an improper tail.
    let mut rest = term;
    let mut seen = 0;
    while let Ok((item, tail)) = rest.list_get_cell() {
        seen += 1;
        if seen > len {
            break;
        }
        rest = tail;
        // A row of token ids, the commonest leaves, written directly
        // (0.9 -> 0.8 us for 40).
        if inner.is_empty() && ty == ElementType::S64 {
            if let Ok(id) = item.decode::<i64>() {
                out.extend_from_slice(&id.to_ne_bytes());
                continue;
            }
        }
        walk(item, inner, ty, out)?;
    }
    if seen == len && !rest.is_empty_list() {
        return Err(improper());
    }
    if seen != len {
        return Err(ragged());
    }
    Ok(())
}

/// The elements as one list, or nested following `dims` (a list of
/// non-negative integers; `[]` gives the one element of a scalar), which
/// must hold exactly as many elements as `data`.
#[rustler::nif]
fn tensor_to_list<'a>(
    env: Env<'a>,
    data: Binary<'a>,
    ty: Atom,
    dims: Term<'a>,
    non_finite: Atom,
) -> Result<Term<'a>, NifError> {
    to_list(env, data, ty, dims, non_finite)
}

#[rustler::nif(schedule = "DirtyCpu")]
fn tensor_to_list_dirty<'a>(
    env: Env<'a>,
    data: Binary<'a>,
    ty: Atom,
    dims: Term<'a>,
    non_finite: Atom,
) -> Result<Term<'a>, NifError> {
    to_list(env, data, ty, dims, non_finite)
}

fn number_term(env: Env<'_>, n: Number) -> Term<'_> {
    match n {
        Number::Int(i) if i > i64::MAX as i128 => (i as u64).encode(env),
        Number::Int(i) => (i as i64).encode(env),
        Number::Float(f) => f.encode(env),
        Number::NaN => nan().encode(env),
        Number::Infinity => infinity().encode(env),
        Number::NegInfinity => neg_infinity().encode(env),
    }
}

fn tensor_type(ty: Atom) -> Result<ElementType, NifError> {
    element_type(ty).ok_or_else(|| NifError::invalid_input("unknown tensor type"))
}

fn to_number(term: Term<'_>) -> Result<Number, NifError> {
    // Small integers are the commonest leaves (token ids): one call to
    // decode them instead of two, 0.2 us of a 40-id row.
    if let Ok(i) = term.decode::<i64>() {
        return Ok(Number::Int(i as i128));
    }
    match term.get_type() {
        // Beyond i64 (decoded above): only u64 is left in range.
        TermType::Integer => term
            .decode::<u64>()
            .map(|u| Number::Int(u as i128))
            .map_err(|_| NifError::invalid_input("integer out of the 64-bit range")),
        TermType::Float => term
            .decode::<f64>()
            .map(Number::Float)
            .map_err(|_| NifError::invalid_input("bad float")),
        TermType::Atom => match term.decode::<Atom>() {
            Ok(a) if a == nan() => Ok(Number::NaN),
            Ok(a) if a == infinity() => Ok(Number::Infinity),
            Ok(a) if a == neg_infinity() => Ok(Number::NegInfinity),
            _ => Err(NifError::invalid_input(
                "expected a number, :nan, :infinity or :neg_infinity",
            )),
        },
        TermType::List => Err(ragged()),
        _ => Err(NifError::invalid_input("expected a number")),
    }
}

// One `enif_make_double` a float, then one `enif_make_list_from_array` for
// all the cons cells, with a loop per element type (`number::visit`): 1000
// f32 scores take 3.4 us, against 9.5 through a `Number` per element and
// 5.2 through the external term format and `binary_to_term`. Nesting here
// rather than in Elixir costs a list per row instead of a pass of
// `Enum.chunk_every/2` over every element.
fn to_list<'a>(
    env: Env<'a>,
    data: Binary<'a>,
    ty: Atom,
    dims: Term<'a>,
    non_finite: Atom,
) -> Result<Term<'a>, NifError> {
    let strings = if non_finite == strings() {
        true
    } else if non_finite == atoms() {
        false
    } else {
        return Err(NifError::invalid_input(
            "non_finite must be :atoms or :strings",
        ));
    };
    let ty = tensor_type(ty)?;
    // `Option<Term>` would take `nil` for a term too.
    let dims = match dims.decode::<Atom>() {
        Ok(atom) if atom == rustler::types::atom::nil() => None,
        _ => Some(checked_dims(dims, ty, data.len())?),
    };
    let terms = element_terms(env, ty, data.as_slice(), strings)?;
    match dims {
        None => list_term(env, &terms),
        Some(dims) => nested_list(env, &terms, &dims),
    }
}

/// `dims` as a shape that holds exactly the elements of `bytes` bytes of
/// `ty`: a `%Thunderbolt.Tensor{}` built by hand may claim any shape.
fn checked_dims(dims: Term<'_>, ty: ElementType, bytes: usize) -> Result<Vec<i64>, NifError> {
    let dims: Vec<i64> = dims
        .decode::<Vec<u64>>()
        .ok()
        .and_then(|dims| dims.into_iter().map(|d| i64::try_from(d).ok()).collect())
        .ok_or_else(|| NifError::invalid_input("a shape is a list of non-negative integers"))?;
    let size = ty.byte_size().unwrap_or(1).max(1);
    let held = dims
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d as usize));
    if held != Some(bytes / size) || !bytes.is_multiple_of(size) {
        return Err(NifError::invalid_input(format!(
            "the shape {dims:?} does not fit {bytes} bytes of {}",
            ty.name()
        )));
    }
    Ok(dims)
}

/// Lists of nothing that a shape with a zero in it may ask for beyond its
/// elements: `[3, 0]` is `[[], [], []]`, but `[2^62, 0]` is no answer.
const MAX_EMPTY_ROWS: usize = 1 << 16;

/// `terms` nested as lists following `dims`; a scalar is its one term.
/// The caller has checked that `dims` holds `terms.len()` elements.
pub(crate) fn nested_list<'a>(
    env: Env<'a>,
    terms: &[ErlNifTerm],
    dims: &[i64],
) -> Result<Term<'a>, NifError> {
    let mut rows = 1usize;
    for &d in dims.iter().take(dims.len().saturating_sub(1)) {
        rows = rows.saturating_mul(d.max(0) as usize);
        if rows > terms.len().max(MAX_EMPTY_ROWS) {
            return Err(NifError::invalid_input(format!(
                "the shape {dims:?} asks for {rows} or more lists to hold {} elements",
                terms.len()
            )));
        }
    }
    nest(env, terms, dims)
}

fn nest<'a>(env: Env<'a>, terms: &[ErlNifTerm], dims: &[i64]) -> Result<Term<'a>, NifError> {
    match dims {
        [] => terms
            .first()
            // SAFETY: the terms were made in `env`.
            .map(|&t| unsafe { Term::new(env, t) })
            .ok_or_else(|| NifError::invalid_input("a scalar with no element")),
        [_] => list_term(env, terms),
        [outer, inner @ ..] => {
            let chunk: usize = inner.iter().map(|&d| d.max(0) as usize).product();
            let rows = (0..(*outer).max(0) as usize)
                .map(|i| nest(env, &terms[i * chunk..(i + 1) * chunk], inner).map(|t| t.as_c_arg()))
                .collect::<Result<Vec<_>, _>>()?;
            list_term(env, &rows)
        }
    }
}

/// One term per element of `data`: numbers, with NaN and the infinities as
/// atoms or, with `strings`, as strings.
pub(crate) fn element_terms(
    env: Env<'_>,
    ty: ElementType,
    data: &[u8],
    strings: bool,
) -> Result<Vec<ErlNifTerm>, NifError> {
    let mut list = ListBuilder {
        env,
        strings,
        non_finite: [None; 3],
        terms: Vec::with_capacity(data.len() / ty.byte_size().unwrap_or(1).max(1)),
    };
    if ty == ElementType::F32 {
        list.f32s(data)?;
    } else {
        number::visit(ty, data, &mut list)?;
    }
    Ok(list.terms)
}

/// A list of terms of `env`, its cons cells made in one call.
pub(crate) fn list_term<'a>(env: Env<'a>, terms: &[ErlNifTerm]) -> Result<Term<'a>, NifError> {
    let len = u32::try_from(terms.len())
        .map_err(|_| NifError::invalid_input("more than 2^32 elements for one list"))?;
    // SAFETY: callers pass terms made in `env`.
    Ok(unsafe {
        Term::new(
            env,
            enif_make_list_from_array(env.as_c_arg(), terms.as_ptr(), len),
        )
    })
}

struct ListBuilder<'a> {
    env: Env<'a>,
    strings: bool,
    // NaN, infinity and neg_infinity, each made once: a list may share a
    // term, and a string made per element would cost a binary each.
    non_finite: [Option<ErlNifTerm>; 3],
    terms: Vec<ErlNifTerm>,
}

impl number::Visitor for ListBuilder<'_> {
    fn int(&mut self, value: i64) {
        self.terms.push(value.encode(self.env).as_c_arg());
    }

    fn uint(&mut self, value: u64) {
        self.terms.push(value.encode(self.env).as_c_arg());
    }

    fn float(&mut self, value: f64) {
        let term = if value.is_finite() {
            value.encode(self.env).as_c_arg()
        } else {
            self.non_finite_term(value)
        };
        self.terms.push(term);
    }
}

impl ListBuilder<'_> {
    // The commonest output type gets its own loop, each term written in
    // place: through `Visitor::float` the vector's length went back to
    // memory around every `enif_make_double` call.
    fn f32s(&mut self, data: &[u8]) -> Result<(), NifError> {
        if !data.len().is_multiple_of(4) {
            return Err(NifError::invalid_input(format!(
                "{} bytes is not a whole number of f32 elements",
                data.len()
            )));
        }
        let n = data.len() / 4;
        let start = self.terms.len();
        self.terms.reserve(n);
        let (env, strings) = (self.env, self.strings);
        let out = &mut self.terms.spare_capacity_mut()[..n];
        for (slot, chunk) in out.iter_mut().zip(data.chunks_exact(4)) {
            let value = f64::from(f32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]));
            slot.write(if value.is_finite() {
                value.encode(env).as_c_arg()
            } else {
                non_finite_term(env, strings, &mut self.non_finite, value)
            });
        }
        // SAFETY: the loop wrote all n slots past `start`.
        unsafe { self.terms.set_len(start + n) };
        Ok(())
    }

    fn non_finite_term(&mut self, value: f64) -> ErlNifTerm {
        non_finite_term(self.env, self.strings, &mut self.non_finite, value)
    }
}

#[cold]
fn non_finite_term(
    env: Env<'_>,
    strings: bool,
    made: &mut [Option<ErlNifTerm>; 3],
    value: f64,
) -> ErlNifTerm {
    let (slot, atom, name) = if value.is_nan() {
        (0, nan(), "nan")
    } else if value > 0.0 {
        (1, infinity(), "infinity")
    } else {
        (2, neg_infinity(), "neg_infinity")
    };
    *made[slot].get_or_insert_with(|| {
        if strings {
            name.encode(env).as_c_arg()
        } else {
            atom.encode(env).as_c_arg()
        }
    })
}

#[rustler::nif]
fn tensor_all_finite(data: Binary<'_>, ty: Atom) -> Result<bool, NifError> {
    Ok(number::all_finite(tensor_type(ty)?, data.as_slice()))
}

#[rustler::nif]
fn tensor_top_k<'a>(
    env: Env<'a>,
    data: Binary<'a>,
    ty: Atom,
    row_len: usize,
    k: usize,
) -> Result<Term<'a>, NifError> {
    top_k(env, data, ty, row_len, k)
}

#[rustler::nif(schedule = "DirtyCpu")]
fn tensor_top_k_dirty<'a>(
    env: Env<'a>,
    data: Binary<'a>,
    ty: Atom,
    row_len: usize,
    k: usize,
) -> Result<Term<'a>, NifError> {
    top_k(env, data, ty, row_len, k)
}

fn top_k<'a>(
    env: Env<'a>,
    data: Binary<'a>,
    ty: Atom,
    row_len: usize,
    k: usize,
) -> Result<Term<'a>, NifError> {
    top_k_rows(env, tensor_type(ty)?, data.as_slice(), row_len, k)
}

/// The `k` best `{index, score}` of each row of `row_len` elements.
pub(crate) fn top_k_rows<'a>(
    env: Env<'a>,
    ty: ElementType,
    data: &[u8],
    row_len: usize,
    k: usize,
) -> Result<Term<'a>, NifError> {
    let rows = number::top_k(ty, data, row_len, k)?;
    let rows: Vec<Term<'a>> = rows
        .into_iter()
        .map(|row| {
            row.into_iter()
                .map(|(index, n)| (index, number_term(env, n)).encode(env))
                .collect::<Vec<Term<'a>>>()
                .encode(env)
        })
        .collect();
    Ok(rows.encode(env))
}
