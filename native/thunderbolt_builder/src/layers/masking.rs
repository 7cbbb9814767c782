//! `Masking` → `Equal`, `Not`, `Cast`, `ReduceMax`, `Mul`: Keras' own mask for float
//! sequences, true at a step where any feature differs from `mask_value`. The output is the
//! input with the masked steps zeroed, as Keras computes it, and the mask travels on (see
//! [`crate::Masking`]); an incoming mask is replaced, as Keras replaces it. `emit` and
//! `emit_mask` are separate steps, so the few comparison nodes are made twice.

use super::{expect_weights, require_float, single_input};
use crate::config::Config;
use crate::error::BuildError;
use crate::graph::{attr_int, GraphBuilder};
use crate::registry::{LayerConverter, MadeMask, Masking, ValueRef};
use crate::shape::{format_shape, TensorInfo};
use crate::spec::Layer;
use crate::tensor::DType;

pub struct MaskingLayer;

fn mask_value(layer: &Layer) -> Result<f64, BuildError> {
    Config::of(layer)?.f64_or("mask_value", 0.0)
}

/// The steps (all axes but the last) where any feature differs from `mask_value`, as f32
/// 0/1 with the features axis kept: Keras' `any(x != mask_value, axis=-1)`.
fn kept_steps(g: &mut GraphBuilder, layer: &Layer, x: ValueRef<'_>) -> Result<String, BuildError> {
    let name = &layer.name;
    let value = g.scalar(
        &format!("{name}/mask_value"),
        x.info.dtype,
        mask_value(layer)?,
    );
    let same = g.node(
        "Equal",
        &[x.name, &value],
        &format!("{name}/masked_feature"),
        vec![],
    );
    let differs = g.node("Not", &[&same], &format!("{name}/kept_feature"), vec![]);
    let differs = super::cast_to(g, layer, &differs, DType::Bool, DType::F32);
    let last = g.int64s(&format!("{name}/features_axis"), &[-1]);
    Ok(g.node(
        "ReduceMax",
        &[&differs, &last],
        &format!("{name}/kept_step"),
        vec![attr_int("keepdims", 1)],
    ))
}

impl LayerConverter for MaskingLayer {
    // Keras' `Masking.compute_mask` ignores the incoming mask and makes its own.
    fn masking(&self, _layer: &Layer) -> Masking {
        Masking::Drops
    }

    fn infer(&self, layer: &Layer, inputs: &[TensorInfo]) -> Result<TensorInfo, BuildError> {
        let x = single_input(layer, inputs)?;
        expect_weights(layer, &[])?;
        require_float(layer, "input", x.dtype)?;
        mask_value(layer)?;
        if x.rank() < 2 {
            return Err(layer.error(format!(
                "expects an input of rank 2 or more (batch, ..., features), got shape {}",
                format_shape(&x.shape)
            )));
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
        let x = inputs[0];
        let kept = kept_steps(g, layer, x)?;
        let kept = super::cast_to(g, layer, &kept, DType::F32, x.info.dtype);
        g.node_into("Mul", &[x.name, &kept], output.name, vec![]);
        Ok(output.name.to_string())
    }

    fn emit_mask(
        &self,
        layer: &Layer,
        inputs: &[ValueRef<'_>],
        g: &mut GraphBuilder,
    ) -> Result<Option<MadeMask>, BuildError> {
        let x = inputs[0];
        let kept = kept_steps(g, layer, x)?;
        let last = g.int64s(&format!("{}/squeezed_axis", layer.name), &[-1]);
        let kept = g.node(
            "Squeeze",
            &[&kept, &last],
            &format!("{}/kept_steps", layer.name),
            vec![],
        );
        let mask = super::cast_to(g, layer, &kept, DType::F32, DType::Bool);
        Ok(Some(MadeMask {
            value: mask,
            source: format!("any({} != {})", x.name, mask_value(layer)?),
        }))
    }
}
