//! `InterleavedRoPE` (Cerebros, registered as `cerebrosllmutils>InterleavedRoPE`) → ONNX
//! `Gather` + `Mul` + `Mul` + `Add`, with the sine and cosine tables as initializers.
//! Opset 13+.
//!
//! From `cerebrosllmutils/llm_utils.py`: for `x` of shape `(batch, steps, dim)`,
//! `inv_freq[j] = 1 / temperature^(2j / dim)` (temperature 10000, fixed by the layer),
//! the angle of position `p` and feature `k` is `p * inv_freq[k // 2]`, and
//! `y = x * cos + rotate_half(x) * sin`, where `rotate_half` takes the features in
//! even-then-odd order (`[x0, x2, ..., x1, x3, ...]`) and returns `[-odds, evens]`. So
//! `rotate_half(x)[k]` is `-x[2k + 1]` for `k < dim/2` and `x[2k - dim]` after. The
//! converter gathers those features and folds the sign into the sine table.
//!
//! Quirks: `steps` and `dim` must be static (the tables are precomputed); the tables are
//! computed in float32 the way the layer does (so results match Keras bit for bit up to
//! the `sin`/`cos` implementations), then stored in the input's element type. `max_seq_len`
//! is not used by the layer's arithmetic. The layer does not support Keras masks, so Keras 3
//! warns and drops one that arrives (Keras 2 refuses to build such a model).

use super::{expect_weights, generated_len, require_float, single_input};
use crate::config::Config;
use crate::error::BuildError;
use crate::graph::{attr_int, GraphBuilder};
use crate::registry::{LayerConverter, Masking, ValueRef};
use crate::shape::{format_shape, TensorInfo};
use crate::spec::Layer;
use crate::tensor::{DType, Tensor};

/// The temperature `InterleavedRoPE` passes to its `RotaryEmbedding`.
const TEMPERATURE: f32 = 10000.0;

pub struct InterleavedRoPE;

/// `(steps, dim)` from the input shape, checked against the config.
fn dims(layer: &Layer, x: &TensorInfo) -> Result<(usize, usize), BuildError> {
    if x.rank() != 3 {
        return Err(layer.error(format!(
            "expects an input of rank 3 (batch, steps, dim), got shape {}",
            format_shape(&x.shape)
        )));
    }
    let (Some(steps), Some(dim)) = (x.shape[1], x.shape[2]) else {
        return Err(layer.error(format!(
            "needs static steps and dim to precompute its tables, got shape {}",
            format_shape(&x.shape)
        )));
    };
    if dim % 2 != 0 || dim == 0 {
        return Err(layer.error(format!("dim must be even and positive, got {dim}")));
    }
    generated_len(layer, &[steps, dim])?;
    if let Some(configured) = Config::of(layer)?.opt_usize("dim")? {
        if configured != dim {
            return Err(layer.error(format!(
                "config dim is {configured} but the input has {dim} features"
            )));
        }
    }
    Ok((steps, dim))
}

/// The cosine table and the sign-folded sine table, `[steps, dim]` each, row-major.
fn tables(steps: usize, dim: usize) -> (Vec<f64>, Vec<f64>) {
    let half = dim / 2;
    // float32 throughout, as the layer computes it.
    let inv_freq: Vec<f32> = (0..half)
        .map(|j| 1.0f32 / TEMPERATURE.powf((2 * j) as f32 / dim as f32))
        .collect();
    let mut cos = Vec::with_capacity(steps * dim);
    let mut sin = Vec::with_capacity(steps * dim);
    for p in 0..steps {
        for k in 0..dim {
            let angle = p as f32 * inv_freq[k / 2];
            let sign = if k < half { -1.0 } else { 1.0 };
            cos.push(f64::from(angle.cos()));
            sin.push(sign * f64::from(angle.sin()));
        }
    }
    (cos, sin)
}

/// The feature each output position of `rotate_half` reads (before the sign).
fn rotate_half_indices(dim: usize) -> Vec<i64> {
    let half = dim / 2;
    (0..dim)
        .map(|k| if k < half { 2 * k + 1 } else { 2 * (k - half) } as i64)
        .collect()
}

impl LayerConverter for InterleavedRoPE {
    fn masking(&self, _layer: &Layer) -> Masking {
        Masking::Drops
    }

