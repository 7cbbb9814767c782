//! The element-wise merge layers: `Add` → a chain of ONNX `Add`, `Subtract` → `Sub` (exactly two
//! inputs), `Multiply` → a chain of `Mul`, `Average` → `Mean`, `Maximum` → `Max`,
//! `Minimum` → `Min`. Opset 13+.
//!
//! Inputs must share element type and rank; dimensions broadcast NumPy-style (equal or 1).
//! Keras reshapes inputs of different ranks in its own way, which is rejected here.
//!
//! Masks: the output's is the OR of the inputs' when all have one (Keras'
//! `Merge.compute_mask`). `Maximum`, `Minimum` and `Multiply` refuse masked inputs, since
//! Keras computes them differently at masked steps. The Keras importer also maps
//! `keras.ops` additions, subtractions and products of two tensors here, marked with
//! `"keras_operation": true`: those drop masks, as Keras' operations do.

use super::{expect_weights, require_float};
use crate::error::BuildError;
use crate::graph::GraphBuilder;
use crate::registry::{LayerConverter, Masking, ValueRef};
use crate::shape::{broadcast, format_shape, TensorInfo};
use crate::spec::Layer;
use crate::tensor::DType;

/// Which element-wise operation the merge layer performs.
pub enum Merge {
    Add,
    Subtract,
    Multiply,
    Average,
    Maximum,
    Minimum,
}

impl LayerConverter for Merge {
    // Keras 3's `Maximum` and `Minimum` let masked steps lose (`_apply_merge_op_and_or_mask`)
    // and its `Multiply` takes them as 1 and zeroes the result outside the masks; the others
    // compute as without masks.
    // A `keras.ops` call the importer maps here (config `"keras_operation": true`) drops
    // masks, as Keras' operations do.
    fn masking(&self, layer: &Layer) -> Masking {
        if layer.config.get("keras_operation") == Some(&serde_json::Value::Bool(true)) {
            return Masking::Drops;
        }
        match self {
            Merge::Maximum | Merge::Minimum | Merge::Multiply => Masking::Unsupported,
            Merge::Add | Merge::Subtract | Merge::Average => Masking::MergesWithOr,
        }
    }

    fn infer(&self, layer: &Layer, inputs: &[TensorInfo]) -> Result<TensorInfo, BuildError> {
        expect_weights(layer, &[])?;
        let first = inputs
            .first()
            .ok_or_else(|| layer.error("expects at least 1 input, got 0"))?;
        if matches!(self, Merge::Subtract) && inputs.len() != 2 {
            return Err(layer.error(format!("expects exactly 2 inputs, got {}", inputs.len())));
        }
        if matches!(self, Merge::Average) {
            require_float(layer, "input", first.dtype)?;
        } else if first.dtype == DType::Bool {
            return Err(layer.dtype_error("input", first.dtype, "numeric types"));
        }
        let mut shape = first.shape.clone();
        for (i, x) in inputs.iter().enumerate().skip(1) {
            if x.dtype != first.dtype {
                return Err(layer.error(format!(
                    "input {i} has dtype {}, input 0 has {}",
                    x.dtype, first.dtype
                )));
            }
            let merged = (x.rank() == first.rank())
                .then(|| broadcast(&shape, &x.shape))
                .flatten();
            shape = merged.ok_or_else(|| {
                layer.error(format!(
                    "input {i} of shape {} does not match shape {}",
                    format_shape(&x.shape),
                    format_shape(&first.shape)
                ))
            })?;
        }
        Ok(TensorInfo::new(first.dtype, shape))
    }

    fn emit(
        &self,
        layer: &Layer,
        inputs: &[ValueRef<'_>],
        output: ValueRef<'_>,
        g: &mut GraphBuilder,
    ) -> Result<String, BuildError> {
        let names: Vec<&str> = inputs.iter().map(|v| v.name).collect();
        let op = match self {
            Merge::Add => return Ok(chain(g, "Add", &names, &layer.name, output.name)),
            Merge::Multiply => return Ok(chain(g, "Mul", &names, &layer.name, output.name)),
            Merge::Subtract => "Sub",
            Merge::Average => "Mean",
            Merge::Maximum => "Max",
            Merge::Minimum => "Min",
        };
        g.node_into(op, &names, output.name, vec![]);
        Ok(output.name.to_string())
    }
}

/// Folds the binary `op` over `names` from the left, the last node writing `output`.
/// (`Sum` would take all inputs at once but accepts float types only.)
fn chain(g: &mut GraphBuilder, op: &str, names: &[&str], layer: &str, output: &str) -> String {
    let Some((first, rest)) = names.split_first() else {
        return output.to_string();
    };
    let mut acc = first.to_string();
    for (i, next) in rest.iter().enumerate() {
        if i + 1 == rest.len() {
            g.node_into(op, &[&acc, next], output, vec![]);
        } else {
            acc = g.node(op, &[&acc, next], &format!("{layer}/{op}"), vec![]);
        }
    }
    if rest.is_empty() {
        g.node_into("Identity", &[&acc], output, vec![]);
    }
    output.to_string()
}
