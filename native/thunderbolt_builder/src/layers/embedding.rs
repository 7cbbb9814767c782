//! `Embedding` → ONNX `Gather` (axis 0) on the `[input_dim, output_dim]` table (opset 13+).
//!
//! Keras casts non-integer ids to int32; ONNX `Gather` takes int32 or int64 indices, so
//! other id types get a `Cast` to int64 first.
//!
//! With `mask_zero=True` the layer also makes Keras' mask, `ids != 0` (`Equal`, `Not`),
//! which travels with the embeddings through the layers that pass masks on and changes what
//! `GlobalAveragePooling1D` computes; a layer that would use it in a way not converted
//! refuses it (see [`crate::Masking`]).

use super::{expect_weights, single_input, weight_shape_error};
use crate::config::Config;
use crate::error::BuildError;
use crate::graph::{attr_int, GraphBuilder};
use crate::layers::{require_float, FLOAT_TYPES};
use crate::registry::{LayerConverter, MadeMask, Masking, ValueRef};
use crate::shape::TensorInfo;
use crate::spec::Layer;
use crate::tensor::DType;

pub struct Embedding;

impl LayerConverter for Embedding {
    fn infer(&self, layer: &Layer, inputs: &[TensorInfo]) -> Result<TensorInfo, BuildError> {
        let ids = single_input(layer, inputs)?;
        let cfg = Config::of(layer)?;
        // Read again by `emit_mask`; a malformed value fails here, before anything is emitted.
        cfg.bool_or("mask_zero", false)?;
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

    // Ids carry no mask of their own; the layer makes a fresh one (below) or none.
    fn masking(&self, _layer: &Layer) -> Masking {
        Masking::Drops
    }

    /// Keras' `compute_mask`: `ids != 0`, on the ids as given (a float id of 0.5 is not
    /// masked, though it looks up row 0).
    fn emit_mask(
        &self,
        layer: &Layer,
        inputs: &[ValueRef<'_>],
        g: &mut GraphBuilder,
    ) -> Result<Option<MadeMask>, BuildError> {
        if !Config::of(layer)?.bool_or("mask_zero", false)? {
            return Ok(None);
        }
        let ids = inputs[0];
        // ONNX Runtime compares these types; the others are compared after an exact cast.
        let (ids_name, dtype) = match ids.info.dtype {
            d @ (DType::I32 | DType::I64 | DType::F32 | DType::F64) => (ids.name.to_string(), d),
            DType::F16 => (
                super::cast_to(g, layer, ids.name, DType::F16, DType::F32),
                DType::F32,
            ),
            other => (
                super::cast_to(g, layer, ids.name, other, DType::I64),
                DType::I64,
            ),
        };
        let zero = g.scalar(&format!("{}/padding_id", layer.name), dtype, 0.0);
        let padding = g.node(
            "Equal",
            &[&ids_name, &zero],
            &format!("{}/padding", layer.name),
            vec![],
        );
        let mask = g.node("Not", &[&padding], &format!("{}/mask", layer.name), vec![]);
        Ok(Some(MadeMask {
            value: mask,
            source: ids.name.to_string(),
        }))
    }
}
