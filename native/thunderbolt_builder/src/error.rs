//! The one error type of the builder. Every variant that concerns a layer names it.

/// Why a [`ModelSpec`](crate::ModelSpec) could not be turned into an ONNX model.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("invalid model spec: {0}")]
    InvalidSpec(String),

    #[error("duplicate name {name:?}: {message}")]
    DuplicateName { name: String, message: String },

    #[error("{from} refers to {reference:?}, which is neither an input nor a layer")]
    DanglingReference { from: String, reference: String },

    #[error("layers form a cycle: {}", .layers.join(", "))]
    Cycle { layers: Vec<String> },

    #[error("layer {layer:?}: unknown layer type {class_name:?} (supported: {supported})")]
    UnknownLayer {
        layer: String,
        class_name: String,
        supported: String,
    },

    #[error(
        "layer {layer:?} ({class_name}): expects {expected} weight tensor(s) [{names}], got {got}"
    )]
    WeightCount {
        layer: String,
        class_name: String,
        expected: usize,
        got: usize,
        names: String,
    },

    #[error(
        "layer {layer:?} ({class_name}): weight {weight:?} has shape {got:?}, expected {expected}"
    )]
    WeightShape {
        layer: String,
        class_name: String,
        weight: String,
        got: Vec<usize>,
        expected: String,
    },

    #[error("{context}: unsupported dtype {dtype} (supported here: {expected})")]
    UnsupportedDtype {
        context: String,
        dtype: String,
        expected: String,
    },

    #[error("layer {layer:?} ({class_name}): {message}")]
    InvalidLayer {
        layer: String,
        class_name: String,
        message: String,
    },

    #[error("{context}: {message}")]
    InvalidTensor { context: String, message: String },

    #[error("unsupported opset {opset} (supported: {min} to {max})")]
    UnsupportedOpset { opset: i64, min: i64, max: i64 },

    #[error("the model would be {size} bytes, over protobuf's 2 GiB message limit")]
    TooLarge { size: u64 },

    #[error("failed to serialize the ONNX model: {0}")]
    Encode(#[from] protobuf::Error),
}
