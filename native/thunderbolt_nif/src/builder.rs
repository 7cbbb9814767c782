//! NIF behind `Thunderbolt.Builder.build/1`: a model spec in plain terms to ONNX bytes,
//! through `thunderbolt_builder`. `Thunderbolt.Builder` normalizes the spec first (string
//! config keys, type names, list shapes), so this layer only decodes and copies.
//!
//! Copies: each weight binary is copied once into the spec, moved into the model, and the
//! model is serialized straight into the result binary. Building touches every weight
//! byte, so it runs on a dirty CPU scheduler.

use rustler::{Atom, Binary, Encoder, Env, NifMap, OwnedBinary, Term, TermType};
use serde_json::{Map, Number, Value};
use thunderbolt_builder::{BuildError, DType, Input, Layer, ModelSpec, Output, Tensor};

rustler::atoms! {
    ok,
    error,
    build,
    invalid_input,
    nil,
}

#[derive(NifMap)]
struct SpecTerm<'a> {
    name: String,
    inputs: Vec<InputTerm>,
    layers: Vec<LayerTerm<'a>>,
    outputs: Vec<OutputTerm>,
    opset: Option<i64>,
}

#[derive(NifMap)]
struct InputTerm {
    name: String,
    dtype: String,
    shape: Vec<Option<usize>>,
}

#[derive(NifMap)]
struct LayerTerm<'a> {
    name: String,
    class_name: String,
    config: Term<'a>,
    inbound: Vec<String>,
    weights: Vec<WeightTerm<'a>>,
}

#[derive(NifMap)]
struct WeightTerm<'a> {
    dtype: String,
    shape: Vec<usize>,
    data: Binary<'a>,
}

#[derive(NifMap)]
struct OutputTerm {
    name: String,
    source: String,
}

/// `{kind, message}`, which `Thunderbolt.Error` wraps.
struct Failure {
    kind: Atom,
    message: String,
}

impl From<BuildError> for Failure {
    fn from(e: BuildError) -> Self {
        Failure {
            kind: build(),
            message: e.to_string(),
        }
    }
}

impl Encoder for Failure {
    fn encode<'a>(&self, env: Env<'a>) -> Term<'a> {
        (self.kind, self.message.as_str()).encode(env)
    }
}

fn invalid(message: impl Into<String>) -> Failure {
    Failure {
        kind: invalid_input(),
        message: message.into(),
    }
}

#[rustler::nif(schedule = "DirtyCpu")]
fn builder_build<'a>(env: Env<'a>, spec: Term<'a>) -> Result<Binary<'a>, Failure> {
    let spec = model_spec(spec)?;
    let model = thunderbolt_builder::build_model_owned(spec)?;
    let len = thunderbolt_builder::encoded_len(&model)?;
    let mut bin = OwnedBinary::new(len);
    thunderbolt_builder::encode_into(&model, bin.as_mut_slice())?;
    Ok(Binary::from_owned(bin, env))
}

fn model_spec(term: Term<'_>) -> Result<ModelSpec, Failure> {
    let spec: SpecTerm = term.decode().map_err(|_| {
        invalid("malformed model spec; pass it through Thunderbolt.Builder.build/1")
    })?;
    let inputs = spec
        .inputs
        .into_iter()
        .map(|i| {
            Ok(Input {
                dtype: DType::from_name(&i.dtype)?,
                name: i.name,
                shape: i.shape,
            })
        })
        .collect::<Result<_, Failure>>()?;
    let layers = spec
        .layers
        .into_iter()
        .map(|l| {
            let config =
                json(l.config).map_err(|m| invalid(format!("layer {:?} config: {m}", l.name)))?;
            let weights = l
                .weights
                .into_iter()
                .map(|w| {
                    Ok(Tensor {
                        dtype: DType::from_name(&w.dtype)?,
                        shape: w.shape,
                        data: w.data.as_slice().to_vec(),
                    })
                })
                .collect::<Result<_, Failure>>()?;
            Ok(Layer {
                name: l.name,
                class_name: l.class_name,
                config,
                inbound: l.inbound,
                weights,
            })
        })
        .collect::<Result<_, Failure>>()?;
    let outputs = spec
        .outputs
        .into_iter()
        .map(|o| Output {
            name: o.name,
            source: o.source,
        })
        .collect();
    Ok(ModelSpec {
        name: spec.name,
        inputs,
        layers,
        outputs,
        opset: spec.opset,
    })
}

/// A JSON-like term (maps with string keys, lists, strings, numbers, `true`, `false`,
/// `nil`) as a `serde_json::Value`, the form Keras configs take.
fn json(term: Term<'_>) -> Result<Value, String> {
    let bad = || format!("cannot represent {term:?} in a layer config");
    Ok(match term.get_type() {
        TermType::Atom => {
            if term.decode::<bool>().is_ok_and(|b| b) {
                Value::Bool(true)
            } else if term.decode::<bool>().is_ok() {
                Value::Bool(false)
            } else if term.decode::<Atom>().is_ok_and(|a| a == nil()) {
                Value::Null
            } else {
                Value::String(term.atom_to_string().map_err(|_| bad())?)
            }
        }
        TermType::Binary => Value::String(term.decode::<String>().map_err(|_| bad())?),
        TermType::Integer => match term.decode::<i64>() {
            Ok(i) => Value::from(i),
            Err(_) => Value::from(term.decode::<u64>().map_err(|_| bad())?),
        },
        TermType::Float => Number::from_f64(term.decode::<f64>().map_err(|_| bad())?)
            .map(Value::Number)
            .ok_or_else(bad)?,
        TermType::List => Value::Array(
            term.decode::<Vec<Term>>()
                .map_err(|_| bad())?
                .into_iter()
                .map(json)
                .collect::<Result<_, _>>()?,
        ),
        TermType::Map => {
            let mut map = Map::new();
            for (k, v) in term.decode::<rustler::MapIterator>().map_err(|_| bad())? {
                let key = k
                    .decode::<String>()
                    .map_err(|_| format!("config keys must be strings, got {k:?}"))?;
                map.insert(key, json(v)?);
            }
            Value::Object(map)
        }
        _ => return Err(bad()),
    })
}
