//! `MaxPooling1D` and `AveragePooling1D` → ONNX `MaxPool` and `AveragePool`, between
//! `Transpose`s for `channels_last`. `same` padding is `SAME_UPPER`; the average leaves the
//! padded steps out of its count, as Keras does.

use super::conv1d::{padding, steps_and_channels, swap_last_axes, Window};
use super::{expect_weights, require_float, single_input};
use crate::config::Config;
use crate::error::BuildError;
use crate::graph::{attr_ints, GraphBuilder};
use crate::registry::{LayerConverter, Masking, ValueRef};
use crate::shape::{format_shape, TensorInfo};
use crate::spec::Layer;

pub enum Pooling1D {
    Max,
    Average,
}

fn params(layer: &Layer) -> Result<(Window, bool), BuildError> {
    let cfg = Config::of(layer)?;
    let size = cfg.one_usize("pool_size", Some(2))?;
    let window = Window {
        size,
        // Keras: strides default to the pool size.
        stride: cfg.one_usize("strides", Some(size))?,
        dilation: 1,
        padding: padding(layer, &cfg, false)?,
    };
    Ok((window, cfg.channels_first()?))
}

impl LayerConverter for Pooling1D {
    // Keras: no `supports_masking`, so the mask ends here (Keras warns).
    fn masking(&self, _layer: &Layer) -> Masking {
        Masking::Drops
    }

    fn infer(&self, layer: &Layer, inputs: &[TensorInfo]) -> Result<TensorInfo, BuildError> {
        let x = single_input(layer, inputs)?;
        require_float(layer, "input", x.dtype)?;
        expect_weights(layer, &[])?;
        let (window, first) = params(layer)?;
        let (steps, channels) = steps_and_channels(layer, x, first)?;
        let out_steps = window.output_len(steps);
        if steps.is_some() && out_steps.is_none() {
            return Err(layer.error(format!(
                "a pool of {} steps does not fit an input of shape {}",
                window.size,
                format_shape(&x.shape)
            )));
        }
        let shape = if first {
            vec![x.shape[0], channels, out_steps]
        } else {
            vec![x.shape[0], out_steps, channels]
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
        let (window, first) = params(layer)?;
        let op = match self {
            Pooling1D::Max => "MaxPool",
            Pooling1D::Average => "AveragePool",
        };
        let name = &layer.name;
        if first {
            g.node_into(op, &[inputs[0].name], output.name, window.attrs());
        } else {
            let x = swap_last_axes(g, inputs[0].name, &format!("{name}/channels_first"));
            let pooled = g.node(op, &[&x], &format!("{name}/{op}"), window.attrs());
            g.node_into(
                "Transpose",
                &[&pooled],
                output.name,
                vec![attr_ints("perm", &[0, 2, 1])],
            );
        }
        Ok(output.name.to_string())
    }
}
