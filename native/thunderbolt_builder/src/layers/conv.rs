//! `Conv1D`, `Conv2D` and `Conv3D` → ONNX `Conv` (with the bias as its third input), then the
//! activation's ops, between `Transpose`s for `channels_last` (ONNX convolves
//! `[batch, channels, spatial...]`).
//!
//! Keras' kernel `[k1, ..., kn, channels / groups, filters]` becomes ONNX's
//! `[filters, channels / groups, k1, ..., kn]`. Padding: `valid` is none, `same` is ONNX's
//! `SAME_UPPER` (the odd pad at the end, as TensorFlow and XLA place it), and `Conv1D`'s
//! `causal` pads `(kernel_size - 1) · dilation_rate` steps at the start.

use super::spatial::{per_axis, Layout, Padding, Window};
use super::{expect_weight_shape, expect_weights, require_weight_dtype, single_input};
use crate::activation::Activation;
use crate::config::Config;
use crate::error::BuildError;
use crate::graph::{attr_int, GraphBuilder};
use crate::registry::{LayerConverter, Masking, ValueRef};
use crate::shape::{Dim, TensorInfo};
use crate::spec::Layer;
use crate::tensor::{DType, Tensor};
use onnx_protobuf::AttributeProto;

/// A convolution over `rank` spatial axes (1, 2 or 3).
pub struct Conv {
    pub rank: usize,
}

struct Params {
    filters: usize,
    window: Window,
    groups: usize,
    layout: Layout,
    use_bias: bool,
    activation: Activation,
}

/// The kernel size, strides, dilation and padding of a convolution with `rank` spatial axes;
/// `causal` padding only where `causal_allowed` (and then channels last).
pub(crate) fn conv_window(
    layer: &Layer,
    cfg: &Config<'_>,
    layout: Layout,
    causal_allowed: bool,
) -> Result<Window, BuildError> {
    let rank = layout.rank;
    let padding = Padding::read(layer, cfg, causal_allowed)?;
    if layout.channels_first && padding == Padding::Causal {
        return Err(layer.error("causal padding needs data_format=\"channels_last\""));
    }
    let ones = vec![1; rank];
    let window = Window {
        sizes: per_axis(cfg, layer, "kernel_size", rank, None)?,
        strides: per_axis(cfg, layer, "strides", rank, Some(&ones))?,
        dilations: per_axis(cfg, layer, "dilation_rate", rank, Some(&ones))?,
        padding,
    };
    window.check_strides_or_dilation(layer)?;
    Ok(window)
}

fn params(layer: &Layer, rank: usize) -> Result<Params, BuildError> {
    let cfg = Config::of(layer)?;
    let layout = Layout::read(&cfg, rank)?;
    Ok(Params {
        filters: cfg.one_usize("filters", None)?,
        window: conv_window(layer, &cfg, layout, rank == 1)?,
        groups: cfg.one_usize("groups", Some(1))?,
        layout,
        use_bias: cfg.bool_or("use_bias", true)?,
        activation: Activation::parse(layer, cfg.get("activation"))?,
    })
}

/// A Keras kernel `[k1, ..., kn, per_group, filters]` as ONNX's
/// `[filters, per_group, k1, ..., kn]`; moving whole elements, so any dtype.
pub(crate) fn onnx_kernel(kernel: &Tensor, per_group: usize, filters: usize) -> Tensor {
    let spatial = &kernel.shape[..kernel.shape.len() - 2];
    let positions: usize = spatial.iter().product();
    let size = kernel.dtype.size();
    let mut data = Vec::with_capacity(kernel.data.len());
    for m in 0..filters {
        for c in 0..per_group {
            for pos in 0..positions {
                let at = ((pos * per_group + c) * filters + m) * size;
                data.extend_from_slice(&kernel.data[at..at + size]);
            }
        }
    }
    let mut shape = vec![filters, per_group];
    shape.extend_from_slice(spatial);
    Tensor {
        dtype: kernel.dtype,
        shape,
        data,
    }
}

/// The float32 output of a convolution-like layer, `channels` deep in `layout`, with its
/// activation checked against it.
pub(crate) fn conv_output(
    layer: &Layer,
    layout: Layout,
    batch: Dim,
    spatial: Vec<Dim>,
    channels: usize,
    activation: &Activation,
) -> Result<TensorInfo, BuildError> {
    let out = TensorInfo::new(DType::F32, layout.shape(batch, spatial, Some(channels)));
    activation.check(layer, &out)?;
    Ok(out)
}

