//! `DepthwiseConv1D`, `DepthwiseConv2D` → one ONNX `Conv` with a group per input channel,
//! then the activation's ops, between `Transpose`s for `channels_last`; and
//! `SeparableConv1D`, `SeparableConv2D`: that depthwise `Conv` (no bias) followed by a
//! pointwise one (a 1-wide `Conv` with the bias).
//!
//! Keras' depthwise kernel `[k1, ..., kn, channels, depth_multiplier]` gives output channel
//! `c · depth_multiplier + m` from input channel `c`: as ONNX's grouped `Conv` orders them,
//! with the kernel `[channels · depth_multiplier, 1, k1, ..., kn]`. The pointwise kernel
//! `[1, ..., 1, channels · depth_multiplier, filters]` becomes `[filters, channels ·
//! depth_multiplier, 1, ..., 1]`.

use super::conv::{conv_output, conv_window, onnx_kernel, require_float32, WeightedOp};
use super::spatial::{Layout, Window};
use super::{expect_weight_shape, expect_weights, single_input};
use crate::activation::Activation;
use crate::config::Config;
use crate::error::BuildError;
use crate::graph::{attr_int, attr_ints, GraphBuilder};
use crate::registry::{LayerConverter, Masking, ValueRef};
use crate::shape::TensorInfo;
use crate::spec::Layer;

/// A depthwise convolution over `rank` spatial axes (1 or 2), followed by a pointwise one
/// when `separable`.
pub struct DepthwiseConv {
    pub rank: usize,
    pub separable: bool,
}

struct Params {
    window: Window,
    depth_multiplier: usize,
    /// `SeparableConv*D`'s `filters`; `None` for a depthwise layer.
    filters: Option<usize>,
    layout: Layout,
    use_bias: bool,
    activation: Activation,
}

impl Params {
    fn read(layer: &Layer, rank: usize, separable: bool) -> Result<Self, BuildError> {
        let cfg = Config::of(layer)?;
        let layout = Layout::read(&cfg, rank)?;
        Ok(Params {
            window: conv_window(layer, &cfg, layout, false)?,
            depth_multiplier: cfg.one_usize("depth_multiplier", Some(1))?,
            filters: separable
                .then(|| cfg.one_usize("filters", None))
                .transpose()?,
            layout,
            use_bias: cfg.bool_or("use_bias", true)?,
            activation: Activation::parse(layer, cfg.get("activation"))?,
        })
    }

    /// Checks the weights and input, and gives the output's type.
    fn infer(&self, layer: &Layer, x: &TensorInfo) -> Result<TensorInfo, BuildError> {
        let (spatial, channels) = self.layout.split(layer, x)?;
        let channels =
            channels.ok_or_else(|| layer.error("the channels dimension must be static"))?;
        let depthwise = channels * self.depth_multiplier;
        let mut names = vec![if self.filters.is_some() {
            "depthwise_kernel"
        } else {
            "kernel"
        }];
        if self.filters.is_some() {
            names.push("pointwise_kernel");
        }
        if self.use_bias {
            names.push("bias");
        }
        expect_weights(layer, &names)?;
        let mut kernel_shape = self.window.sizes.clone();
        kernel_shape.extend([channels, self.depth_multiplier]);
        expect_weight_shape(layer, 0, names[0], &kernel_shape)?;
        let out_channels = match self.filters {
            Some(filters) => {
                let mut pointwise = vec![1; self.layout.rank];
                pointwise.extend([depthwise, filters]);
                expect_weight_shape(layer, 1, "pointwise_kernel", &pointwise)?;
                filters
            }
            None => depthwise,
        };
        if self.use_bias {
            expect_weight_shape(layer, names.len() - 1, "bias", &[out_channels])?;
        }
        require_float32(layer, x, &names)?;
        let out_spatial = self.window.output_dims(layer, "window", x, &spatial)?;
        conv_output(
            layer,
            self.layout,
            x.shape[0],
            out_spatial,
            out_channels,
            &self.activation,
        )
    }

    fn emit(
        &self,
        layer: &Layer,
        inputs: &[ValueRef<'_>],
        output: ValueRef<'_>,
        g: &mut GraphBuilder,
    ) {
        let name = &layer.name;
        let rank = self.layout.rank;
        let kernel = &layer.weights[0];
        let depthwise = kernel.shape[rank] * self.depth_multiplier;
        let w = g.initializer_owned(
            &format!("{name}/depthwise_W"),
            onnx_kernel(kernel, 1, depthwise),
        );
        let pointwise = self.filters.map(|filters| {
            g.initializer_owned(
                &format!("{name}/pointwise_W"),
                onnx_kernel(&layer.weights[1], depthwise, filters),
            )
        });
        let bias = self
            .use_bias
            .then(|| g.initializer(&format!("{name}/bias"), layer.weights.last().expect("bias")));
        let mut attrs = self.window.attrs(true);
        attrs.push(attr_int("group", kernel.shape[rank] as i64));
        let input = inputs[0].name;
        let Some(pointwise) = pointwise else {
            let op = WeightedOp {
                op: "Conv",
                weights: &w,
                bias: bias.as_deref(),
                attrs,
            };
            op.emit(g, layer, self.layout, &self.activation, input, output);
            return;
        };
        self.layout.emit(
            g,
            layer,
            input,
            output,
            Some(&self.activation),
            |g, x, out| {
                let deep = g.node("Conv", &[x, &w], &format!("{name}/depthwise"), attrs);
                let mut conv_inputs = vec![deep.as_str(), pointwise.as_str()];
                conv_inputs.extend(bias.as_deref());
                let pointwise_attrs = vec![attr_ints("kernel_shape", &vec![1; rank])];
                g.node_into("Conv", &conv_inputs, out, pointwise_attrs);
            },
        );
    }
}

impl LayerConverter for DepthwiseConv {
    // Keras: no `supports_masking`, so the mask ends here (Keras warns).
    fn masking(&self, _layer: &Layer) -> Masking {
        Masking::Drops
    }

    fn infer(&self, layer: &Layer, inputs: &[TensorInfo]) -> Result<TensorInfo, BuildError> {
        let x = single_input(layer, inputs)?;
        Params::read(layer, self.rank, self.separable)?.infer(layer, x)
    }

    fn emit(
        &self,
        layer: &Layer,
        inputs: &[ValueRef<'_>],
        output: ValueRef<'_>,
        g: &mut GraphBuilder,
    ) -> Result<String, BuildError> {
        Params::read(layer, self.rank, self.separable)?.emit(layer, inputs, output, g);
        Ok(output.name.to_string())
    }
}
