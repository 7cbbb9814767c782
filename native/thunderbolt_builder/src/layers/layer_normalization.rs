//! `LayerNormalization` → ONNX `LayerNormalization` (opset 17+) when the normalized axes
//! are the trailing ones (the usual `axis=-1`); otherwise the Keras formula spelled out:
//! `mean`/`variance` by `ReduceMean` over the axes (opset 18 for the `axes` input),
//! `(x - mean) / sqrt(variance + epsilon) * gamma + beta`.
//!
//! Weights, in Keras order: `gamma` (only if `scale`), `beta` (only if `center`), each of
//! the shape of the normalized dimensions. `rms_scaling=True` is rejected: its Keras
//! semantics (scaling by the variance, not the mean square) differ between Keras versions.

use super::{
    expect_weight_shape, expect_weights, require_float, require_weight_dtype, single_input,
};
use crate::config::Config;
use crate::error::BuildError;
use crate::graph::{attr_float, attr_int, GraphBuilder};
use crate::registry::{LayerConverter, Masking, ValueRef};
use crate::shape::{format_shape, TensorInfo};
use crate::spec::Layer;
use crate::tensor::{DType, Tensor};

pub struct LayerNormalization;

struct Params {
    axes: Vec<usize>,
    epsilon: f64,
    center: bool,
    scale: bool,
}

fn params(layer: &Layer, rank: usize) -> Result<Params, BuildError> {
    let cfg = Config::of(layer)?;
    if cfg.bool_or("rms_scaling", false)? {
        return Err(layer.error("rms_scaling=true is not supported"));
    }
    let raw = cfg.axes_or("axis", -1)?;
    if raw.is_empty() {
        return Err(layer.error("config key \"axis\" must not be an empty list"));
    }
    let mut axes = Vec::with_capacity(raw.len());
    for a in &raw {
        let n = super::checked_axis(layer, *a, rank)?;
        if axes.last().is_some_and(|&prev| prev >= n) {
            return Err(layer.error(format!(
                "axis {raw:?} must list distinct axes in increasing order"
            )));
        }
        axes.push(n);
    }
    Ok(Params {
        axes,
        epsilon: cfg.f64_or("epsilon", 1e-3)?,
        center: cfg.bool_or("center", true)?,
        scale: cfg.bool_or("scale", true)?,
    })
}

impl LayerConverter for LayerNormalization {
    // Keras: `supports_masking`, and `call` ignores the mask.
    fn masking(&self, _layer: &Layer) -> Masking {
        Masking::Propagates
    }

    fn infer(&self, layer: &Layer, inputs: &[TensorInfo]) -> Result<TensorInfo, BuildError> {
        let x = single_input(layer, inputs)?;
        require_float(layer, "input", x.dtype)?;
        let p = params(layer, x.rank())?;
        let mut names = Vec::new();
        if p.scale {
            names.push("gamma");
        }
        if p.center {
            names.push("beta");
        }
        expect_weights(layer, &names)?;
        let mut param_shape = Vec::with_capacity(p.axes.len());
        for &a in &p.axes {
            param_shape.push(x.shape[a].ok_or_else(|| {
                layer.error(format!(
                    "the normalized axis {a} of input shape {} must be static",
                    format_shape(&x.shape)
                ))
            })?);
        }
        for (i, name) in names.iter().enumerate() {
            expect_weight_shape(layer, i, name, &param_shape)?;
            require_weight_dtype(layer, i, name, x.dtype)?;
        }
        Ok(x.clone())
    }

