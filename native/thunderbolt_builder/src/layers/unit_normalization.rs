//! `UnitNormalization` → `x · min(1 / sqrt(ReduceSumSquare(x)), 1 / ε)` over the layer's
//! axes, as Keras' `ops.normalize` computes it (ε = 1e-12). A Keras 2 file's layer is
//! `tf.math.l2_normalize`, whose ε bounds the sum of squares instead: the cap is 1e6.
//! `l2_normalize` below is also `Dot(normalize=True)`'s.

use super::{expect_weights, require_float, saved_by_keras_2, single_input};
use crate::config::Config;
use crate::error::BuildError;
use crate::graph::{attr_int, GraphBuilder};
use crate::registry::{LayerConverter, Masking, ValueRef};
use crate::shape::TensorInfo;
use crate::spec::Layer;

pub struct UnitNormalization;

/// `x` scaled to unit L2 norm over `axes`, the scale capped at `max_scale` (so a zero
/// vector stays zero), with its last node writing `output` when given.
pub(crate) fn l2_normalize(
    g: &mut GraphBuilder,
    x: ValueRef<'_>,
    axes: &[usize],
    max_scale: f64,
    hint: &str,
    output: Option<&str>,
) -> String {
    let axes: Vec<i64> = axes.iter().map(|&a| a as i64).collect();
    let axes = g.int64s(&format!("{hint}/axes"), &axes);
    let squares = g.node(
        "ReduceSumSquare",
        &[x.name, &axes],
        &format!("{hint}/sum_of_squares"),
        vec![attr_int("keepdims", 1)],
    );
    let norm = g.node("Sqrt", &[&squares], &format!("{hint}/norm"), vec![]);
    let scale = g.node(
        "Reciprocal",
        &[&norm],
        &format!("{hint}/inverse_norm"),
        vec![],
    );
    let cap = g.scalar(&format!("{hint}/max_scale"), x.info.dtype, max_scale);
    let scale = g.node("Min", &[&scale, &cap], &format!("{hint}/scale"), vec![]);
    match output {
        Some(out) => {
            g.node_into("Mul", &[x.name, &scale], out, vec![]);
            out.to_string()
        }
        None => g.node(
            "Mul",
            &[x.name, &scale],
            &format!("{hint}/normalized"),
            vec![],
        ),
    }
}

fn axes(layer: &Layer, rank: usize) -> Result<Vec<usize>, BuildError> {
    let mut axes = Config::of(layer)?
        .axes_or("axis", -1)?
        .into_iter()
        .map(|a| super::checked_axis(layer, a, rank))
        .collect::<Result<Vec<_>, _>>()?;
    axes.sort_unstable();
    axes.dedup();
    if axes.is_empty() || axes[0] == 0 {
        return Err(layer.error("axis must name axes other than the batch axis"));
    }
    Ok(axes)
}

impl LayerConverter for UnitNormalization {
    // Keras: `supports_masking`, and `call` ignores the mask.
    fn masking(&self, _layer: &Layer) -> Masking {
        Masking::Propagates
    }

    fn infer(&self, layer: &Layer, inputs: &[TensorInfo]) -> Result<TensorInfo, BuildError> {
        let x = single_input(layer, inputs)?;
        expect_weights(layer, &[])?;
        require_float(layer, "input", x.dtype)?;
        axes(layer, x.rank())?;
        Ok(x.clone())
    }

    fn emit(
        &self,
        layer: &Layer,
        inputs: &[ValueRef<'_>],
        output: ValueRef<'_>,
        g: &mut GraphBuilder,
    ) -> Result<String, BuildError> {
        let axes = axes(layer, inputs[0].info.rank())?;
        let max_scale = if saved_by_keras_2(layer) { 1e6 } else { 1e12 };
        Ok(l2_normalize(
            g,
            inputs[0],
            &axes,
            max_scale,
            &layer.name,
            Some(output.name),
        ))
    }
}
