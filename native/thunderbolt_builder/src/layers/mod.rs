//! One converter per Keras layer (or family of layers sharing one ONNX pattern), each
//! registered in [`crate::registry`]. The helpers below are the checks every converter
//! needs; custom converters outside this crate can use them too.

pub mod activation;
pub mod activation_classes;
pub mod add_constant;
pub mod attention;
pub mod augmentation;
pub mod batch_normalization;
pub mod bidirectional;
pub mod category_encoding;
pub mod center_crop;
pub mod concatenate;
pub mod conv;
pub mod conv_transpose;
pub mod cropping;
pub mod dense;
pub mod depthwise_conv;
pub mod discretization;
pub mod dot;
pub mod einsum_dense;
pub mod embedding;
pub mod flatten;
pub mod global_pooling;
pub mod group_normalization;
pub mod identity;
pub mod interleaved_rope;
pub mod keras_operation;
pub mod layer_normalization;
pub mod masking;
pub mod merge;
pub mod multi_head_attention;
pub mod normalization;
pub mod permute;
pub mod pooling;
pub mod prelu;
pub mod recurrent;
pub mod repeat_vector;
pub mod rescaling;
pub mod reshape;
pub mod resizing;
pub mod rms_normalization;
pub mod softmax;
pub mod spatial;
pub mod time_distributed;
pub mod unit_normalization;
pub mod upsampling;
pub mod zero_padding;

use crate::error::BuildError;
use crate::graph::GraphBuilder;
use crate::registry::Masking;
use crate::shape::{format_shape, TensorInfo};
use crate::spec::Layer;
use crate::tensor::DType;

/// The float element types the math layers accept.
pub const FLOAT_TYPES: &str = "float32, float64, float16";

/// The most elements a converter computes a constant of from the shapes
/// alone (a table, a default scale): 2^26, 256 MiB of float32. The shapes
/// come from the caller's spec or a `.keras` file, so without a bound a
/// declared `[batch, 10^9, 10^6]` asked for petabytes and aborted the VM.
pub const MAX_GENERATED_ELEMENTS: usize = 1 << 26;

/// The element count of a constant of `shape` that `layer` generates, or
/// an error when it is above [`MAX_GENERATED_ELEMENTS`].
pub fn generated_len(layer: &Layer, shape: &[usize]) -> Result<usize, BuildError> {
    shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .filter(|&n| n <= MAX_GENERATED_ELEMENTS)
        .ok_or_else(|| {
            layer.error(format!(
                "would compute a constant of shape {shape:?}, more than {MAX_GENERATED_ELEMENTS} elements"
            ))
        })
}

/// The type a layer that computes in Keras' compute dtype gives for an input of `dtype`:
/// float inputs keep their type, integer inputs become float32 (as Keras casts them).
/// Bool inputs are refused.
pub fn float_output(layer: &Layer, dtype: DType) -> Result<DType, BuildError> {
    match dtype {
        DType::Bool => Err(layer.dtype_error("input", dtype, "a number type")),
        d if d.is_float() => Ok(d),
        _ => Ok(DType::F32),
    }
}

/// Whether a layer follows Keras 2's (tf.keras) rules rather than Keras 3's where they
/// differ (masks, `hard_sigmoid`): config `"keras_2": true`, which the Keras importer sets
/// on every layer of a Keras 2 file.
pub fn saved_by_keras_2(layer: &Layer) -> bool {
    layer.config.get("keras_2") == Some(&serde_json::Value::Bool(true))
}

/// The minor release of the Keras 3 that saved `layer`: its config's `"keras_version"`
/// (`"3.6"`), which the importer writes for the layers whose conversion depends on it.
pub fn keras_3_minor(layer: &Layer) -> Option<u32> {
    let release = layer.config.get("keras_version")?.as_str()?;
    let (major, rest) = release.split_once('.')?;
    let minor = rest.split('.').next()?.parse().ok()?;
    (major == "3").then_some(minor)
}

/// Whether `layer` computes as Keras 3.`minor` and later do: a Keras 3 layer of that release
/// or a later one, or of no known release (taken as the latest); never a Keras 2 file's.
pub fn keras_3_from(layer: &Layer, minor: u32) -> bool {
    !saved_by_keras_2(layer) && keras_3_minor(layer).is_none_or(|m| m >= minor)
}

