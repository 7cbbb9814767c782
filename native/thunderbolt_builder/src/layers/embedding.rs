//! `Embedding` → ONNX `Gather` (axis 0) on the `[input_dim, output_dim]` table (opset 13+).
//!
//! Keras casts non-integer ids to int32; ONNX `Gather` takes int32 or int64 indices, so
//! other id types get a `Cast` to int64 first. `mask_zero=True` is rejected: the mask would
//! change what later layers (pooling) compute, and masks are not carried through the graph.

use super::{expect_weights, single_input, weight_shape_error};
use crate::config::Config;
use crate::error::BuildError;
use crate::graph::{attr_int, GraphBuilder};
use crate::layers::{require_float, FLOAT_TYPES};
use crate::registry::{LayerConverter, ValueRef};
use crate::shape::TensorInfo;
use crate::spec::Layer;
use crate::tensor::DType;

pub struct Embedding;

impl LayerConverter for Embedding {
    fn infer(&self, layer: &Layer, inputs: &[TensorInfo]) -> Result<TensorInfo, BuildError> {
        let ids = single_input(layer, inputs)?;
        let cfg = Config::of(layer)?;
        if cfg.bool_or("mask_zero", false)? {
            return Err(layer.error("mask_zero=true is not supported (masks are not propagated)"));
        }
        expect_weights(layer, &["embeddings"])?;
        let table = &layer.weights[0];
        let expected = format!(
            "(input_dim, output_dim) = ({}, {})",
            cfg.opt_usize("input_dim")?
                .map_or("?".into(), |v| v.to_string()),
            cfg.opt_usize("output_dim")?
                .map_or("?".into(), |v| v.to_string())
        );
        if table.shape.len() != 2
            || cfg
                .opt_usize("input_dim")?
                .is_some_and(|v| v != table.shape[0])
            || cfg
                .opt_usize("output_dim")?
                .is_some_and(|v| v != table.shape[1])
        {
            return Err(weight_shape_error(
                layer,
                "embeddings",
                &table.shape,
                expected,
            ));
        }
        require_float(layer, "weight \"embeddings\"", table.dtype)?;
        if ids.dtype == DType::Bool {
            return Err(layer.dtype_error(
                "input",
                ids.dtype,
                &format!("integer types, {FLOAT_TYPES}"),
            ));
        }
        let mut shape = ids.shape.clone();
        shape.push(Some(table.shape[1]));
        Ok(TensorInfo::new(table.dtype, shape))
    }

    fn emit(
        &self,
        layer: &Layer,
        inputs: &[ValueRef<'_>],
        output: ValueRef<'_>,
        g: &mut GraphBuilder,
    ) -> Result<String, BuildError> {
        let table = g.initializer(&format!("{}/embeddings", layer.name), &layer.weights[0]);
        let ids = inputs[0];
        let ids_name = match ids.info.dtype {
            DType::I32 | DType::I64 => ids.name.to_string(),
            other => super::cast_to(g, layer, ids.name, other, DType::I64),
        };
        g.node_into(
            "Gather",
            &[&table, &ids_name],
            output.name,
            vec![attr_int("axis", 0)],
        );
        Ok(output.name.to_string())
    }
}
