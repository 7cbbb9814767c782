//! Builds ONNX models from a graph of Keras-style layers with their weights, without Python.
//!
//! A [`ModelSpec`] lists named [`Input`]s, [`Layer`]s (Keras class name, Keras config,
//! inbound references and weights in Keras layouts) and [`Output`]s. [`build`] validates the
//! whole graph, emits ONNX nodes through one [`LayerConverter`] per Keras class, and returns
//! the serialized `ModelProto`.
//!
//! ```
//! use serde_json::json;
//! use thunderbolt_builder::{build, DType, Input, Layer, ModelSpec, Output, Tensor};
//!
//! let spec = ModelSpec {
//!     name: "tiny".into(),
//!     inputs: vec![Input { name: "x".into(), dtype: DType::F32, shape: vec![None, Some(2)] }],
//!     layers: vec![Layer {
//!         name: "dense".into(),
//!         class_name: "Dense".into(),
//!         config: json!({"units": 3, "activation": "relu"}),
//!         inbound: vec!["x".into()],
//!         weights: vec![
//!             Tensor::from_f32(vec![2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
//!             Tensor::from_f32(vec![3], &[0.0, 0.5, -1.0]),
//!         ],
//!     }],
//!     outputs: vec![Output { name: "y".into(), source: "dense".into() }],
//!     opset: None,
//! };
//! let bytes = build(&spec)?;
//! assert_eq!(bytes, build(&spec)?); // deterministic
//! # Ok::<(), thunderbolt_builder::BuildError>(())
//! ```
//!
//! # IR version and opset
//!
//! The default is opset 18 ([`DEFAULT_OPSET`]) with IR version 8; [`ModelSpec::opset`] may
//! ask for 18 to 22 ([`MIN_OPSET`], [`MAX_OPSET`]), and the IR version is always the one
//! the `onnx` project released with that opset ([`ir_version_for`]). Why 18:
//! - it is the first opset where the `Reduce*` ops take `axes` as an input, which the pooling
//!   and normalization converters rely on, and it has `LayerNormalization` (17) and
//!   `Mish` (18) as single ops; supporting older opsets would need a second code path for
//!   each of them;
//! - ONNX Runtime has supported it since 1.14 (ORT 1.31, which Thunderbolt ships, goes far
//!   beyond), and the `onnx` 1.23 checker accepts it with `full_check=True`; both are
//!   tested (`tests/fixtures.rs`);
//! - the lowest matching IR version (8) keeps the files loadable by older runtimes too.
//!   `Gelu` (opset 20) is not used; GELU is built from `Erf`/`Tanh` so it works at 18.
//!
//! # Guarantees
//! - Deterministic: the same spec gives the same bytes (layers are sorted by a stable
//!   topological order, names are allocated in emission order).
//! - Inputs and outputs carry exactly the names the caller chose; weights become
//!   initializers named `<layer>/<weight>`.
//! - Everything is validated before the first node is emitted: names, references, cycles,
//!   weight counts, shapes and dtypes, each error naming the layer ([`BuildError`]).
//!
//! Custom layers: implement [`LayerConverter`] and [`LayerRegistry::register`] it, then call
//! [`build_with`].

mod activation;
mod builder;
mod config;
mod einsum;
mod error;
mod graph;
pub mod layers;
mod masks;
mod registry;
mod shape;
mod spec;
mod tensor;

pub use activation::{Activation, ACTIVATION_NAMES};
pub use builder::{ir_version_for, DEFAULT_OPSET, MAX_OPSET, MIN_OPSET};
pub use config::Config;
pub use error::BuildError;
pub use graph::{attr_float, attr_int, attr_ints, GraphBuilder};
pub use onnx_protobuf;
pub use registry::{
    concatenated_mask_source, LayerConverter, LayerRegistry, MadeMask, Masking, ValueRef,
};
pub use shape::{broadcast, format_shape, normalize_axis, static_product, Dim, TensorInfo};
pub use spec::{Input, Layer, ModelSpec, Output};
pub use tensor::{DType, Tensor};

use onnx_protobuf::{Message, ModelProto};
use std::sync::OnceLock;

fn default_registry() -> &'static LayerRegistry {
    static REGISTRY: OnceLock<LayerRegistry> = OnceLock::new();
    REGISTRY.get_or_init(LayerRegistry::default)
}

/// Builds the model with the built-in converters and serializes it.
pub fn build(spec: &ModelSpec) -> Result<Vec<u8>, BuildError> {
    build_with(spec, default_registry())
}

/// Builds the model with the built-in converters.
pub fn build_model(spec: &ModelSpec) -> Result<ModelProto, BuildError> {
    build_model_with(spec, default_registry())
}

/// Builds the model with the converters of `registry` and serializes it.
pub fn build_with(spec: &ModelSpec, registry: &LayerRegistry) -> Result<Vec<u8>, BuildError> {
    serialize(&build_model_with(spec, registry)?)
}

/// Builds the model with the converters of `registry`.
pub fn build_model_with(
    spec: &ModelSpec,
    registry: &LayerRegistry,
) -> Result<ModelProto, BuildError> {
    builder::build_model_with(spec, registry)
}

/// Like [`build`], consuming the spec: the weights' bytes move into the model instead of
/// being copied, so peak memory is about twice the weights (model plus serialized bytes)
/// rather than three times.
pub fn build_owned(spec: ModelSpec) -> Result<Vec<u8>, BuildError> {
    serialize(&build_model_owned_with(spec, default_registry())?)
}

/// Like [`build_model`], consuming the spec and moving the weights into the model.
pub fn build_model_owned(spec: ModelSpec) -> Result<ModelProto, BuildError> {
    build_model_owned_with(spec, default_registry())
}

/// Like [`build_model_with`], consuming the spec and moving the weights into the model.
pub fn build_model_owned_with(
    spec: ModelSpec,
    registry: &LayerRegistry,
) -> Result<ModelProto, BuildError> {
    builder::build_model_owned(spec, registry)
}

/// Serializes a model, refusing one over protobuf's 2 GiB limit.
pub fn serialize(model: &ModelProto) -> Result<Vec<u8>, BuildError> {
    encoded_len(model)?;
    Ok(model.write_to_bytes()?)
}

/// The serialized size of `model`, refusing one over protobuf's 2 GiB limit. Call it
/// before [`encode_into`]: it caches the nested sizes that encoding uses.
pub fn encoded_len(model: &ModelProto) -> Result<usize, BuildError> {
    let size = model.compute_size();
    if size > i32::MAX as u64 {
        return Err(BuildError::TooLarge { size });
    }
    Ok(size as usize)
}

/// Serializes `model` into `out`, which must be exactly [`encoded_len`] bytes long (for
/// example a BEAM binary allocated by the caller, to avoid an intermediate `Vec`).
pub fn encode_into(model: &ModelProto, out: &mut [u8]) -> Result<(), BuildError> {
    let len = out.len();
    let mut os = protobuf::CodedOutputStream::bytes(out);
    model.write_to_with_cached_sizes(&mut os)?;
    os.flush()?;
    let written = os.total_bytes_written();
    if written != len as u64 {
        return Err(BuildError::InvalidSpec(format!(
            "encode_into: buffer of {len} bytes, model of {written} bytes; call encoded_len first"
        )));
    }
    Ok(())
}
