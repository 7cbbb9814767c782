//! The model description the builder consumes: inputs, layers with Keras configs and
//! weights, and outputs.

use crate::error::BuildError;
use crate::tensor::{DType, Tensor};

/// A graph input. `shape` is the full shape including the batch dimension; `None` marks a
/// dynamic dimension.
#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<Option<usize>>,
}

/// One Keras layer.
#[derive(Debug, Clone, PartialEq)]
pub struct Layer {
    /// Unique among inputs and layers; becomes the prefix of the layer's ONNX node and
    /// initializer names and appears in every error about the layer.
    pub name: String,
    /// The Keras class name (`"Dense"`, `"Embedding"`, ...), looked up in the
    /// [`LayerRegistry`](crate::LayerRegistry).
    pub class_name: String,
    /// The Keras layer config object, with Keras key names. Keys the converter does not need
    /// (initializers, regularizers, `trainable`, ...) are ignored.
    pub config: serde_json::Value,
    /// Names of the inputs or layers whose output this layer consumes, in call order.
    pub inbound: Vec<String>,
    /// Weights in Keras `layer.weights` order and Keras layouts.
    pub weights: Vec<Tensor>,
}

/// A graph output: the ONNX output `name` carries the value of `source` (a layer or input).
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    pub name: String,
    pub source: String,
}

/// A whole model. Layers may be listed in any order; the builder sorts them.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSpec {
    /// The ONNX graph name.
    pub name: String,
    pub inputs: Vec<Input>,
    pub layers: Vec<Layer>,
    pub outputs: Vec<Output>,
    /// The ONNX opset to target; `None` means [`DEFAULT_OPSET`](crate::DEFAULT_OPSET).
    pub opset: Option<i64>,
}

impl Layer {
    /// An [`BuildError::InvalidLayer`] about this layer.
    pub fn error(&self, message: impl Into<String>) -> BuildError {
        BuildError::InvalidLayer {
            layer: self.name.clone(),
            class_name: self.class_name.clone(),
            message: message.into(),
        }
    }

    /// An [`BuildError::UnsupportedDtype`] about this layer's `what` (an input or a weight).
    pub fn dtype_error(&self, what: &str, dtype: DType, expected: &str) -> BuildError {
        BuildError::UnsupportedDtype {
            context: format!("layer {:?} ({}) {what}", self.name, self.class_name),
            dtype: dtype.name().to_string(),
            expected: expected.to_string(),
        }
    }
}
