//! Keras' `Normalization` preprocessing layer → `Sub` + `Div` by constants:
//! `(x - mean) / max(sqrt(variance), 1e-7)`, or with `invert`
//! `mean + x * max(sqrt(variance), 1e-7)`.
//!
//! The statistics come from one of two places, as in Keras: weights `mean`, `variance`
//! and `count` (the layer was adapted; `count` is unused at inference), shaped like the
//! kept `axis` dimensions, or the config's `mean` and `variance` (passed to the
//! constructor), which broadcast to the input's shape with 1 on the reduced axes. The
//! divisor is computed in f64 and rounded once. Integer inputs are cast to float32, as
//! Keras casts them to its compute dtype.

use super::{
    cast_to, expect_weight_shape, expect_weights, float_output, propagates_since_keras_3,
    single_input, weight_shape_error,
};
use crate::config::Config;
use crate::error::BuildError;
use crate::graph::GraphBuilder;
use crate::registry::{LayerConverter, Masking, ValueRef};
use crate::shape::{format_shape, TensorInfo};
use crate::spec::Layer;
use crate::tensor::Tensor;
use serde_json::Value;

pub struct Normalization;

/// Keras' `backend.epsilon()`.
const EPSILON: f64 = 1e-7;

struct Params {
    /// The kept axes, sorted.
    keep: Vec<usize>,
    invert: bool,
    /// The constructor's statistics, when given: (shape, values) each.
    given: Option<[(Vec<usize>, Vec<f64>); 2]>,
}

fn params(layer: &Layer, rank: usize) -> Result<Params, BuildError> {
    let cfg = Config::of(layer)?;
    // Keras saves the axes as a list; `None` in Python means no kept axis.
    let raw = match layer.config.get("axis") {
        Some(Value::Null) => vec![],
        _ => cfg.axes_or("axis", -1)?,
    };
    let mut keep = raw
        .iter()
        .map(|&a| super::checked_axis(layer, a, rank))
        .collect::<Result<Vec<_>, _>>()?;
    keep.sort_unstable();
    keep.dedup();
    let given = match (cfg.get("mean"), cfg.get("variance")) {
        (None, None) => None,
        (Some(mean), Some(variance)) => Some([
            numbers(layer, "mean", mean)?,
            numbers(layer, "variance", variance)?,
        ]),
        _ => return Err(layer.error("config needs both \"mean\" and \"variance\", or neither")),
    };
    Ok(Params {
        keep,
        invert: cfg.bool_or("invert", false)?,
        given,
    })
}

/// A number or rectangular nested lists of numbers, as (shape, values in row-major order).
pub(crate) fn numbers(
    layer: &Layer,
    key: &str,
    value: &Value,
) -> Result<(Vec<usize>, Vec<f64>), BuildError> {
    fn walk(v: &Value, depth: usize, shape: &mut Vec<usize>, out: &mut Vec<f64>) -> bool {
        match v {
            Value::Number(n) => {
                depth == shape.len()
                    && n.as_f64().is_some_and(|x| {
                        out.push(x);
                        x.is_finite()
                    })
            }
            Value::Array(items) if depth < 32 => {
                if depth == shape.len() {
                    if !out.is_empty() {
                        return false;
                    }
                    shape.push(items.len());
                } else if shape[depth] != items.len() {
                    return false;
                }
                items.iter().all(|item| walk(item, depth + 1, shape, out))
            }
            _ => false,
        }
    }
    let (mut shape, mut out) = (Vec::new(), Vec::new());
    if walk(value, 0, &mut shape, &mut out) && out.len() == shape.iter().product::<usize>() {
        Ok((shape, out))
    } else {
        Err(layer.error(format!(
            "config key {key:?} must be a finite number or rectangular lists of them"
        )))
    }
}

/// `values` of `shape` broadcast to `target` as NumPy does, or `None` if they do not.
fn broadcast_to(shape: &[usize], values: &[f64], target: &[usize]) -> Option<Vec<f64>> {
    if shape.len() > target.len() {
        return None;
    }
    let pad = target.len() - shape.len();
    let src: Vec<usize> = std::iter::repeat_n(1, pad)
        .chain(shape.iter().copied())
        .collect();
    if src.iter().zip(target).any(|(&s, &t)| s != t && s != 1) {
        return None;
    }
    let total: usize = target.iter().product();
    let mut out = Vec::with_capacity(total);
    for flat in 0..total {
        let (mut rest, mut index, mut stride) = (flat, 0, 1);
        for (d, (&s, &t)) in src.iter().zip(target).enumerate().rev() {
            let i = rest % t;
            rest /= t;
            if s != 1 {
                index += i * stride;
            }
            stride *= src[d];
        }
        out.push(values[index]);
    }
    Some(out)
}

/// The kept dimensions of `x`, which Keras requires to be static.
fn kept_dims(layer: &Layer, x: &TensorInfo, keep: &[usize]) -> Result<Vec<usize>, BuildError> {
    keep.iter()
        .map(|&a| {
            x.shape[a].ok_or_else(|| {
                layer.error(format!(
                    "the kept axis {a} of input shape {} must be static",
                    format_shape(&x.shape)
                ))
            })
        })
        .collect()
}

/// The mean and divisor in f64, shaped `[d or 1 per input axis]`.
struct Statistics {
    shape: Vec<usize>,
    mean: Vec<f64>,
    divisor: Vec<f64>,
}