    fn emit(
        &self,
        layer: &Layer,
        inputs: &[ValueRef<'_>],
        output: ValueRef<'_>,
        g: &mut GraphBuilder,
    ) -> Result<String, BuildError> {
        let (x, info, name) = (inputs[0].name, inputs[0].info, &layer.name);
        let rank = info.rank();
        let p = params(layer, rank)?;
        let param_shape: Vec<usize> = p.axes.iter().map(|&a| info.shape[a].unwrap_or(1)).collect();
        let mut weights = layer.weights.iter();
        let gamma = if p.scale { weights.next() } else { None };
        let beta = if p.center { weights.next() } else { None };
        let trailing = p
            .axes
            .iter()
            .enumerate()
            .all(|(i, &a)| a == rank - p.axes.len() + i);
        if trailing {
            let scale = match gamma {
                Some(t) => g.initializer(&format!("{name}/gamma"), t),
                None => {
                    let ones = vec![1.0; super::generated_len(layer, &param_shape)?];
                    let t = Tensor::from_f64_as(info.dtype, param_shape.clone(), &ones)
                        .ok_or_else(|| {
                            layer.dtype_error("input", info.dtype, super::FLOAT_TYPES)
                        })?;
                    g.initializer_owned(&format!("{name}/gamma"), t)
                }
            };
            let mut node_inputs = vec![x.to_string(), scale];
            if let Some(t) = beta {
                node_inputs.push(g.initializer(&format!("{name}/beta"), t));
            }
            let refs: Vec<&str> = node_inputs.iter().map(String::as_str).collect();
            let attrs = vec![
                attr_int("axis", p.axes[0] as i64),
                attr_float("epsilon", p.epsilon as f32),
            ];
            g.node_into("LayerNormalization", &refs, output.name, attrs);
            return Ok(output.name.to_string());
        }
        // Keras' broadcast layout: the normalized dimensions in place, 1 elsewhere.
        let mut broadcast = vec![1usize; rank];
        for (&a, &d) in p.axes.iter().zip(&param_shape) {
            broadcast[a] = d;
        }
        let axes: Vec<i64> = p.axes.iter().map(|&a| a as i64).collect();
        let (centered, std) = centered_and_deviation(g, x, &axes, p.epsilon, info.dtype, name);
        // (x - mean) / std, then * gamma, then + beta; the last step writes the output.
        let mut steps = vec![("Div", std)];
        if let Some(t) = gamma {
            steps.push((
                "Mul",
                g.initializer_reshaped(&format!("{name}/gamma"), t, &broadcast),
            ));
        }
        if let Some(t) = beta {
            steps.push((
                "Add",
                g.initializer_reshaped(&format!("{name}/beta"), t, &broadcast),
            ));
        }
        let mut acc = centered;
        let last = steps.len() - 1;
        for (i, (op, operand)) in steps.iter().enumerate() {
            if i == last {
                g.node_into(op, &[&acc, operand], output.name, vec![]);
            } else {
                acc = g.node(op, &[&acc, operand], &format!("{name}/{op}"), vec![]);
            }
        }
        Ok(output.name.to_string())
    }
}

/// `x - mean` and `sqrt(variance + epsilon)` over `axes` (kept as size-1 dimensions): the
/// statistics every Keras normalization layer divides by.
pub(crate) fn centered_and_deviation(
    g: &mut GraphBuilder,
    x: &str,
    axes: &[i64],
    epsilon: f64,
    dtype: DType,
    name: &str,
) -> (String, String) {
    let axes = g.int64s(&format!("{name}/axes"), axes);
    let keep = || vec![attr_int("keepdims", 1)];
    let mean = g.node("ReduceMean", &[x, &axes], &format!("{name}/mean"), keep());
    let centered = g.node("Sub", &[x, &mean], &format!("{name}/centered"), vec![]);
    let squared = g.node(
        "Mul",
        &[&centered, &centered],
        &format!("{name}/squared"),
        vec![],
    );
    let variance = g.node(
        "ReduceMean",
        &[&squared, &axes],
        &format!("{name}/variance"),
        keep(),
    );
    let eps = g.scalar(&format!("{name}/epsilon"), dtype, epsilon);
    let shifted = g.node(
        "Add",
        &[&variance, &eps],
        &format!("{name}/variance_eps"),
        vec![],
    );
    let std = g.node("Sqrt", &[&shifted], &format!("{name}/std"), vec![]);
    (centered, std)
}
