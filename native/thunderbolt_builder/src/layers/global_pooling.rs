//! `GlobalAveragePooling1D` → ONNX `ReduceMean`, `GlobalMaxPooling1D` → `ReduceMax`, over the
//! steps axis: 1 for `data_format="channels_last"` (the default), 2 for `"channels_first"`.
//! `keepdims` maps onto the op's attribute. Opset 18+ (axes as an input).
//!
//! The original application's hand-written exporter dropped this layer because it has no
//! weights; here every layer is emitted whether or not it has weights.

use super::{expect_weights, require_float, single_input};
use crate::config::Config;
use crate::error::BuildError;
use crate::graph::{attr_int, GraphBuilder};
use crate::registry::{LayerConverter, ValueRef};
use crate::shape::{format_shape, TensorInfo};
use crate::spec::Layer;

/// Which reduction the pooling layer performs.
pub enum GlobalPooling1D {
    Average,
    Max,
}

struct Params {
    axis: usize,
    keepdims: bool,
}

fn params(layer: &Layer) -> Result<Params, BuildError> {
    let cfg = Config::of(layer)?;
    let axis = if cfg.channels_first()? { 2 } else { 1 };
    Ok(Params {
        axis,
        keepdims: cfg.bool_or("keepdims", false)?,
    })
}

impl LayerConverter for GlobalPooling1D {
    fn infer(&self, layer: &Layer, inputs: &[TensorInfo]) -> Result<TensorInfo, BuildError> {
        let x = single_input(layer, inputs)?;
        expect_weights(layer, &[])?;
        require_float(layer, "input", x.dtype)?;
        if x.rank() != 3 {
            return Err(layer.error(format!(
                "expects an input of rank 3 (batch, steps, features), got shape {}",
                format_shape(&x.shape)
            )));
        }
        let p = params(layer)?;
        let mut shape = x.shape.clone();
        if p.keepdims {
            shape[p.axis] = Some(1);
        } else {
            shape.remove(p.axis);
        }
        Ok(TensorInfo::new(x.dtype, shape))
    }

    fn emit(
        &self,
        layer: &Layer,
        inputs: &[ValueRef<'_>],
        output: ValueRef<'_>,
        g: &mut GraphBuilder,
    ) -> Result<String, BuildError> {
        let p = params(layer)?;
        let op = match self {
            GlobalPooling1D::Average => "ReduceMean",
            GlobalPooling1D::Max => "ReduceMax",
        };
        let axes = g.int64s(&format!("{}/axes", layer.name), &[p.axis as i64]);
        g.node_into(
            op,
            &[inputs[0].name, &axes],
            output.name,
            vec![attr_int("keepdims", i64::from(p.keepdims))],
        );
        Ok(output.name.to_string())
    }
}
