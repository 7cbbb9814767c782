//! Imports Keras models into ONNX without Python: Keras 3 `.keras` files and legacy
//! whole-model `.h5` files become a [`ModelSpec`] for `thunderbolt_builder`, which writes
//! the ONNX model.
//!
//! ```no_run
//! use thunderbolt_builder::DType;
//! use thunderbolt_keras::{convert_file, ImportOptions};
//!
//! let options = ImportOptions { input_dtype: Some(DType::I64), ..Default::default() };
//! let onnx: Vec<u8> = convert_file("model.keras", &options)?;
//! std::fs::write("model.onnx", onnx)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! What is read:
//! - Functional models, including Keras 3 `inbound_nodes` with branches, several inputs and
//!   outputs, and shared layers (one builder layer per call, same weights); constants
//!   serialized in call arguments (`x + positional_encoding`) become initializers.
//! - Sequential models, and models nested in models (inlined, their layers prefixed with the
//!   nested model's name).
//! - Weights by Keras 3's own rule, `layers/<snake_case class>[_N]/vars/<i>` numbered per class
//!   in layer order (not by layer names), a recurrent layer's below its `cell` and a
//!   `Bidirectional`'s below its forward and backward layers; legacy files by
//!   `layer_names`/`weight_names`.
//! - Call options a converter needs from the call rather than the layer's config
//!   (`MultiHeadAttention`'s `use_causal_mask`) are copied into the builder layer's config.
//! - The `mask` a Keras 3 file records for a call (`Embedding(mask_zero=True)`'s as
//!   `NotEqual(ids, 0)`, `Masking`'s as `Any(NotEqual(x, mask_value))`, OR'd by
//!   `LogicalOr`, joined by `Concatenate` as `Any(Concatenate(...))`) becomes the builder's `keras_mask` check, so the builder's mask
//!   propagation must agree with Keras' record; other masks are refused.
//! - Every layer the builder converts, Cerebros's `cerebrosllmutils>InterleavedRoPE`, and any
//!   custom layer mapped with [`ImportOptions::custom_layers`] onto a converter registered in
//!   a [`LayerRegistry`] (see [`convert_with`]).
//!
//! Malformed files give an [`ImportError`] naming what is wrong; nothing here panics on
//! untrusted bytes.

mod archive;
mod config;
mod custom;
mod error;
mod graph;
mod naming;
mod weights;

pub use archive::Format;
pub use custom::CEREBROS_LAYERS;
pub use error::ImportError;
pub use naming::to_snake_case;
pub use thunderbolt_builder::{DType, LayerRegistry, ModelSpec};

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

/// How to import a model. The default keeps everything as Keras saved it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImportOptions {
    /// Element type of every graph input, replacing the Keras dtype (for example
    /// [`DType::I64`] for token ids, as the original ONNX tooling used).
    pub input_dtype: Option<DType>,
    /// Element type of named inputs; takes precedence over `input_dtype`.
    pub input_dtypes: BTreeMap<String, DType>,
    /// Names of the ONNX outputs, one per model output, in order. By default each output is
    /// named after the Keras layer that produces it.
    pub output_names: Option<Vec<String>>,
    /// ONNX opset; `None` means the builder's default.
    pub opset: Option<i64>,
    /// Custom Keras layers: registered name (`"package>Name"`) or class name, to the builder
    /// class whose converter handles it.
    pub custom_layers: BTreeMap<String, String>,
}

fn default_registry() -> &'static LayerRegistry {
    static REGISTRY: OnceLock<LayerRegistry> = OnceLock::new();
    REGISTRY.get_or_init(LayerRegistry::default)
}

/// Reads a `.keras` or legacy `.h5` model (detected from its bytes) into a builder spec.
pub fn import(bytes: Vec<u8>, options: &ImportOptions) -> Result<ModelSpec, ImportError> {
    import_with(bytes, options, default_registry())
}

/// Like [`import`], accepting the custom converters of `registry`.
pub fn import_with(
    bytes: Vec<u8>,
    options: &ImportOptions,
    registry: &LayerRegistry,
) -> Result<ModelSpec, ImportError> {
    let saved = archive::open(bytes)?;
    let custom = custom::CustomLayers;
    graph::Flattener::new(&saved.weights, options, &custom, registry)
        .saved_by_keras_2(saved.keras_2)
        .saved_by_release(saved.keras_version)
        .flatten(&saved.config, saved.scope)
}

/// Imports a Keras 3 model already taken out of its `.keras` archive: the text of
/// `config.json` and the bytes of `model.weights.h5`.
pub fn import_parts(
    config_json: &str,
    weights_h5: Vec<u8>,
    options: &ImportOptions,
) -> Result<ModelSpec, ImportError> {
    let saved = archive::from_parts(config_json, weights_h5)?;
    let custom = custom::CustomLayers;
    graph::Flattener::new(&saved.weights, options, &custom, default_registry())
        .saved_by_keras_2(saved.keras_2)
        .saved_by_release(saved.keras_version)
        .flatten(&saved.config, saved.scope)
}

/// Converts a `.keras` or legacy `.h5` model held in memory to a serialized ONNX model.
pub fn convert(bytes: Vec<u8>, options: &ImportOptions) -> Result<Vec<u8>, ImportError> {
    convert_with(bytes, options, default_registry())
}

/// Like [`convert`], with the converters of `registry` (the built-in ones plus any custom
/// ones the caller registered; [`LayerRegistry::default`] holds the built-ins).
pub fn convert_with(
    bytes: Vec<u8>,
    options: &ImportOptions,
    registry: &LayerRegistry,
) -> Result<Vec<u8>, ImportError> {
    let spec = import_with(bytes, options, registry)?;
    Ok(thunderbolt_builder::build_with(&spec, registry)?)
}

/// Converts the model file at `path` to a serialized ONNX model.
pub fn convert_file(
    path: impl AsRef<Path>,
    options: &ImportOptions,
) -> Result<Vec<u8>, ImportError> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| ImportError::Io {
        path: path.display().to_string(),
        source,
    })?;
    convert(bytes, options)
}

/// The number of weight values in a serialized ONNX model: the elements of its
/// floating-point initializers (integer ones are axes and shapes, not weights).
///
/// For most converted models this is Keras's `count_params()`. It is lower where the builder
/// folds weights (`BatchNormalization` becomes one scale and one offset per channel) and
/// higher for shared layers, whose weights are stored once per call.
pub fn onnx_parameter_count(onnx: &[u8]) -> Result<u64, ImportError> {
    use thunderbolt_builder::onnx_protobuf::{tensor_proto::DataType, Message, ModelProto};
    let model = ModelProto::parse_from_bytes(onnx)
        .map_err(|e| ImportError::UnknownFormat(format!("not an ONNX model: {e}")))?;
    let floats = [
        DataType::FLOAT,
        DataType::DOUBLE,
        DataType::FLOAT16,
        DataType::BFLOAT16,
    ]
    .map(|d| d as i32);
    Ok(model
        .graph
        .initializer
        .iter()
        .filter(|t| floats.contains(&t.data_type))
        .map(|t| t.dims.iter().map(|&d| d.max(0) as u64).product::<u64>())
        .sum())
}

/// The format of a model held in memory, from its first bytes.
pub fn detect_format(bytes: &[u8]) -> Option<Format> {
    archive::detect(bytes)
}
