//! `MaxPooling1D/2D/3D` and `AveragePooling1D/2D/3D` → ONNX `MaxPool` and `AveragePool`,
//! between `Transpose`s for `channels_last`. `same` padding is `SAME_UPPER`; the average
//! leaves the padded cells out of its count, as Keras does.

use super::spatial::{per_axis, Layout, Padding, Window};
use super::{expect_weights, require_float, single_input};
use crate::config::Config;
use crate::error::BuildError;
use crate::graph::GraphBuilder;
use crate::registry::{LayerConverter, Masking, ValueRef};
use crate::shape::TensorInfo;
use crate::spec::Layer;

#[derive(Debug, Clone, Copy)]
pub enum PoolOp {
    Max,
    Average,
}

/// A pooling over `rank` spatial axes (1, 2 or 3).
pub struct Pooling {
    pub op: PoolOp,
    pub rank: usize,
}

impl Pooling {
    fn params(&self, layer: &Layer) -> Result<(Window, Layout), BuildError> {
        let cfg = Config::of(layer)?;
        let layout = Layout::read(&cfg, self.rank)?;
        let sizes = per_axis(
            &cfg,
            layer,
            "pool_size",
            self.rank,
            Some(&vec![2; self.rank]),
        )?;
        // Keras: strides default to the pool size.
        let strides = per_axis(&cfg, layer, "strides", self.rank, Some(&sizes))?;
        let window = Window {
            sizes,
            strides,
            dilations: vec![1; self.rank],
            padding: Padding::read(layer, &cfg, false)?,
        };
        Ok((window, layout))
    }
}

impl LayerConverter for Pooling {
    // Keras: no `supports_masking`, so the mask ends here (Keras warns).
    fn masking(&self, _layer: &Layer) -> Masking {
        Masking::Drops
    }

    fn infer(&self, layer: &Layer, inputs: &[TensorInfo]) -> Result<TensorInfo, BuildError> {
        let x = single_input(layer, inputs)?;
        require_float(layer, "input", x.dtype)?;
        expect_weights(layer, &[])?;
        let (window, layout) = self.params(layer)?;
        let (spatial, channels) = layout.split(layer, x)?;
        let out_spatial = window.output_dims(layer, "pool", x, &spatial)?;
        Ok(TensorInfo::new(
            x.dtype,
            layout.shape(x.shape[0], out_spatial, channels),
        ))
    }

    fn emit(
        &self,
        layer: &Layer,
        inputs: &[ValueRef<'_>],
        output: ValueRef<'_>,
        g: &mut GraphBuilder,
    ) -> Result<String, BuildError> {
        let (window, layout) = self.params(layer)?;
        let op = match self.op {
            PoolOp::Max => "MaxPool",
            PoolOp::Average => "AveragePool",
        };
        layout.emit(g, layer, inputs[0].name, output, None, |g, x, out| {
            g.node_into(op, &[x], out, window.attrs(false));
        });
        Ok(output.name.to_string())
    }
}
