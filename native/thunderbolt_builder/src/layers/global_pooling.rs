//! `GlobalAveragePooling1D/2D/3D` → ONNX `ReduceMean`, `GlobalMaxPooling1D/2D/3D` →
//! `ReduceMax`, over the spatial axes: from 1 for `data_format="channels_last"` (the
//! default), from 2 for `"channels_first"`. `keepdims` maps onto the op's attribute.
//! Opset 18+ (axes as an input).
//!
//! With a Keras mask (`Embedding(mask_zero=True)` upstream) the average is over the unmasked
//! steps only, as Keras computes it: `ReduceSum(x * mask) / ReduceSum(mask)`, so a sample
//! whose steps are all masked gets NaN, as in Keras. `GlobalMaxPooling1D` and the 2-D and 3-D
//! poolings ignore the mask and end it, as Keras does.
//!
//! The original application's hand-written exporter dropped this layer because it has no
//! weights; here every layer is emitted whether or not it has weights.

use super::pooling::PoolOp;
use super::spatial::Layout;
use super::{expect_weights, require_float, single_input};
use crate::config::Config;
use crate::error::BuildError;
use crate::graph::{attr_int, GraphBuilder};
use crate::registry::{LayerConverter, Masking, ValueRef};
use crate::shape::TensorInfo;
use crate::spec::Layer;
use crate::tensor::DType;

/// A global pooling over `rank` spatial axes (1, 2 or 3).
pub struct GlobalPooling {
    pub op: PoolOp,
    pub rank: usize,
}

struct Params {
    layout: Layout,
    keepdims: bool,
}

impl Params {
    fn axes(&self) -> Vec<i64> {
        (0..self.layout.rank)
            .map(|i| self.layout.spatial_axis(i) as i64)
            .collect()
    }
}

impl GlobalPooling {
    fn params(&self, layer: &Layer) -> Result<Params, BuildError> {
        let cfg = Config::of(layer)?;
        Ok(Params {
            layout: Layout::read(&cfg, self.rank)?,
            keepdims: cfg.bool_or("keepdims", false)?,
        })
    }
}

impl LayerConverter for GlobalPooling {
    // Keras: only `GlobalAveragePooling1D` supports masks.
    fn masking(&self, _layer: &Layer) -> Masking {
        match (self.op, self.rank) {
            (PoolOp::Average, 1) => Masking::Consumes,
            _ => Masking::Drops,
        }
    }

    fn infer(&self, layer: &Layer, inputs: &[TensorInfo]) -> Result<TensorInfo, BuildError> {
        let x = single_input(layer, inputs)?;
        expect_weights(layer, &[])?;
        require_float(layer, "input", x.dtype)?;
        let p = self.params(layer)?;
        let (spatial, channels) = p.layout.split(layer, x)?;
        let spatial = if p.keepdims {
            vec![Some(1); spatial.len()]
        } else {
            vec![]
        };
        let shape = if p.keepdims {
            p.layout.shape(x.shape[0], spatial, channels)
        } else {
            vec![x.shape[0], channels]
        };
        Ok(TensorInfo::new(x.dtype, shape))
    }

    fn emit(
        &self,
        layer: &Layer,
        inputs: &[ValueRef<'_>],
        output: ValueRef<'_>,
        g: &mut GraphBuilder,
    ) -> Result<String, BuildError> {
        let p = self.params(layer)?;
        let axes = g.int64s(&format!("{}/axes", layer.name), &p.axes());
        if let (PoolOp::Average, 1, Some(mask)) = (self.op, self.rank, inputs[0].mask) {
            masked_average(g, layer, inputs[0], mask, &p, &axes, output);
            return Ok(output.name.to_string());
        }
        let op = match self.op {
            PoolOp::Average => "ReduceMean",
            PoolOp::Max => "ReduceMax",
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
    let features_axis = if p.layout.channels_first { 1 } else { 2 };
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
