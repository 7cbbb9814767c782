//! NIF behind `Thunderbolt.Keras.convert/2`: a Keras `.keras` / legacy `.h5` model to ONNX
//! bytes, through `thunderbolt_keras`. It reads and parses megabytes, so it runs on a dirty
//! CPU scheduler.

use rustler::{Atom, Binary, Encoder, Env, OwnedBinary, Term};
use std::collections::BTreeMap;
use thunderbolt_keras::{DType, ImportError, ImportOptions};

rustler::atoms! {
    ok,
    error,
    file,
    binary,
    build,
    load,
    invalid_option,
}

/// Options as `Thunderbolt.Keras` validated them; dtypes are names such as `"s64"`.
#[derive(rustler::NifMap)]
struct ConvertOptions {
    input_dtype: Option<String>,
    input_dtypes: Vec<(String, String)>,
    output_names: Option<Vec<String>>,
    opset: Option<i64>,
    custom_layers: Vec<(String, String)>,
}

/// `{kind, message}`, which `Thunderbolt.Error` wraps.
struct KerasError {
    kind: Atom,
    message: String,
}

impl From<ImportError> for KerasError {
    fn from(e: ImportError) -> Self {
        let kind = match &e {
            ImportError::Io { .. } => load(),
            ImportError::Option(_) => invalid_option(),
            _ => build(),
        };
        KerasError {
            kind,
            message: e.to_string(),
        }
    }
}

impl KerasError {
    fn option(message: String) -> Self {
        KerasError {
            kind: invalid_option(),
            message,
        }
    }
}

impl Encoder for KerasError {
    fn encode<'a>(&self, env: Env<'a>) -> Term<'a> {
        (self.kind, self.message.as_str()).encode(env)
    }
}

fn dtype(name: &str) -> Result<DType, KerasError> {
    DType::from_name(name).map_err(|e| KerasError::option(e.to_string()))
}

fn import_options(options: ConvertOptions) -> Result<ImportOptions, KerasError> {
    let input_dtypes = options
        .input_dtypes
        .into_iter()
        .map(|(name, d)| Ok((name, dtype(&d)?)))
        .collect::<Result<BTreeMap<_, _>, KerasError>>()?;
    Ok(ImportOptions {
        input_dtype: options.input_dtype.as_deref().map(dtype).transpose()?,
        input_dtypes,
        output_names: options.output_names,
        opset: options.opset,
        custom_layers: options.custom_layers.into_iter().collect(),
    })
}

#[rustler::nif(schedule = "DirtyCpu")]
fn keras_convert<'a>(env: Env<'a>, source: (Atom, Term<'a>), options: ConvertOptions) -> Term<'a> {
    match convert(source, options) {
        Ok(onnx) => {
            let mut bin = OwnedBinary::new(onnx.len());
            bin.as_mut_slice().copy_from_slice(&onnx);
            (ok(), bin.release(env)).encode(env)
        }
        Err(e) => (error(), e).encode(env),
    }
}

fn convert(source: (Atom, Term<'_>), options: ConvertOptions) -> Result<Vec<u8>, KerasError> {
    let options = import_options(options)?;
    let (kind, value) = source;
    if kind == file() {
        let path: String = value
            .decode()
            .map_err(|_| KerasError::option("a model path must be a string".into()))?;
        Ok(thunderbolt_keras::convert_file(path, &options)?)
    } else if kind == binary() {
        let bytes: Binary = value
            .decode()
            .map_err(|_| KerasError::option("{:binary, bytes} needs a binary".into()))?;
        Ok(thunderbolt_keras::convert(
            bytes.as_slice().to_vec(),
            &options,
        )?)
    } else {
        Err(KerasError::option(
            "source must be {:file, path} or {:binary, bytes}".into(),
        ))
    }
}

/// Weight values in a serialized ONNX model, for `mix thunderbolt.convert --check`.
#[rustler::nif]
fn keras_parameter_count<'a>(env: Env<'a>, onnx: Binary<'a>) -> Term<'a> {
    match thunderbolt_keras::onnx_parameter_count(onnx.as_slice()) {
        Ok(count) => (ok(), count).encode(env),
        Err(e) => (error(), KerasError::from(e)).encode(env),
    }
}
