//! `Dot` → Keras' `batch_dot` of two inputs of rank 2 or 3 over one axis each: `Mul` and
//! `ReduceSum` for two `(batch, d)` inputs (giving `(batch, 1)`, as Keras), a `MatMul`
//! between `Transpose`s otherwise. With `normalize=True` each input is first scaled to unit
//! L2 norm along its axis (`x · min(1 / |x|, 1 / ε)`, ε = 1e-7 as Keras' `epsilon()`; 1e6
//! for a Keras 2 file, whose `l2_normalize` bounds the squares by 1e-12).

use super::unit_normalization::l2_normalize;
use super::{expect_inputs, expect_weights, require_float, saved_by_keras_2};
use crate::config::Config;
use crate::error::BuildError;
use crate::graph::{attr_int, attr_ints, GraphBuilder};
use crate::registry::{LayerConverter, Masking, ValueRef};
use crate::shape::{format_shape, TensorInfo};
use crate::spec::Layer;

pub struct Dot;

/// The contracted axis of each input, checked against the inputs.
fn axes(layer: &Layer, a: &TensorInfo, b: &TensorInfo) -> Result<[usize; 2], BuildError> {
    let cfg = Config::of(layer)?;
    if cfg.get("axes").is_none() {
        return Err(layer.error("config key \"axes\" is required"));
    }
    let raw = match cfg.axes_or("axes", -1)?.as_slice() {
        [one] => [*one, *one],
        [x, y] => [*x, *y],
        _ => return Err(layer.error("axes must be one integer or a list of two")),
    };
    let axes = [
        super::checked_axis(layer, raw[0], a.rank())?,
        super::checked_axis(layer, raw[1], b.rank())?,
    ];
    if axes.contains(&0) {
        return Err(layer.error("cannot take the dot product over the batch axis"));
    }
    Ok(axes)
}

impl LayerConverter for Dot {
    // Keras: `supports_masking`, but the product ignores the masks and `compute_mask` gives
    // none.
    fn masking(&self, _layer: &Layer) -> Masking {
        Masking::Drops
    }

    fn infer(&self, layer: &Layer, inputs: &[TensorInfo]) -> Result<TensorInfo, BuildError> {
        let [a, b] = expect_inputs(layer, inputs, 2)? else {
            unreachable!("two inputs were checked")
        };
        expect_weights(layer, &[])?;
        require_float(layer, "input", a.dtype)?;
        if a.dtype != b.dtype || a.rank() != b.rank() || !(2..=3).contains(&a.rank()) {
            return Err(layer.error(format!(
                "expects two inputs of one float type and of rank 2 or 3 alike, got {} {} and {} {}",
                a.dtype,
                format_shape(&a.shape),
                b.dtype,
                format_shape(&b.shape)
            )));
        }
        let [ax, bx] = axes(layer, a, b)?;
        if let (Some(m), Some(n)) = (a.shape[ax], b.shape[bx]) {
            if m != n {
                return Err(layer.error(format!(
                    "the dot axes differ in size: {m} (axis {ax} of {}) and {n} (axis {bx} of {})",
                    format_shape(&a.shape),
                    format_shape(&b.shape)
                )));
            }
        }
        let shape = if a.rank() == 2 {
            vec![a.shape[0], Some(1)]
        } else {
            vec![a.shape[0], a.shape[3 - ax], b.shape[3 - bx]]
        };
        Ok(TensorInfo::new(a.dtype, shape))
    }

    fn emit(
        &self,
        layer: &Layer,
        inputs: &[ValueRef<'_>],
        output: ValueRef<'_>,
        g: &mut GraphBuilder,
    ) -> Result<String, BuildError> {
        let name = &layer.name;
        let [ax, bx] = axes(layer, inputs[0].info, inputs[1].info)?;
        let normalize = Config::of(layer)?.bool_or("normalize", false)?;
        let max_scale = if saved_by_keras_2(layer) { 1e6 } else { 1e7 };
        let mut operands = [inputs[0].name.to_string(), inputs[1].name.to_string()];
        if normalize {
            for (i, axis) in [ax, bx].into_iter().enumerate() {
                operands[i] = l2_normalize(
                    g,
                    inputs[i],
                    &[axis],
                    max_scale,
                    &format!("{name}/normalize_{i}"),
                    None,
                );
            }
        }
        if inputs[0].info.rank() == 2 {
            let product = g.node(
                "Mul",
                &[&operands[0], &operands[1]],
                &format!("{name}/Mul"),
                vec![],
            );
            let axis = g.int64s(&format!("{name}/axis"), &[1]);
            g.node_into(
                "ReduceSum",
                &[&product, &axis],
                output.name,
                vec![attr_int("keepdims", 1)],
            );
            return Ok(output.name.to_string());
        }
        // (batch, rows, d) · (batch, d, columns): the first input's axis last, the second's
        // first after the batch.
        let left = if ax == 2 {
            operands[0].clone()
        } else {
            g.node(
                "Transpose",
                &[&operands[0]],
                &format!("{name}/left"),
                vec![attr_ints("perm", &[0, 2, 1])],
            )
        };
        let right = if bx == 1 {
            operands[1].clone()
        } else {
            g.node(
                "Transpose",
                &[&operands[1]],
                &format!("{name}/right"),
                vec![attr_ints("perm", &[0, 2, 1])],
            )
        };
        g.node_into("MatMul", &[&left, &right], output.name, vec![]);
        Ok(output.name.to_string())
    }
}
