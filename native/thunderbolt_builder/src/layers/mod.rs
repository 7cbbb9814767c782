//! One converter per Keras layer (or family of layers sharing one ONNX pattern), each
//! registered in [`crate::registry`]. The helpers below are the checks every converter
//! needs; custom converters outside this crate can use them too.

pub mod activation;
pub mod add_constant;
pub mod batch_normalization;
pub mod concatenate;
pub mod dense;
pub mod embedding;
pub mod flatten;
pub mod global_pooling;
pub mod identity;
pub mod layer_normalization;
pub mod merge;
pub mod reshape;
pub mod softmax;

use crate::error::BuildError;
use crate::shape::{format_shape, TensorInfo};
use crate::spec::Layer;
use crate::tensor::DType;

/// The float element types the math layers accept.
pub const FLOAT_TYPES: &str = "float32, float64, float16";

/// Checks that `layer` has exactly `n` inbound values.
pub fn expect_inputs<'a>(
    layer: &Layer,
    inputs: &'a [TensorInfo],
    n: usize,
) -> Result<&'a [TensorInfo], BuildError> {
    if inputs.len() != n {
        return Err(layer.error(format!("expects {n} input(s), got {}", inputs.len())));
    }
    Ok(inputs)
}

/// The one inbound value of a single-input layer.
pub fn single_input<'a>(
    layer: &Layer,
    inputs: &'a [TensorInfo],
) -> Result<&'a TensorInfo, BuildError> {
    Ok(&expect_inputs(layer, inputs, 1)?[0])
}

/// Checks the number of weights; `names` are the Keras weight names, in order.
pub fn expect_weights(layer: &Layer, names: &[&str]) -> Result<(), BuildError> {
    if layer.weights.len() != names.len() {
        return Err(BuildError::WeightCount {
            layer: layer.name.clone(),
            class_name: layer.class_name.clone(),
            expected: names.len(),
            got: layer.weights.len(),
            names: names.join(", "),
        });
    }
    Ok(())
}

/// Checks the shape of weight `index` (named `name` in errors) against `expected`.
pub fn expect_weight_shape(
    layer: &Layer,
    index: usize,
    name: &str,
    expected: &[usize],
) -> Result<(), BuildError> {
    let got = &layer.weights[index].shape;
    if got.as_slice() != expected {
        let expected: Vec<_> = expected.iter().map(|&d| Some(d)).collect();
        return Err(weight_shape_error(
            layer,
            name,
            got,
            format_shape(&expected),
        ));
    }
    Ok(())
}

/// A [`BuildError::WeightShape`] with a free-form description of the expected shape.
pub fn weight_shape_error(
    layer: &Layer,
    name: &str,
    got: &[usize],
    expected: String,
) -> BuildError {
    BuildError::WeightShape {
        layer: layer.name.clone(),
        class_name: layer.class_name.clone(),
        weight: name.to_string(),
        got: got.to_vec(),
        expected,
    }
}

/// Checks that a value is a float tensor.
pub fn require_float(layer: &Layer, what: &str, dtype: DType) -> Result<(), BuildError> {
    if !dtype.is_float() {
        return Err(layer.dtype_error(what, dtype, FLOAT_TYPES));
    }
    Ok(())
}

/// Checks that weight `index` has the same element type as the value it combines with.
pub fn require_weight_dtype(
    layer: &Layer,
    index: usize,
    name: &str,
    dtype: DType,
) -> Result<(), BuildError> {
    let got = layer.weights[index].dtype;
    if got != dtype {
        return Err(layer.dtype_error(
            &format!("weight {name:?}"),
            got,
            &format!("{dtype}, the type of its input"),
        ));
    }
    Ok(())
}