fn statistics(layer: &Layer, x: &TensorInfo, p: &Params) -> Result<Statistics, BuildError> {
    let kept = kept_dims(layer, x, &p.keep)?;
    let mut target = vec![1; x.rank()];
    for (&axis, &d) in p.keep.iter().zip(&kept) {
        target[axis] = d;
    }
    super::generated_len(layer, &target)?;
    let (mean, variance) = match &p.given {
        Some([(ms, mv), (vs, vv)]) => {
            let fit = |name: &str, shape: &[usize], values: &[f64]| {
                broadcast_to(shape, values, &target).ok_or_else(|| {
                    layer.error(format!(
                        "config {name:?} of shape {shape:?} does not broadcast to {target:?}"
                    ))
                })
            };
            (fit("mean", ms, mv)?, fit("variance", vs, vv)?)
        }
        None => (layer.weights[0].to_f64_vec(), layer.weights[1].to_f64_vec()),
    };
    let divisor = variance.iter().map(|v| v.sqrt().max(EPSILON)).collect();
    Ok(Statistics {
        shape: target,
        mean,
        divisor,
    })
}

impl LayerConverter for Normalization {
    // Keras 3: `supports_masking`, and `call` ignores the mask; Keras 2 drops it.
    fn masking(&self, layer: &Layer) -> Masking {
        propagates_since_keras_3(layer)
    }

    fn infer(&self, layer: &Layer, inputs: &[TensorInfo]) -> Result<TensorInfo, BuildError> {
        let x = single_input(layer, inputs)?;
        let dtype = float_output(layer, x.dtype)?;
        let p = params(layer, x.rank())?;
        if p.given.is_some() {
            expect_weights(layer, &[])?;
        } else {
            expect_weights(layer, &["mean", "variance", "count"])?;
            let kept = kept_dims(layer, x, &p.keep)?;
            for (i, name) in ["mean", "variance"].iter().enumerate() {
                expect_weight_shape(layer, i, name, &kept)?;
                if !layer.weights[i].dtype.is_float() {
                    return Err(layer.dtype_error(
                        &format!("weight {name:?}"),
                        layer.weights[i].dtype,
                        super::FLOAT_TYPES,
                    ));
                }
            }
            if layer.weights[2].shape.iter().product::<usize>() != 1 {
                let got = layer.weights[2].shape.clone();
                return Err(weight_shape_error(layer, "count", &got, "a scalar".into()));
            }
        }
        statistics(layer, x, &p)?;
        Ok(TensorInfo::new(dtype, x.shape.clone()))
    }

    fn emit(
        &self,
        layer: &Layer,
        inputs: &[ValueRef<'_>],
        output: ValueRef<'_>,
        g: &mut GraphBuilder,
    ) -> Result<String, BuildError> {
        let x = inputs[0].info;
        let p = params(layer, x.rank())?;
        let Statistics {
            shape,
            mean,
            divisor,
        } = statistics(layer, x, &p)?;
        let dt = float_output(layer, x.dtype)?;
        let constant = |values: &[f64]| {
            Tensor::from_f64_as(dt, shape.clone(), values)
                .ok_or_else(|| layer.dtype_error("output", dt, super::FLOAT_TYPES))
        };
        let mean = g.initializer_owned(&format!("{}/mean", layer.name), constant(&mean)?);
        let divisor = g.initializer_owned(&format!("{}/divisor", layer.name), constant(&divisor)?);
        let input = cast_to(g, layer, inputs[0].name, x.dtype, dt);
        if p.invert {
            let scaled = g.node(
                "Mul",
                &[&input, &divisor],
                &format!("{}/Mul", layer.name),
                vec![],
            );
            g.node_into("Add", &[&mean, &scaled], output.name, vec![]);
        } else {
            let centered = g.node(
                "Sub",
                &[&input, &mean],
                &format!("{}/Sub", layer.name),
                vec![],
            );
            g.node_into("Div", &[&centered, &divisor], output.name, vec![]);
        }
        Ok(output.name.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcasts_as_numpy_does() {
        assert_eq!(
            broadcast_to(&[2], &[1.0, 2.0], &[1, 3, 2]).unwrap(),
            [1.0, 2.0, 1.0, 2.0, 1.0, 2.0]
        );
        assert_eq!(
            broadcast_to(&[2, 1], &[1.0, 2.0], &[2, 3]).unwrap(),
            [1.0, 1.0, 1.0, 2.0, 2.0, 2.0]
        );
        assert_eq!(broadcast_to(&[], &[5.0], &[1, 2]).unwrap(), [5.0, 5.0]);
        assert!(broadcast_to(&[3], &[1.0, 2.0, 3.0], &[1, 2]).is_none());
        assert!(broadcast_to(&[1, 1, 1], &[1.0], &[2, 2]).is_none());
    }

    #[test]
    fn reads_nested_numbers_and_refuses_ragged_ones() {
        let layer = Layer {
            name: "n".into(),
            class_name: "Normalization".into(),
            config: serde_json::json!({}),
            inbound: vec![],
            weights: vec![],
        };
        let (shape, values) =
            numbers(&layer, "mean", &serde_json::json!([[1, 2], [3, 4]])).unwrap();
        assert_eq!((shape, values), (vec![2, 2], vec![1.0, 2.0, 3.0, 4.0]));
        assert_eq!(
            numbers(&layer, "mean", &serde_json::json!(2.5)).unwrap(),
            (vec![], vec![2.5])
        );
        for bad in [
            serde_json::json!([[1], [2, 3]]),
            serde_json::json!([1, [2]]),
            serde_json::json!("x"),
        ] {
            let err = numbers(&layer, "mean", &bad).unwrap_err().to_string();
            assert!(err.contains("rectangular"), "{err}");
        }
    }
}
