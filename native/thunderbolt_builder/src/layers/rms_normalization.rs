//! `RMSNormalization` → `x · 1 / sqrt(ReduceMean(x², axes) + ε) · scale`, as Keras'
//! `ops.rms_normalization` computes it: in float32 at least (a float16 input is cast up
//! and its result cast back), the scale multiplied with NumPy broadcasting. The helper
//! [`rms_normalize`] also serves `keras.ops.rms_normalization` in
//! [`super::keras_operation`].

use super::{checked_axis, expect_weights, require_float, require_weight_dtype, single_input};
use crate::config::Config;
use crate::error::BuildError;
use crate::graph::{attr_int, GraphBuilder};
use crate::registry::{LayerConverter, Masking, ValueRef};
use crate::shape::{broadcast, format_shape, static_dims, Dim, TensorInfo};
use crate::spec::Layer;
use crate::tensor::DType;

pub struct RmsNormalization;

/// The type Keras' `rms_normalization` and `layer_normalization` compute `dtype` in:
/// float32 at least.
pub(crate) fn normalization_type(dtype: DType) -> DType {
    if dtype == DType::F16 {
        DType::F32
    } else {
        dtype
    }
}

/// The normalized axes of `key` (an integer or a list, default -1), sorted.
pub(crate) fn norm_axes(layer: &Layer, key: &str, rank: usize) -> Result<Vec<usize>, BuildError> {
    let mut axes = Config::of(layer)?
        .axes_or(key, -1)?
        .into_iter()
        .map(|a| checked_axis(layer, a, rank))
        .collect::<Result<Vec<_>, _>>()?;
    axes.sort_unstable();
    if axes.windows(2).any(|w| w[0] == w[1]) || axes.is_empty() {
        return Err(layer.error(format!("config key {key:?} must name distinct axes")));
    }
    Ok(axes)
}

/// Checks that a scale of `scale` multiplies `x` without changing its shape.
pub(crate) fn check_scale(layer: &Layer, x: &[Dim], scale: &[Dim]) -> Result<(), BuildError> {
    if broadcast(x, scale).as_deref() == Some(x) {
        return Ok(());
    }
    Err(layer.error(format!(
        "a scale of shape {} does not broadcast to the input's shape {}",
        format_shape(scale),
        format_shape(x)
    )))
}

/// `x · rsqrt(mean(x², axes) + epsilon) · scale` into `output`; `scale` is a value and
/// its type, or none.
pub(crate) fn rms_normalize(
    g: &mut GraphBuilder,
    x: ValueRef<'_>,
    axes: &[usize],
    epsilon: f64,
    scale: Option<(&str, DType)>,
    hint: &str,
    output: &str,
) {
    let dtype = x.info.dtype;
    let compute = normalization_type(dtype);
    let to = |d: DType| vec![attr_int("to", d.onnx() as i64)];
    let value = if compute == dtype {
        x.name.to_string()
    } else {
        g.node("Cast", &[x.name], &format!("{hint}/Cast"), to(compute))
    };
    let squares = g.node("Mul", &[&value, &value], &format!("{hint}/squares"), vec![]);
    let axes: Vec<i64> = axes.iter().map(|&a| a as i64).collect();
    let axes = g.int64s(&format!("{hint}/axes"), &axes);
    let mean = g.node(
        "ReduceMean",
        &[&squares, &axes],
        &format!("{hint}/mean_square"),
        vec![attr_int("keepdims", 1)],
    );
    let epsilon = g.scalar(&format!("{hint}/epsilon"), compute, epsilon);
    let shifted = g.node(
        "Add",
        &[&mean, &epsilon],
        &format!("{hint}/plus_epsilon"),
        vec![],
    );
    let rms = g.node("Sqrt", &[&shifted], &format!("{hint}/rms"), vec![]);
    let inverse = g.node(
        "Reciprocal",
        &[&rms],
        &format!("{hint}/inverse_rms"),
        vec![],
    );
    let last = match (scale, compute == dtype) {
        (None, true) => output.to_string(),
        _ => g.fresh(&format!("{hint}/normalized")),
    };
    g.node_into("Mul", &[&value, &inverse], &last, vec![]);
    let last = match scale {
        None => last,
        Some((scale, scale_type)) => {
            let scale = if scale_type == compute {
                scale.to_string()
            } else {
                g.node("Cast", &[scale], &format!("{hint}/scale_Cast"), to(compute))
            };
            let scaled = if compute == dtype {
                output.to_string()
            } else {
                g.fresh(&format!("{hint}/scaled"))
            };
            g.node_into("Mul", &[&last, &scale], &scaled, vec![]);
            scaled
        }
    };
    if compute != dtype {
        g.node_into("Cast", &[&last], output, to(dtype));
    }
}

impl LayerConverter for RmsNormalization {
    // Keras: no `supports_masking` and no `compute_mask`, so the mask ends here.
    fn masking(&self, _layer: &Layer) -> Masking {
        Masking::Drops
    }

    fn infer(&self, layer: &Layer, inputs: &[TensorInfo]) -> Result<TensorInfo, BuildError> {
        let x = single_input(layer, inputs)?;
        require_float(layer, "input", x.dtype)?;
        expect_weights(layer, &["scale"])?;
        require_weight_dtype(layer, 0, "scale", x.dtype)?;
        norm_axes(layer, "axis", x.rank())?;
        let scale = static_dims(&layer.weights[0].shape);
        check_scale(layer, &x.shape, &scale)?;
        Ok(x.clone())
    }

    fn emit(
        &self,
        layer: &Layer,
        inputs: &[ValueRef<'_>],
        output: ValueRef<'_>,
        g: &mut GraphBuilder,
    ) -> Result<String, BuildError> {
        let axes = norm_axes(layer, "axis", inputs[0].info.rank())?;
        let epsilon = Config::of(layer)?.f64_or("epsilon", 1e-6)?;
        let scale = g.initializer(&format!("{}/scale", layer.name), &layer.weights[0]);
        rms_normalize(
            g,
            inputs[0],
            &axes,
            epsilon,
            Some((&scale, inputs[0].info.dtype)),
            &layer.name,
            output.name,
        );
        Ok(output.name.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::Tensor;
    use serde_json::json;

    fn infer(axis: serde_json::Value, scale: &[usize]) -> Result<TensorInfo, String> {
        let n = scale.iter().product();
        let layer = Layer {
            name: "rms".into(),
            class_name: "RMSNormalization".into(),
            config: json!({"axis": axis, "epsilon": 1e-6}),
            inbound: vec!["x".into()],
            weights: vec![Tensor::from_f64_values(
                DType::F32,
                scale.to_vec(),
                &vec![1.0; n],
            )],
        };
        let x = TensorInfo::new(DType::F32, vec![None, Some(5), Some(8)]);
        RmsNormalization
            .infer(&layer, &[x])
            .map_err(|e| e.to_string())
    }

    #[test]
    fn scales_must_broadcast_and_axes_be_distinct() {
        assert!(infer(json!([-1]), &[8]).is_ok());
        assert!(infer(json!([1, 2]), &[5, 8]).is_ok());
        let err = infer(json!([1]), &[5]).unwrap_err();
        assert!(err.contains("(5,) does not broadcast"), "{err}");
        let err = infer(json!([2, -1]), &[8]).unwrap_err();
        assert!(err.contains("distinct axes"), "{err}");
        let err = infer(json!(3), &[8]).unwrap_err();
        assert!(err.contains("out of range"), "{err}");
    }
}