/// For a layer that Keras 3 made `supports_masking` (its `call` ignoring the mask) where
/// Keras 2 did not: it passes a mask on, except in a Keras 2 file, where the mask ends.
pub fn propagates_since_keras_3(layer: &Layer) -> Masking {
    if saved_by_keras_2(layer) {
        Masking::Drops
    } else {
        Masking::Propagates
    }
}

/// `x` (typed `from`) as a value of type `to`: itself, or a `Cast` named after `layer`.
pub fn cast_to(g: &mut GraphBuilder, layer: &Layer, x: &str, from: DType, to: DType) -> String {
    if from == to {
        return x.to_string();
    }
    let attr = crate::graph::attr_int("to", to.onnx() as i64);
    g.node("Cast", &[x], &format!("{}/Cast", layer.name), vec![attr])
}

/// `axis` (negative counts from the end) as an index into a shape of `rank`, or the
/// error that names the layer.
pub fn checked_axis(layer: &Layer, axis: i64, rank: usize) -> Result<usize, BuildError> {
    crate::shape::normalize_axis(axis, rank).ok_or_else(|| {
        layer.error(format!(
            "axis {axis} is out of range for an input of rank {rank}"
        ))
    })
}

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
        let expected = crate::shape::static_dims(expected);
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

#[cfg(test)]
mod tests {
    use crate::spec::{Input, Layer, ModelSpec, Output};
    use crate::tensor::{DType, Tensor};
    use serde_json::{json, Value};

    fn f32s(shape: &[usize]) -> Tensor {
        Tensor::from_f32(shape.to_vec(), &vec![0.5; shape.iter().product()])
    }

    /// Builds one layer of class `class` reading an f32 input of `shape` and returns the error.
    fn reject(
        shape: &[Option<usize>],
        class: &str,
        config: Value,
        weights: Vec<Tensor>,
        inputs: usize,
    ) -> String {
        let spec = ModelSpec {
            name: "t".into(),
            inputs: (0..inputs)
                .map(|i| Input {
                    name: format!("x{i}"),
                    dtype: DType::F32,
                    shape: shape.to_vec(),
                })
                .collect(),
            layers: vec![Layer {
                name: "l".into(),
                class_name: class.into(),
                config,
                inbound: (0..inputs).map(|i| format!("x{i}")).collect(),
                weights,
            }],
            outputs: vec![Output {
                name: "y".into(),
                source: "l".into(),
            }],
            opset: None,
        };
        crate::build(&spec)
            .expect_err("should be rejected")
            .to_string()
    }