    fn infer(&self, layer: &Layer, inputs: &[TensorInfo]) -> Result<TensorInfo, BuildError> {
        let x = single_input(layer, inputs)?;
        expect_weights(layer, &[])?;
        require_float(layer, "input", x.dtype)?;
        dims(layer, x)?;
        Ok(x.clone())
    }

    fn emit(
        &self,
        layer: &Layer,
        inputs: &[ValueRef<'_>],
        output: ValueRef<'_>,
        g: &mut GraphBuilder,
    ) -> Result<String, BuildError> {
        let x = inputs[0];
        let (steps, dim) = dims(layer, x.info)?;
        let (cos, sin) = tables(steps, dim);
        let table = |values: &[f64]| {
            Tensor::from_f64_as(x.info.dtype, vec![steps, dim], values)
                .ok_or_else(|| layer.dtype_error("input", x.info.dtype, super::FLOAT_TYPES))
        };
        let cos = g.initializer_owned(&format!("{}/cos", layer.name), table(&cos)?);
        let sin = g.initializer_owned(&format!("{}/signed_sin", layer.name), table(&sin)?);
        let indices = Tensor::from_i64(vec![dim], &rotate_half_indices(dim));
        let indices = g.initializer_owned(&format!("{}/rotate_half_indices", layer.name), indices);

        let scaled = g.node(
            "Mul",
            &[x.name, &cos],
            &format!("{}/x_cos", layer.name),
            vec![],
        );
        let rotated = g.node(
            "Gather",
            &[x.name, &indices],
            &format!("{}/rotate_half", layer.name),
            vec![attr_int("axis", 2)],
        );
        let rotated = g.node(
            "Mul",
            &[&rotated, &sin],
            &format!("{}/rotated_sin", layer.name),
            vec![],
        );
        g.node_into("Add", &[&scaled, &rotated], output.name, vec![]);
        debug_assert!(matches!(x.info.dtype, DType::F32 | DType::F64 | DType::F16));
        Ok(output.name.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `rotate_half` from the Cerebros source, applied to feature indices: split_alternate
    /// gives `[0, 2, 4, 6, 1, 3, 5, 7]`, then `concat([-second_half, first_half])`.
    #[test]
    fn rotate_half_indices_follow_the_source() {
        assert_eq!(rotate_half_indices(8), vec![1, 3, 5, 7, 0, 2, 4, 6]);
    }

    #[test]
    fn tables_at_position_zero_are_identity() {
        let (cos, sin) = tables(2, 4);
        assert_eq!(&cos[..4], &[1.0; 4]);
        assert!(sin[..4].iter().all(|v| *v == 0.0));
        // position 1, feature 0: angle 1 * inv_freq[0] = 1
        assert!((cos[4] - 1f64.cos()).abs() < 1e-7);
        assert!(
            (sin[4] + 1f64.sin()).abs() < 1e-7,
            "sign folded in for the first half"
        );
        assert!(
            (sin[6] - (0.01f64).sin()).abs() < 1e-7,
            "feature 2 uses inv_freq[1] = 1e-2"
        );
    }

    #[test]
    fn rejects_dynamic_steps_and_odd_dims() {
        let layer = Layer {
            name: "rope".into(),
            class_name: "InterleavedRoPE".into(),
            config: serde_json::json!({"dim": 4}),
            inbound: vec!["x".into()],
            weights: vec![],
        };
        let dynamic = TensorInfo::new(DType::F32, vec![None, None, Some(4)]);
        let err = InterleavedRoPE
            .infer(&layer, &[dynamic])
            .unwrap_err()
            .to_string();
        assert!(err.contains("static steps"), "{err}");
        let odd = TensorInfo::new(DType::F32, vec![None, Some(3), Some(5)]);
        let err = InterleavedRoPE
            .infer(&layer, &[odd])
            .unwrap_err()
            .to_string();
        assert!(err.contains("even"), "{err}");
        let mismatch = TensorInfo::new(DType::F32, vec![None, Some(3), Some(6)]);
        let err = InterleavedRoPE
            .infer(&layer, &[mismatch])
            .unwrap_err()
            .to_string();
        assert!(err.contains("config dim is 4"), "{err}");
    }
}
