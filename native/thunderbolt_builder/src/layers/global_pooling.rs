//! `GlobalAveragePooling1D` → ONNX `ReduceMean`, `GlobalMaxPooling1D` → `ReduceMax`, over the
//! steps axis: 1 for `data_format="channels_last"` (the default), 2 for `"channels_first"`.
//! `keepdims` maps onto the op's attribute. Opset 18+ (axes as an input).
//!
//! With a Keras mask (`Embedding(mask_zero=True)` upstream) the average is over the unmasked
//! steps only, as Keras computes it: `ReduceSum(x * mask) / ReduceSum(mask)`, so a sample
//! whose steps are all masked gets NaN, as in Keras. `GlobalMaxPooling1D` ignores the mask
//! and ends it, as Keras does.
//!
//! The original application's hand-written exporter dropped this layer because it has no
//! weights; here every layer is emitted whether or not it has weights.

use super::{expect_weights, require_float, single_input};
use crate::config::Config;
use crate::error::BuildError;
use crate::graph::{attr_int, GraphBuilder};
use crate::registry::{LayerConverter, Masking, ValueRef};
use crate::shape::{format_shape, TensorInfo};
use crate::spec::Layer;
use crate::tensor::DType;

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
    fn masking(&self, _layer: &Layer) -> Masking {
        match self {
            GlobalPooling1D::Average => Masking::Consumes,
            GlobalPooling1D::Max => Masking::Drops,
        }
    }

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
        let axes = g.int64s(&format!("{}/axes", layer.name), &[p.axis as i64]);
        if let (GlobalPooling1D::Average, Some(mask)) = (self, inputs[0].mask) {
            masked_average(g, layer, inputs[0], mask, &p, &axes, output);
            return Ok(output.name.to_string());
        }
        let op = match self {
            GlobalPooling1D::Average => "ReduceMean",
            GlobalPooling1D::Max => "ReduceMax",
        };
        let keepdims = attr_int("keepdims", i64::from(p.keepdims));
        g.node_into(op, &[inputs[0].name, &axes], output.name, vec![keepdims]);
        Ok(output.name.to_string())
    }
}

/// Keras' masked `GlobalAveragePooling1D`: the mask, cast to the input's type and given a
/// features axis, zeroes the masked steps; the sum over the steps is divided by the number
/// of unmasked ones.
fn masked_average(
    g: &mut GraphBuilder,
    layer: &Layer,
    x: ValueRef<'_>,
    mask: &str,
    p: &Params,
    axes: &str,
    output: ValueRef<'_>,
) {
    let name = &layer.name;
    let keepdims = attr_int("keepdims", i64::from(p.keepdims));
    let weights = super::cast_to(g, layer, mask, DType::Bool, x.info.dtype);
    // The features axis sits where the steps axis is not.
    let features_axis = if p.axis == 1 { 2 } else { 1 };
    let features = g.int64s(&format!("{name}/mask_axes"), &[features_axis]);
    let weights = g.node(
        "Unsqueeze",
        &[&weights, &features],
        &format!("{name}/mask_weights"),
        vec![],
    );
    let kept = g.node(
        "Mul",
        &[x.name, &weights],
        &format!("{name}/masked"),
        vec![],
    );
    let total = g.node(
        "ReduceSum",
        &[&kept, axes],
        &format!("{name}/masked_sum"),
        vec![keepdims.clone()],
    );
    let count = g.node(
        "ReduceSum",
        &[&weights, axes],
        &format!("{name}/mask_count"),
        vec![keepdims],
    );
    g.node_into("Div", &[&total, &count], output.name, vec![]);
}
