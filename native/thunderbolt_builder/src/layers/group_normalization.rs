//! `GroupNormalization` over the last axis → the channels split into `groups` (`Reshape`
//! to `[..., groups, channels / groups]`, copying the leading dimensions, so they may be
//! dynamic), the mean and variance of each sample's group over every other axis
//! (`ReduceMean`), `(x - mean) / sqrt(variance + epsilon)`, the shape restored, then
//! `gamma` and `beta` per channel, as Keras computes it.

use super::layer_normalization::centered_and_deviation;
use super::{
    checked_axis, expect_weight_shape, expect_weights, require_float, require_weight_dtype,
    single_input,
};
use crate::config::Config;
use crate::error::BuildError;
use crate::graph::GraphBuilder;
use crate::registry::{LayerConverter, Masking, ValueRef};
use crate::shape::{format_shape, TensorInfo};
use crate::spec::Layer;

pub struct GroupNormalization;

struct Params {
    groups: usize,
    epsilon: f64,
    center: bool,
    scale: bool,
}

fn params(layer: &Layer, x: &TensorInfo) -> Result<(Params, usize), BuildError> {
    let cfg = Config::of(layer)?;
    let axis = checked_axis(layer, cfg.i64_or("axis", -1)?, x.rank())?;
    if axis + 1 != x.rank() || axis == 0 {
        return Err(layer.error(format!(
            "only the last axis can hold the groups (axis=-1), got axis {axis} of an input of shape {}",
            format_shape(&x.shape)
        )));
    }
    let channels =
        x.shape[axis].ok_or_else(|| layer.error("the channels dimension must be static"))?;
    let p = Params {
        groups: cfg.one_usize("groups", Some(32))?,
        epsilon: cfg.f64_or("epsilon", 1e-3)?,
        center: cfg.bool_or("center", true)?,
        scale: cfg.bool_or("scale", true)?,
    };
    if channels % p.groups != 0 {
        return Err(layer.error(format!(
            "groups {} must divide the {channels} channels",
            p.groups
        )));
    }
    Ok((p, channels))
}

fn weight_names(p: &Params) -> Vec<&'static str> {
    let mut names = Vec::new();
    if p.scale {
        names.push("gamma");
    }
    if p.center {
        names.push("beta");
    }
    names
}

impl LayerConverter for GroupNormalization {
    // Keras: `supports_masking`, and `call` ignores the mask.
    fn masking(&self, _layer: &Layer) -> Masking {
        Masking::Propagates
    }

    fn infer(&self, layer: &Layer, inputs: &[TensorInfo]) -> Result<TensorInfo, BuildError> {
        let x = single_input(layer, inputs)?;
        require_float(layer, "input", x.dtype)?;
        let (p, channels) = params(layer, x)?;
        let names = weight_names(&p);
        expect_weights(layer, &names)?;
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
        _output: ValueRef<'_>,
        g: &mut GraphBuilder,
    ) -> Result<String, BuildError> {
        let x = inputs[0];
        let (p, channels) = params(layer, x.info)?;
        let name = &layer.name;
        let rank = x.info.rank();
        let dtype = x.info.dtype;
        let mut grouped: Vec<i64> = vec![0; rank - 1];
        grouped.extend([p.groups as i64, (channels / p.groups) as i64]);
        let grouped = g.int64s(&format!("{name}/grouped_shape"), &grouped);
        let split = g.node(
            "Reshape",
            &[x.name, &grouped],
            &format!("{name}/groups"),
            vec![],
        );
        // Every axis but the batch and the group axis (rank - 1 of rank + 1).
        let axes: Vec<i64> = (1..rank as i64 - 1).chain([rank as i64]).collect();
        let (centered, deviation) =
            centered_and_deviation(g, &split, &axes, p.epsilon, dtype, name);
        let normalized = g.node(
            "Div",
            &[&centered, &deviation],
            &format!("{name}/normalized"),
            vec![],
        );
        let shape = g.node("Shape", &[x.name], &format!("{name}/shape"), vec![]);
        // The last node's name stands for the output (the builder aliases it).
        let mut y = g.node(
            "Reshape",
            &[&normalized, &shape],
            &format!("{name}/restored"),
            vec![],
        );
        if p.scale {
            let gamma = g.initializer(&format!("{name}/gamma"), &layer.weights[0]);
            y = g.node("Mul", &[&y, &gamma], &format!("{name}/scaled"), vec![]);
        }
        if p.center {
            let beta = &layer.weights[usize::from(p.scale)];
            let beta = g.initializer(&format!("{name}/beta"), beta);
            y = g.node("Add", &[&y, &beta], &format!("{name}/shifted"), vec![]);
        }
        Ok(y)
    }
}
