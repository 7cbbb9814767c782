//! The element-wise merge layers: `Add` → a chain of ONNX `Add`, `Subtract` → `Sub` (exactly two
//! inputs), `Multiply` → a chain of `Mul`, `Average` → `Mean`, `Maximum` → `Max`,
//! `Minimum` → `Min`. Opset 13+.
//!
//! Inputs must share element type and rank; dimensions broadcast NumPy-style (equal or 1).
//! Keras reshapes inputs of different ranks in its own way, which is rejected here.
//!
//! Masks: the output's is the OR of the inputs' when all have one (Keras'
//! `Merge.compute_mask`). `Maximum`, `Minimum` and `Multiply` also compute with them, as
//! Keras 3.4 and later do: a masked step of an input loses to the other inputs' value there
//! (`Maximum`, `Minimum`), or counts as 1 with the product zeroed where no input has the
//! step (`Multiply`, when every input has a mask). Keras 3.0 to 3.3 compute them without
//! masks; the importer gives the release as `"keras_version"`. The Keras importer also maps
//! `keras.ops` additions, subtractions and products of two tensors here, marked with
//! `"keras_operation": true`: those drop masks, as Keras' operations do. A merge of a
//! Keras 2 file (`"keras_2": true`) computes as without masks and ANDs those it gets, as
//! tf.keras' `_Merge` does.

use super::{expect_weights, require_float, saved_by_keras_2};
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

/// A `keras.ops` call the importer maps here (config `"keras_operation": true`): it drops
/// masks, as Keras' operations do.
fn keras_operation(layer: &Layer) -> bool {
    layer.config.get("keras_operation") == Some(&serde_json::Value::Bool(true))
}

impl Merge {
    /// Whether this merge, given masked inputs, computes with the masks: `Maximum`, `Minimum`
    /// and `Multiply` do from Keras 3.4 on (checked with 3.4, 3.5, 3.6 and 3.12), and not in
    /// 3.3 and earlier nor in Keras 2.
    fn computes_with_masks(&self, layer: &Layer) -> bool {
        matches!(self, Merge::Multiply | Merge::Maximum | Merge::Minimum)
            && super::keras_3_from(layer, 4)
    }
}

impl LayerConverter for Merge {
    fn masking(&self, layer: &Layer) -> Masking {
        if keras_operation(layer) {
            Masking::Drops
        } else if saved_by_keras_2(layer) {
            Masking::MergesWithAnd
        } else {
            Masking::MergesWithOr
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
        // `computes_with_masks` is false for a Keras 2 file's merge.
        let masked = !keras_operation(layer)
            && inputs.iter().any(|v| v.mask.is_some())
            && self.computes_with_masks(layer);
        match self {
            Merge::Multiply if masked => return Ok(masked_product(g, layer, inputs, output)),
            Merge::Maximum if masked => return Ok(masked_extreme(g, "Max", layer, inputs, output)),
            Merge::Minimum if masked => return Ok(masked_extreme(g, "Min", layer, inputs, output)),
            _ => {}
        }
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

/// Each input's mask over its steps, as a value that broadcasts over its last axis.
fn expanded_masks(
    g: &mut GraphBuilder,
    layer: &Layer,
    inputs: &[ValueRef<'_>],
) -> Vec<Option<String>> {
    inputs
        .iter()
        .map(|v| {
            v.mask.map(|mask| {
                let axes = g.int64s(&format!("{}/mask_axes", layer.name), &[-1]);
                g.node(
                    "Unsqueeze",
                    &[mask, &axes],
                    &format!("{}/mask", layer.name),
                    vec![],
                )
            })
        })
        .collect()
}

/// Keras 3's masked `Multiply`: a masked step counts as 1; when every input has a mask, the
/// product is zeroed where none has the step.
fn masked_product(
    g: &mut GraphBuilder,
    layer: &Layer,
    inputs: &[ValueRef<'_>],
    output: ValueRef<'_>,
) -> String {
    let masks = expanded_masks(g, layer, inputs);
    let one = g.scalar(&format!("{}/one", layer.name), output.info.dtype, 1.0);
    let factors: Vec<String> = inputs
        .iter()
        .zip(&masks)
        .map(|(x, mask)| match mask {
            Some(mask) => g.node(
                "Where",
                &[mask, x.name, &one],
                &format!("{}/factor", layer.name),
                vec![],
            ),
            None => x.name.to_string(),
        })
        .collect();
    let factors: Vec<&str> = factors.iter().map(String::as_str).collect();
    let Some(masks) = masks.into_iter().collect::<Option<Vec<String>>>() else {
        return chain(g, "Mul", &factors, &layer.name, output.name);
    };
    let product = g.fresh(&format!("{}/product", layer.name));
    chain(g, "Mul", &factors, &layer.name, &product);
    let masks: Vec<&str> = masks.iter().map(String::as_str).collect();
    let any = g
        .fold("Or", &masks, &format!("{}/mask", layer.name))
        .unwrap_or_default();
    let zero = g.scalar(&format!("{}/zero", layer.name), output.info.dtype, 0.0);
    g.node_into("Where", &[&any, &product, &zero], output.name, vec![]);
    output.name.to_string()
}

/// Keras 3's masked `Maximum` and `Minimum` (`_apply_merge_op_and_or_mask`): folding from
/// the left, an input's masked step takes the value so far, and the value so far, where its
/// mask (the OR of those merged, while every one had a mask) lacks the step, takes the
/// input's; so a step masked on one side is the other side's value.
fn masked_extreme(
    g: &mut GraphBuilder,
    op: &str,
    layer: &Layer,
    inputs: &[ValueRef<'_>],
    output: ValueRef<'_>,
) -> String {
    let masks = expanded_masks(g, layer, inputs);
    let name = format!("{}/{op}", layer.name);
    let mut value = inputs[0].name.to_string();
    let mut value_mask = masks[0].clone();
    for (i, (x, mask)) in inputs.iter().zip(&masks).enumerate().skip(1) {
        let x = match mask {
            Some(mask) => g.node("Where", &[mask, x.name, &value], &name, vec![]),
            None => x.name.to_string(),
        };
        if let Some(value_mask) = &value_mask {
            value = g.node("Where", &[value_mask, &value, &x], &name, vec![]);
        }
        value_mask = match (value_mask, mask) {
            (Some(a), Some(b)) => Some(g.node("Or", &[&a, b], &name, vec![])),
            _ => None,
        };
        if i + 1 == inputs.len() {
            g.node_into(op, &[&value, &x], output.name, vec![]);
            return output.name.to_string();
        }
        value = g.node(op, &[&value, &x], &name, vec![]);
    }
    g.node_into("Identity", &[&value], output.name, vec![]);
    output.name.to_string()
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
