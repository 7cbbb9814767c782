//! `BatchNormalization` (inference form) → ONNX `Mul` + `Add` with per-channel constants
//! folded while building (opset 13+):
//! `y = x * s + t`, `s = gamma / sqrt(moving_variance + epsilon)`, `t = beta - moving_mean * s`,
//! which is how Keras' `ops.batch_normalization` evaluates it. The fold runs in f64 and is
//! rounded once to the weights' type.
//!
//! ONNX `BatchNormalization` is not used because it fixes the channel axis at 1; folding
//! works for any `axis` (the constants get shape `[C, 1, ..., 1]` to broadcast along it).
//! Weights, in Keras order: `gamma` (only if `scale`), `beta` (only if `center`),
//! `moving_mean`, `moving_variance`, each of shape `[C]`.

use super::{
    expect_weight_shape, expect_weights, require_float, require_weight_dtype, single_input,
};
use crate::config::Config;
use crate::error::BuildError;
use crate::graph::GraphBuilder;
use crate::registry::{LayerConverter, Masking, ValueRef};
use crate::shape::{format_shape, TensorInfo};
use crate::spec::Layer;
use crate::tensor::Tensor;

pub struct BatchNormalization;

struct Params {
    axis: usize,
    epsilon: f64,
    center: bool,
    scale: bool,
}

fn params(layer: &Layer, rank: usize) -> Result<Params, BuildError> {
    let cfg = Config::of(layer)?;
    // Keras 2 wrote the axis as a list of one (`[2]`).
    let raw = match cfg.axes_or("axis", -1)?[..] {
        [axis] => axis,
        ref axes => {
            return Err(layer.error(format!(
                "config key \"axis\" must be one axis, got {axes:?}"
            )))
        }
    };
    let axis = super::checked_axis(layer, raw, rank)?;
    Ok(Params {
        axis,
        epsilon: cfg.f64_or("epsilon", 1e-3)?,
        center: cfg.bool_or("center", true)?,
        scale: cfg.bool_or("scale", true)?,
    })
}

fn weight_names(p: &Params) -> Vec<&'static str> {
    let mut names = Vec::with_capacity(4);
    if p.scale {
        names.push("gamma");
    }
    if p.center {
        names.push("beta");
    }
    names.extend(["moving_mean", "moving_variance"]);
    names
}

impl LayerConverter for BatchNormalization {
    // Keras: `supports_masking`, and `call` ignores the mask.
    fn masking(&self, _layer: &Layer) -> Masking {
        Masking::Propagates
    }

    fn infer(&self, layer: &Layer, inputs: &[TensorInfo]) -> Result<TensorInfo, BuildError> {
        let x = single_input(layer, inputs)?;
        require_float(layer, "input", x.dtype)?;
        let p = params(layer, x.rank())?;
        let names = weight_names(&p);
        expect_weights(layer, &names)?;
        let channels = x.shape[p.axis].ok_or_else(|| {
            layer.error(format!(
                "the normalized axis {} of input shape {} must be static",
                p.axis,
                format_shape(&x.shape)
            ))
        })?;
        for (i, name) in names.iter().enumerate() {
            expect_weight_shape(layer, i, name, &[channels])?;
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
        let info = inputs[0].info;
        let p = params(layer, info.rank())?;
        let mut w = layer.weights.iter().map(Tensor::to_f64_vec);
        let gamma = if p.scale { w.next() } else { None };
        let beta = if p.center { w.next() } else { None };
        let (Some(mean), Some(var)) = (w.next(), w.next()) else {
            return Err(layer.error("moving_mean and moving_variance are missing"));
        };
        let scale: Vec<f64> = var
            .iter()
            .enumerate()
            .map(|(c, v)| gamma.as_ref().map_or(1.0, |g| g[c]) / (v + p.epsilon).sqrt())
            .collect();
        let shift: Vec<f64> = mean
            .iter()
            .enumerate()
            .map(|(c, m)| beta.as_ref().map_or(0.0, |b| b[c]) - m * scale[c])
            .collect();
        let mut shape = vec![mean.len()];
        shape.resize(info.rank() - p.axis, 1);
        let as_tensor = |v: &[f64]| {
            Tensor::from_f64_as(info.dtype, shape.clone(), v)
                .ok_or_else(|| layer.dtype_error("input", info.dtype, super::FLOAT_TYPES))
        };
        let scale = g.initializer_owned(&format!("{}/scale", layer.name), as_tensor(&scale)?);
        let shift = g.initializer_owned(&format!("{}/shift", layer.name), as_tensor(&shift)?);
        let scaled = g.node(
            "Mul",
            &[inputs[0].name, &scale],
            &format!("{}/Mul", layer.name),
            vec![],
        );
        g.node_into("Add", &[&scaled, &shift], output.name, vec![]);
        Ok(output.name.to_string())
    }
}
