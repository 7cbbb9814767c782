//! `Concatenate` → ONNX `Concat` along `axis` (default -1; negative axes count from the
//! end). All inputs must share element type and rank, and agree on every other dimension.
//! Opset 13+. A Keras mask on any input makes one for the output (see
//! [`Masking::Concatenates`]).

use super::expect_weights;
use crate::config::Config;
use crate::error::BuildError;
use crate::graph::{attr_int, GraphBuilder};
use crate::registry::{LayerConverter, Masking, ValueRef};
use crate::shape::{format_shape, normalize_axis, TensorInfo};
use crate::spec::Layer;

pub struct Concatenate;

pub(crate) fn axis(layer: &Layer, rank: usize) -> Result<usize, BuildError> {
    let axis = Config::of(layer)?.i64_or("axis", -1)?;
    normalize_axis(axis, rank).ok_or_else(|| {
        layer.error(format!(
            "axis {axis} is out of range for inputs of rank {rank}"
        ))
    })
}

impl LayerConverter for Concatenate {
    fn infer(&self, layer: &Layer, inputs: &[TensorInfo]) -> Result<TensorInfo, BuildError> {
        expect_weights(layer, &[])?;
        let first = inputs
            .first()
            .ok_or_else(|| layer.error("expects at least 1 input, got 0"))?;
        let axis = axis(layer, first.rank())?;
        let mut shape = first.shape.clone();
        for (i, x) in inputs.iter().enumerate().skip(1) {
            if x.dtype != first.dtype {
                return Err(layer.error(format!(
                    "input {i} has dtype {}, input 0 has {}",
                    x.dtype, first.dtype
                )));
            }
            let mismatch = x.rank() != first.rank()
                || x.shape
                    .iter()
                    .zip(&shape)
                    .enumerate()
                    .any(|(d, (a, b))| d != axis && a.is_some() && b.is_some() && a != b);
            if mismatch {
                return Err(layer.error(format!(
                    "input {i} of shape {} cannot be concatenated with shape {} along axis {axis}",
                    format_shape(&x.shape),
                    format_shape(&first.shape)
                )));
            }
            for (d, dim) in shape.iter_mut().enumerate() {
                *dim = if d == axis {
                    dim.zip(x.shape[d]).map(|(a, b)| a + b)
                } else {
                    dim.or(x.shape[d])
                };
            }
        }
        Ok(TensorInfo::new(first.dtype, shape))
    }

    fn masking(&self, _layer: &Layer) -> Masking {
        Masking::Concatenates
    }

    fn emit(
        &self,
        layer: &Layer,
        inputs: &[ValueRef<'_>],
        output: ValueRef<'_>,
        g: &mut GraphBuilder,
    ) -> Result<String, BuildError> {
        let axis = axis(layer, output.info.rank())?;
        let names: Vec<&str> = inputs.iter().map(|v| v.name).collect();
        g.node_into(
            "Concat",
            &names,
            output.name,
            vec![attr_int("axis", axis as i64)],
        );
        Ok(output.name.to_string())
    }
}