/// Checks a float32 value and the float32 weights `names` of a convolution-like layer.
pub(crate) fn require_float32(
    layer: &Layer,
    x: &TensorInfo,
    names: &[&str],
) -> Result<(), BuildError> {
    if x.dtype != DType::F32 {
        return Err(layer.dtype_error("input", x.dtype, "float32"));
    }
    for (i, name) in names.iter().enumerate() {
        require_weight_dtype(layer, i, name, DType::F32)?;
    }
    Ok(())
}

impl LayerConverter for Conv {
    // Keras: no `supports_masking`, so the mask ends here (Keras warns).
    fn masking(&self, _layer: &Layer) -> Masking {
        Masking::Drops
    }

    fn infer(&self, layer: &Layer, inputs: &[TensorInfo]) -> Result<TensorInfo, BuildError> {
        let x = single_input(layer, inputs)?;
        let p = params(layer, self.rank)?;
        let (spatial, channels) = p.layout.split(layer, x)?;
        let channels =
            channels.ok_or_else(|| layer.error("the channels dimension must be static"))?;
        if channels % p.groups != 0 || p.filters % p.groups != 0 {
            return Err(layer.error(format!(
                "groups {} must divide both the input channels {channels} and filters {}",
                p.groups, p.filters
            )));
        }
        let names: &[&str] = if p.use_bias {
            &["kernel", "bias"]
        } else {
            &["kernel"]
        };
        expect_weights(layer, names)?;
        let mut kernel_shape = p.window.sizes.clone();
        kernel_shape.extend([channels / p.groups, p.filters]);
        expect_weight_shape(layer, 0, "kernel", &kernel_shape)?;
        if p.use_bias {
            expect_weight_shape(layer, 1, "bias", &[p.filters])?;
        }
        require_float32(layer, x, names)?;
        let out_spatial = p.window.output_dims(layer, "window", x, &spatial)?;
        conv_output(
            layer,
            p.layout,
            x.shape[0],
            out_spatial,
            p.filters,
            &p.activation,
        )
    }

    fn emit(
        &self,
        layer: &Layer,
        inputs: &[ValueRef<'_>],
        output: ValueRef<'_>,
        g: &mut GraphBuilder,
    ) -> Result<String, BuildError> {
        let p = params(layer, self.rank)?;
        let name = &layer.name;
        let kernel = &layer.weights[0];
        let per_group = kernel.shape[self.rank];
        let w = g.initializer_owned(
            &format!("{name}/W"),
            onnx_kernel(kernel, per_group, p.filters),
        );
        let bias = p
            .use_bias
            .then(|| g.initializer(&format!("{name}/bias"), &layer.weights[1]));
        let mut attrs = p.window.attrs(true);
        attrs.push(attr_int("group", p.groups as i64));
        let op = WeightedOp {
            op: "Conv",
            weights: &w,
            bias: bias.as_deref(),
            attrs,
        };
        op.emit(g, layer, p.layout, &p.activation, inputs[0].name, output);
        Ok(output.name.to_string())
    }
}

/// A `Conv` or `ConvTranspose` node with its initializers and attributes.
pub(crate) struct WeightedOp<'a> {
    pub op: &'a str,
    pub weights: &'a str,
    pub bias: Option<&'a str>,
    pub attrs: Vec<AttributeProto>,
}

impl WeightedOp<'_> {
    /// The node on `input` (in `layout`), then `activation`, into `output`.
    pub(crate) fn emit(
        self,
        g: &mut GraphBuilder,
        layer: &Layer,
        layout: Layout,
        activation: &Activation,
        input: &str,
        output: ValueRef<'_>,
    ) {
        layout.emit(g, layer, input, output, Some(activation), |g, x, out| {
            let mut op_inputs = vec![x, self.weights];
            op_inputs.extend(self.bias);
            g.node_into(self.op, &op_inputs, out, self.attrs);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_move_to_onnx_order() {
        // [k=2, per_group=1, filters=3], element (t, 0, m) = 10·t + m.
        let values: Vec<f32> = (0..2)
            .flat_map(|t| (0..3).map(move |m| (10 * t + m) as f32))
            .collect();
        let kernel = Tensor::from_f32(vec![2, 1, 3], &values);
        let w = onnx_kernel(&kernel, 1, 3);
        assert_eq!(w.shape, vec![3, 1, 2]);
        let got: Vec<f64> = w.to_f64_vec();
        assert_eq!(got, vec![0.0, 10.0, 1.0, 11.0, 2.0, 12.0]);
    }
}