    #[test]
    fn each_converter_rejects_what_it_cannot_convert() {
        let s4 = [None, Some(3), Some(4), Some(5)];
        let s3 = [None, Some(3), Some(4)];
        let s2 = [None, Some(4)];
        let cases: Vec<(String, &str)> = vec![
            (reject(&s2, "Embedding", json!({"mask_zero": "yes"}), vec![f32s(&[5, 2])], 1), "\"mask_zero\" must be a boolean"),
            (reject(&s2, "Embedding", json!({"input_dim": 6}), vec![f32s(&[5, 2])], 1), "weight \"embeddings\" has shape [5, 2], expected (input_dim, output_dim) = (6, ?)"),
            (reject(&s2, "Dense", json!({"units": 3, "activation": "nope"}), vec![f32s(&[4, 3]), f32s(&[3])], 1), "unknown activation \"nope\""),
            (reject(&s2, "Dense", json!({"units": 3}), vec![f32s(&[4, 3]), f32s(&[2])], 1), "weight \"bias\" has shape [2], expected (3,)"),
            (reject(&[None, None], "Dense", json!({}), vec![f32s(&[4, 3]), f32s(&[3])], 1), "last dimension of the input must be static"),
            (reject(&s2, "Dense", json!({}), vec![f32s(&[4, 3]), f32s(&[3])], 2), "expects 1 input(s), got 2"),
            (reject(&s2, "Activation", json!({}), vec![], 1), "config key \"activation\" is required"),
            (reject(&s2, "Activation", json!({"activation": "relu"}), vec![f32s(&[1])], 1), "expects 0 weight tensor(s)"),
            (reject(&s2, "Softmax", json!({"axis": 2}), vec![], 1), "axis 2 is out of range for an input of rank 2"),
            (reject(&s2, "GlobalAveragePooling1D", json!({}), vec![], 1), "expects an input of rank 3"),
            (reject(&s3, "GlobalMaxPooling1D", json!({"data_format": "nhwc"}), vec![], 1), "data_format must be"),
            (reject(&s3, "Reshape", json!({"target_shape": [5, -1]}), vec![], 1), "cannot reshape input of shape (None, 3, 4) to target_shape [5, -1]"),
            (reject(&s3, "Reshape", json!({"target_shape": [-1, -1]}), vec![], 1), "more than one -1"),
            (reject(&s3, "Reshape", json!({"target_shape": [4_294_967_296_i64, 4_294_967_296_i64, -1]}), vec![], 1), "cannot reshape input of shape (None, 3, 4)"),
            (reject(&s3, "Reshape", json!({}), vec![], 1), "\"target_shape\" is required"),
            (reject(&s3, "Concatenate", json!({"axis": 3}), vec![], 2), "axis 3 is out of range"),
            (reject(&s3, "Subtract", json!({}), vec![], 3), "expects exactly 2 inputs, got 3"),
            (reject(&s3, "BatchNormalization", json!({}), vec![f32s(&[4]), f32s(&[4]), f32s(&[4])], 1), "expects 4 weight tensor(s) [gamma, beta, moving_mean, moving_variance], got 3"),
            (reject(&s3, "BatchNormalization", json!({"axis": 1, "center": false}), vec![f32s(&[3]), f32s(&[3]), f32s(&[4])], 1), "weight \"moving_variance\" has shape [4], expected (3,)"),
            (reject(&s3, "LayerNormalization", json!({"axis": [2, 1]}), vec![f32s(&[4, 3]), f32s(&[4, 3])], 1), "distinct axes in increasing order"),
            (reject(&s3, "LayerNormalization", json!({"rms_scaling": true}), vec![f32s(&[4])], 1), "rms_scaling=true is not supported"),
            (reject(&s3, "LayerNormalization", json!({"axis": -1}), vec![f32s(&[3]), f32s(&[3])], 1), "weight \"gamma\" has shape [3], expected (4,)"),
            (reject(&s3, "AddConstant", json!({}), vec![f32s(&[5, 4])], 1), "weight \"constant\" has shape [5, 4], expected a shape that broadcasts with the input shape (None, 3, 4)"),
            (reject(&s3, "AddConstant", json!({}), vec![Tensor::from_i32(vec![4], &[1; 4])], 1), "weight \"constant\": unsupported dtype int32"),
            (reject(&s3, "ReLU", json!({"max_value": -1}), vec![], 1), "max_value must be at least 0"),
            (reject(&s3, "LeakyReLU", json!({}), vec![f32s(&[1])], 1), "expects 0 weight tensor(s)"),
            (reject(&s3, "PReLU", json!({}), vec![f32s(&[4])], 1), "weight \"alpha\" has shape [4], expected the input shape without its batch axis, (3, 4), with 1 on shared axes"),
            (reject(&s3, "PReLU", json!({}), vec![f32s(&[3, 2])], 1), "weight \"alpha\" has shape [3, 2]"),
            (reject(&s3, "Normalization", json!({"axis": [-1]}), vec![f32s(&[4]), f32s(&[4])], 1), "expects 3 weight tensor(s) [mean, variance, count], got 2"),
            (reject(&s3, "Normalization", json!({"axis": [1]}), vec![f32s(&[4]), f32s(&[4]), f32s(&[1])], 1), "weight \"mean\" has shape [4], expected (3,)"),
            (reject(&s3, "Normalization", json!({"axis": [3]}), vec![], 1), "axis 3 is out of range for an input of rank 3"),
            (reject(&s3, "Normalization", json!({"mean": 1.0}), vec![], 1), "needs both \"mean\" and \"variance\", or neither"),
            (reject(&s3, "Normalization", json!({"mean": [1, 2, 3], "variance": 1}), vec![], 1), "config \"mean\" of shape [3] does not broadcast to [1, 1, 4]"),
            (reject(&s3, "Normalization", json!({"mean": [1, [2]], "variance": 1}), vec![], 1), "rectangular lists"),
            (reject(&[None, None, Some(4)], "Normalization", json!({"axis": [1, 2], "mean": 0, "variance": 1}), vec![], 1), "the kept axis 1 of input shape (None, None, 4) must be static"),
            (reject(&s3, "LSTM", json!({"units": 2}), vec![f32s(&[3, 8]), f32s(&[2, 8]), f32s(&[8])], 1), "weight \"kernel\" has shape [3, 8], expected (4, 8)"),
            (reject(&s2, "GRU", json!({"units": 2}), vec![], 1), "expects an input of rank 3 (batch, steps, features)"),
            (reject(&s3, "GRU", json!({"units": 2}), vec![f32s(&[4, 6]), f32s(&[2, 6]), f32s(&[6])], 1), "weight \"bias\" has shape [6], expected (2, 6)"),
            (reject(&s3, "SimpleRNN", json!({"units": 2, "return_state": true}), vec![], 1), "return_state=true is not supported"),
            (reject(&s3, "Bidirectional", json!({"layer": {"class_name": "Dense", "config": {"units": 2}}}), vec![], 1), "layer must be an LSTM, GRU or SimpleRNN, got \"Dense\""),
            (reject(&s3, "Bidirectional", json!({"layer": {"class_name": "LSTM", "config": {"units": 2}}, "merge_mode": null}), vec![], 1), "merge_mode=None (two outputs) is not supported"),
            (reject(&s3, "Bidirectional", json!({"layer": {"class_name": "LSTM", "config": {"units": 2}}, "backward_layer": {"class_name": "GRU", "config": {"units": 2, "go_backwards": true}}, "merge_mode": "concat"}), vec![], 1), "the backward layer differs from the forward layer"),
            (reject(&s3, "Conv1D", json!({"filters": 2, "kernel_size": 2}), vec![f32s(&[2, 3, 2]), f32s(&[2])], 1), "weight \"kernel\" has shape [2, 3, 2], expected (2, 4, 2)"),
            (reject(&s3, "Conv1D", json!({"filters": 2, "kernel_size": 4}), vec![f32s(&[4, 4, 2]), f32s(&[2])], 1), "a window of 4 does not fit an input of shape (None, 3, 4)"),
            (reject(&s3, "Conv1D", json!({"filters": 3, "kernel_size": 1, "groups": 2}), vec![], 1), "groups 2 must divide both the input channels 4 and filters 3"),
            (reject(&s3, "Conv1D", json!({"filters": 2, "kernel_size": [1, 1]}), vec![], 1), "\"kernel_size\" must be a positive integer or a list of 1"),
            (reject(&s3, "Conv1D", json!({"filters": 2, "kernel_size": 1, "padding": "full"}), vec![], 1), "padding \"full\" is not supported"),
            (reject(&s3, "MaxPooling1D", json!({"pool_size": 4}), vec![], 1), "a pool of 4 does not fit"),
            (reject(&s3, "AveragePooling1D", json!({"padding": "causal"}), vec![], 1), "padding \"causal\" is not supported"),
            (reject(&s2, "MaxPooling1D", json!({}), vec![], 1), "expects an input of rank 3 (batch, steps, channels)"),
            (reject(&s3, "Conv2D", json!({"filters": 2, "kernel_size": 1}), vec![], 1), "expects an input of rank 4 (batch, rows, columns, channels)"),
            (reject(&s4, "Conv2D", json!({"filters": 2, "kernel_size": [2, 3]}), vec![f32s(&[2, 2, 5, 2]), f32s(&[2])], 1), "weight \"kernel\" has shape [2, 2, 5, 2], expected (2, 3, 5, 2)"),
            (reject(&s4, "Conv2D", json!({"filters": 2, "kernel_size": [4, 1]}), vec![f32s(&[4, 1, 5, 2]), f32s(&[2])], 1), "a window of [4, 1] does not fit an input of shape (None, 3, 4, 5)"),
            (reject(&s4, "Conv2D", json!({"filters": 2, "kernel_size": [1, 1, 1]}), vec![], 1), "\"kernel_size\" must be a positive integer or a list of 2"),
            (reject(&s4, "Conv2D", json!({"filters": 2, "kernel_size": 2, "strides": 2, "dilation_rate": [1, 2]}), vec![], 1), "strides and dilation_rate cannot both be above 1"),
            (reject(&s4, "Conv2D", json!({"filters": 2, "kernel_size": 2, "padding": "causal"}), vec![], 1), "padding \"causal\" is not supported"),
            (reject(&s4, "Conv3D", json!({"filters": 2, "kernel_size": 2}), vec![], 1), "expects an input of rank 5 (batch, spatial axes, channels)"),
            (reject(&s4, "DepthwiseConv2D", json!({"kernel_size": 2, "depth_multiplier": 2}), vec![f32s(&[2, 2, 5, 1]), f32s(&[10])], 1), "weight \"kernel\" has shape [2, 2, 5, 1], expected (2, 2, 5, 2)"),
            (reject(&s4, "DepthwiseConv2D", json!({"kernel_size": 2}), vec![f32s(&[2, 2, 5, 1]), f32s(&[4])], 1), "weight \"bias\" has shape [4], expected (5,)"),
            (reject(&s4, "SeparableConv2D", json!({"kernel_size": 2, "filters": 3}), vec![f32s(&[2, 2, 5, 1]), f32s(&[1, 1, 5, 3])], 1), "expects 3 weight tensor(s) [depthwise_kernel, pointwise_kernel, bias], got 2"),
            (reject(&s4, "SeparableConv2D", json!({"kernel_size": 2, "filters": 3, "use_bias": false}), vec![f32s(&[2, 2, 5, 1]), f32s(&[1, 5, 3])], 1), "weight \"pointwise_kernel\" has shape [1, 5, 3], expected (1, 1, 5, 3)"),
            (reject(&s4, "SeparableConv1D", json!({"kernel_size": 2, "filters": 3}), vec![], 1), "expects an input of rank 3 (batch, steps, channels)"),
            (reject(&s4, "MaxPooling2D", json!({"pool_size": [1, 5]}), vec![], 1), "a pool of [1, 5] does not fit an input of shape (None, 3, 4, 5)"),
            (reject(&s4, "AveragePooling2D", json!({"strides": [1, 0]}), vec![], 1), "\"strides\" must be a positive integer or a list of 2"),
            (reject(&s4, "GlobalAveragePooling2D", json!({"data_format": "channels_middle"}), vec![], 1), "data_format must be"),
            (reject(&s3, "GlobalMaxPooling2D", json!({}), vec![], 1), "expects an input of rank 4"),
            (reject(&s4, "ZeroPadding2D", json!({"padding": [[1, 2, 3], [1, 1]]}), vec![], 1), "\"padding\" must be a non-negative integer, a list of 2 or a list of 2 pairs"),
            (reject(&s4, "ZeroPadding2D", json!({"padding": -1}), vec![], 1), "\"padding\" must be a non-negative integer"),
            (reject(&s4, "Cropping2D", json!({"cropping": [[1, 2], [0, 0]]}), vec![], 1), "cropping 1 and 2 leaves nothing of an axis of 3"),
            (reject(&s4, "Cropping3D", json!({}), vec![], 1), "expects an input of rank 5"),
            (reject(&s4, "UpSampling2D", json!({"interpolation": "bicubic"}), vec![], 1), "interpolation \"bicubic\" is not supported"),
            (reject(&s3, "UpSampling1D", json!({"interpolation": "bilinear"}), vec![], 1), "interpolation \"bilinear\" is not supported"),
            (reject(&s4, "UpSampling2D", json!({"size": [2, 0]}), vec![], 1), "\"size\" must be a positive integer or a list of 2"),
            (reject(&s4, "Conv2D", json!({"filters": 2, "kernel_size": 1}), vec![Tensor::from_f64(vec![1, 1, 5, 2], &[0.0; 10]), f32s(&[2])], 1), "weight \"kernel\": unsupported dtype float64"),
            (reject(&s4, "Conv2DTranspose", json!({"filters": 2, "kernel_size": 3}), vec![f32s(&[3, 3, 5, 2]), f32s(&[2])], 1), "weight \"kernel\" has shape [3, 3, 5, 2], expected (3, 3, 2, 5)"),
            (reject(&s4, "Conv2DTranspose", json!({"filters": 2, "kernel_size": 3, "strides": 2, "output_padding": 2}), vec![], 1), "output_padding [2, 2] must be smaller than the strides [2, 2]"),
            (reject(&s4, "Conv2DTranspose", json!({"filters": 2, "kernel_size": 3, "output_padding": [1, -1]}), vec![], 1), "\"output_padding\" must be a non-negative integer or a list of 2"),
            (reject(&s4, "Conv2DTranspose", json!({"filters": 2, "kernel_size": 3, "padding": "causal"}), vec![], 1), "padding \"causal\" is not supported"),
            (reject(&s4, "Conv2DTranspose", json!({"filters": 2, "kernel_size": 3, "strides": 2, "dilation_rate": 2}), vec![], 1), "strides and dilation_rate cannot both be above 1"),
            (reject(&s4, "Conv1DTranspose", json!({"filters": 2, "kernel_size": 3}), vec![], 1), "expects an input of rank 3"),
            (reject(&s4, "Resizing", json!({"height": 2, "width": 2, "interpolation": "nearest"}), vec![], 1), "interpolation \"nearest\" is not supported (bilinear is)"),
            (reject(&s4, "Resizing", json!({"height": 2, "width": 2, "crop_to_aspect_ratio": true}), vec![], 1), "crop_to_aspect_ratio=true is not supported"),
            (reject(&s4, "Resizing", json!({"width": 2}), vec![], 1), "\"height\" must be a positive integer"),
            (reject(&s3, "Resizing", json!({"height": 2, "width": 2}), vec![], 1), "expects an input of rank 4"),
            (reject(&s4, "CenterCrop", json!({"height": 4, "width": 2}), vec![], 1), "needs static rows and columns of at least (4, 2), got an input of shape (None, 3, 4, 5)"),
            (reject(&[None, None, Some(4), Some(5)], "CenterCrop", json!({"height": 2, "width": 2}), vec![], 1), "needs static rows and columns"),
            (reject(&s3, "Dot", json!({"axes": [1, 2]}), vec![], 2), "the dot axes differ in size: 3 (axis 1 of (None, 3, 4)) and 4 (axis 2 of (None, 3, 4))"),
            (reject(&s3, "Dot", json!({"axes": 0}), vec![], 2), "cannot take the dot product over the batch axis"),
            (reject(&s3, "Dot", json!({}), vec![], 2), "config key \"axes\" is required"),
            (reject(&s3, "Dot", json!({"axes": [1, 2, 3]}), vec![], 2), "axes must be one integer or a list of two"),
            (reject(&s4, "Dot", json!({"axes": 1}), vec![], 2), "rank 2 or 3 alike"),
            (reject(&s3, "Dot", json!({"axes": 1}), vec![], 1), "expects 2 input(s), got 1"),
            (reject(&s3, "UnitNormalization", json!({"axis": 0}), vec![], 1), "axis must name axes other than the batch axis"),
            (reject(&s3, "UnitNormalization", json!({"axis": 3}), vec![], 1), "axis 3 is out of range for an input of rank 3"),
            (reject(&s3, "GroupNormalization", json!({"groups": 3}), vec![f32s(&[4]), f32s(&[4])], 1), "groups 3 must divide the 4 channels"),
            (reject(&s3, "GroupNormalization", json!({"groups": 2, "axis": 1}), vec![], 1), "only the last axis can hold the groups"),
            (reject(&s3, "GroupNormalization", json!({"groups": 2}), vec![f32s(&[4])], 1), "expects 2 weight tensor(s) [gamma, beta], got 1"),
            (reject(&s3, "GroupNormalization", json!({"groups": 2, "center": false}), vec![f32s(&[3])], 1), "weight \"gamma\" has shape [3], expected (4,)"),
            (reject(&[None, Some(3), None], "GroupNormalization", json!({"groups": 2}), vec![], 1), "the channels dimension must be static"),
            (reject(&s3, "Discretization", json!({"bin_boundaries": [1.0, 0.5]}), vec![], 1), "\"bin_boundaries\" must be a list of increasing numbers"),
            (reject(&s3, "Discretization", json!({"num_bins": 4}), vec![], 1), "\"bin_boundaries\" must be a list of increasing numbers (an adapted layer saves them there)"),
            (reject(&s3, "Discretization", json!({"bin_boundaries": [0.0], "output_mode": "count"}), vec![], 1), "Count encoding takes ids of shape (batch, n), got (None, 3, 4)"),
            (reject(&s3, "Discretization", json!({"bin_boundaries": [0.0], "output_mode": "tf_idf"}), vec![], 1), "output_mode \"tf_idf\" is not supported"),
            (reject(&s2, "CategoryEncoding", json!({"num_tokens": 3}), vec![], 1), "input: unsupported dtype float32"),
            (reject(&s3, "Permute", json!({"dims": [2, 2]}), vec![], 1), "dims [2, 2] must order the axes 1..2"),
            (reject(&s3, "Permute", json!({"dims": [0, 1]}), vec![], 1), "dims [0, 1] must order the axes 1..2"),
            (reject(&s3, "RepeatVector", json!({"n": 2}), vec![], 1), "expects an input of rank 2 (batch, features)"),
            (reject(&s2, "RepeatVector", json!({"n": 0}), vec![], 1), "\"n\" must be a positive integer"),
            (reject(&s3, "Rescaling", json!({"scale": [1, 2, 3]}), vec![], 1), "scale of shape [3] does not broadcast to the input shape (None, 3, 4)"),
            (reject(&s3, "Rescaling", json!({"offset": 1}), vec![], 1), "\"scale\" is required"),
            (reject(&s3, "MultiHeadAttention", json!({"num_heads": 2, "key_dim": 2}), vec![], 1), "expects 3 input(s), got 1"),
            (reject(&s3, "MultiHeadAttention", json!({"num_heads": 2, "key_dim": 2, "output_shape": 5}), vec![], 2), "output_shape is not supported"),
            (reject(&s3, "MultiHeadAttention", json!({"num_heads": 2, "key_dim": 2, "attention_axes": [2]}), vec![], 2), "attention_axes other than the steps axis"),
            (reject(&s3, "MultiHeadAttention", json!({"num_heads": 0, "key_dim": 2}), vec![], 2), "\"num_heads\" must be a positive integer"),
            (reject(&s3, "MultiHeadAttention", json!({"num_heads": 1, "key_dim": 2, "use_bias": false}), vec![f32s(&[4, 1, 2]), f32s(&[4, 1, 2]), f32s(&[4, 1, 3]), f32s(&[1, 2, 4])], 2), "weight \"value/kernel\" has shape [4, 1, 3], expected (4, 1, 2)"),
            (reject(&s2, "MultiHeadAttention", json!({"num_heads": 1, "key_dim": 2}), vec![], 2), "the query must have rank 3"),
            (reject(&s3, "TimeDistributed", json!({"layer": {"class_name": "LSTM", "config": {"units": 2}}}), vec![], 1), "wrapping LSTM is not supported"),
            (reject(&s3, "TimeDistributed", json!({}), vec![], 1), "\"layer\" (the wrapped layer) is required"),
            (reject(&s2, "TimeDistributed", json!({"layer": {"class_name": "Dense", "config": {"units": 2}}}), vec![f32s(&[4, 2]), f32s(&[2])], 1), "expects an input of rank 3 or more"),
            (reject(&s3, "TimeDistributed", json!({"layer": {"class_name": "Dense", "config": {"units": 2}}}), vec![f32s(&[3, 2]), f32s(&[2])], 1), "weight \"kernel\" has shape [3, 2]"),
            // Constants computed from declared shapes are bounded: these
            // once asked for petabytes and aborted the process.
            (reject(&[None, Some(1 << 30), Some(1 << 20)], "InterleavedRoPE", json!({}), vec![], 1), "more than 67108864 elements"),
            (reject(&[None, Some(1 << 60), Some(4)], "InterleavedRoPE", json!({}), vec![], 1), "more than 67108864 elements"),
            (reject(&[None, Some(1 << 30), Some(1 << 20)], "LayerNormalization", json!({"axis": [1, 2], "scale": false, "center": false}), vec![], 1), "more than 67108864 elements"),
        ];
        for (err, expected) in cases {
            assert!(
                err.contains("layer \"l\""),
                "error does not name the layer: {err}"
            );
            assert!(err.contains(expected), "expected {expected:?} in: {err}");
        }
    }

    #[test]
    fn concatenate_and_merge_need_compatible_shapes() {
        let spec = |class: &str| ModelSpec {
            name: "t".into(),
            inputs: vec![
                Input {
                    name: "a".into(),
                    dtype: DType::F32,
                    shape: vec![None, Some(2), Some(3)],
                },
                Input {
                    name: "b".into(),
                    dtype: DType::F32,
                    shape: vec![None, Some(4), Some(5)],
                },
            ],
            layers: vec![Layer {
                name: "m".into(),
                class_name: class.into(),
                config: json!({"axis": -1}),
                inbound: vec!["a".into(), "b".into()],
                weights: vec![],
            }],
            outputs: vec![Output {
                name: "y".into(),
                source: "m".into(),
            }],
            opset: None,
        };
        let err = crate::build(&spec("Concatenate")).unwrap_err().to_string();
        assert!(err.contains("input 1 of shape (None, 4, 5) cannot be concatenated with shape (None, 2, 3) along axis 2"), "{err}");
        let err = crate::build(&spec("Add")).unwrap_err().to_string();
        assert!(
            err.contains("input 1 of shape (None, 4, 5) does not match shape (None, 2, 3)"),
            "{err}"
        );
    }
}
