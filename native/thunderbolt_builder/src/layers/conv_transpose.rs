//! `Conv1DTranspose`, `Conv2DTranspose` and `Conv3DTranspose` → ONNX `ConvTranspose` (with the
//! bias as its third input), then the activation's ops, between `Transpose`s for
//! `channels_last`.
//!
//! Keras' kernel `[k1, ..., kn, filters, channels]` becomes ONNX's
//! `[channels, filters, k1, ..., kn]`. Both spread each input cell over the output with the
//! kernel as it is; they differ only in how much of that full output they keep. Keras (as
//! its JAX backend computes it) pads the dilated input by `(left, right)` per axis, where the
//! full output is padding `k' - 1` on both sides (`k'` the dilated kernel size), so ONNX
//! trims `k' - 1 - left` cells at the start and `k' - 1 - right` at the end; a negative trim
//! at the end is ONNX's `output_padding`.

use super::conv::{conv_output, onnx_kernel, require_float32, WeightedOp};
use super::spatial::{check_strides_or_dilation, per_axis, per_axis_from, Layout, Padding};
use super::{expect_weight_shape, expect_weights, single_input};
use crate::activation::Activation;
use crate::config::Config;
use crate::error::BuildError;
use crate::graph::{attr_ints, GraphBuilder};
use crate::registry::{LayerConverter, Masking, ValueRef};
use crate::shape::{Dim, TensorInfo};
use crate::spec::Layer;

/// A transposed convolution over `rank` spatial axes (1, 2 or 3).
pub struct ConvTranspose {
    pub rank: usize,
}

struct Params {
    filters: usize,
    sizes: Vec<usize>,
    strides: Vec<usize>,
    dilations: Vec<usize>,
    same: bool,
    output_padding: Option<Vec<usize>>,
    layout: Layout,
    use_bias: bool,
    activation: Activation,
}

/// One axis of a transposed convolution: its dilated kernel size, stride, and Keras'
/// padding of the dilated input (`left`, `right`).
struct Axis {
    span: usize,
    stride: usize,
    left: usize,
    right: usize,
}

impl Axis {
    /// The output length for `steps` input steps, as Keras computes it.
    fn output_len(&self, steps: usize) -> Option<usize> {
        (steps.checked_sub(1)? * self.stride + self.left + self.right + 2).checked_sub(self.span)
    }

    /// ONNX's trims at the start and end of the full output, and its `output_padding`.
    fn trims(&self) -> (i64, i64, i64) {
        let full = self.span as i64 - 1;
        let end = full - self.right as i64;
        (full - self.left as i64, end.max(0), (-end).max(0))
    }
}

impl Params {
    fn read(layer: &Layer, rank: usize) -> Result<Self, BuildError> {
        let cfg = Config::of(layer)?;
        let ones = vec![1; rank];
        let same = Padding::read(layer, &cfg, false)? == Padding::Same;
        let strides = per_axis(&cfg, layer, "strides", rank, Some(&ones))?;
        let dilations = per_axis(&cfg, layer, "dilation_rate", rank, Some(&ones))?;
        check_strides_or_dilation(layer, &strides, &dilations)?;
        let output_padding = match cfg.get("output_padding") {
            None => None,
            Some(_) => {
                let padding = per_axis_from(&cfg, layer, "output_padding", rank, None, 0)?;
                if padding.iter().zip(&strides).any(|(&p, &s)| p >= s) {
                    return Err(layer.error(format!(
                        "output_padding {padding:?} must be smaller than the strides {strides:?}"
                    )));
                }
                Some(padding)
            }
        };
        Ok(Params {
            filters: cfg.one_usize("filters", None)?,
            sizes: per_axis(&cfg, layer, "kernel_size", rank, None)?,
            strides,
            dilations,
            same,
            output_padding,
            layout: Layout::read(&cfg, rank)?,
            use_bias: cfg.bool_or("use_bias", true)?,
            activation: Activation::parse(layer, cfg.get("activation"))?,
        })
    }

    /// Keras' padding of each axis (its JAX backend's
    /// `_convert_conv_transpose_padding_args_from_keras_to_jax`).
    fn axes(&self) -> Vec<Axis> {
        (0..self.sizes.len())
            .map(|i| {
                let span = (self.sizes[i] - 1) * self.dilations[i] + 1;
                let stride = self.strides[i];
                let output_padding = self.output_padding.as_ref().map(|p| p[i]);
                let (left, right) = if self.same {
                    let total = match output_padding {
                        None => stride + span - 2,
                        Some(p) => span + span % 2 - 2 + p,
                    };
                    let left = (total / 2 + total % 2).min(span - 1);
                    (left, total - left)
                } else {
                    let extra = output_padding.unwrap_or(stride.max(span) - span);
                    (span - 1, span - 1 + extra)
                };
                Axis {
                    span,
                    stride,
                    left,
                    right,
                }
            })
            .collect()
    }
}

impl LayerConverter for ConvTranspose {
    // Keras: no `supports_masking`, so the mask ends here (Keras warns).
    fn masking(&self, _layer: &Layer) -> Masking {
        Masking::Drops
    }

    fn infer(&self, layer: &Layer, inputs: &[TensorInfo]) -> Result<TensorInfo, BuildError> {
        let x = single_input(layer, inputs)?;
        let p = Params::read(layer, self.rank)?;
        let (spatial, channels) = p.layout.split(layer, x)?;
        let channels =
            channels.ok_or_else(|| layer.error("the channels dimension must be static"))?;
        let names: &[&str] = if p.use_bias {
            &["kernel", "bias"]
        } else {
            &["kernel"]
        };
        expect_weights(layer, names)?;
        let mut kernel_shape = p.sizes.clone();
        kernel_shape.extend([p.filters, channels]);
        expect_weight_shape(layer, 0, "kernel", &kernel_shape)?;
        if p.use_bias {
            expect_weight_shape(layer, 1, "bias", &[p.filters])?;
        }
        require_float32(layer, x, names)?;
        let out_spatial: Vec<Dim> = spatial
            .iter()
            .zip(p.axes())
            .map(|(d, axis)| d.and_then(|d| axis.output_len(d)))
            .collect();
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
        let p = Params::read(layer, self.rank)?;
        let name = &layer.name;
        let kernel = &layer.weights[0];
        let channels = kernel.shape[self.rank + 1];
        let w = g.initializer_owned(
            &format!("{name}/W"),
            onnx_kernel(kernel, p.filters, channels),
        );
        let bias = p
            .use_bias
            .then(|| g.initializer(&format!("{name}/bias"), &layer.weights[1]));
        let ints = |v: &[usize]| v.iter().map(|&n| n as i64).collect::<Vec<_>>();
        let trims: Vec<(i64, i64, i64)> = p.axes().iter().map(Axis::trims).collect();
        let pads: Vec<i64> = trims
            .iter()
            .map(|t| t.0)
            .chain(trims.iter().map(|t| t.1))
            .collect();
        let output_padding: Vec<i64> = trims.iter().map(|t| t.2).collect();
        let attrs = vec![
            attr_ints("kernel_shape", &ints(&p.sizes)),
            attr_ints("strides", &ints(&p.strides)),
            attr_ints("dilations", &ints(&p.dilations)),
            attr_ints("pads", &pads),
            attr_ints("output_padding", &output_padding),
        ];
        let op = WeightedOp {
            op: "ConvTranspose",
            weights: &w,
            bias: bias.as_deref(),
            attrs,
        };
        op.emit(g, layer, p.layout, &p.activation, inputs[0].name, output);
        Ok(output.name.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn axis(size: usize, stride: usize, same: bool, output_padding: Option<usize>) -> Axis {
        let p = Params {
            filters: 1,
            sizes: vec![size],
            strides: vec![stride],
            dilations: vec![1],
            same,
            output_padding: output_padding.map(|p| vec![p]),
            layout: Layout {
                rank: 1,
                channels_first: false,
            },
            use_bias: false,
            activation: Activation::Linear,
        };
        p.axes().remove(0)
    }

    #[test]
    fn output_lengths_follow_keras() {
        // Keras: valid gives in·s + max(k - s, 0), same gives in·s, and with output_padding
        // (in - 1)·s + k - 2·(k / 2 when same) + output_padding.
        assert_eq!(axis(3, 2, false, None).output_len(5), Some(11));
        assert_eq!(axis(2, 3, false, None).output_len(5), Some(15));
        assert_eq!(axis(3, 2, true, None).output_len(5), Some(10));
        assert_eq!(axis(4, 3, true, None).output_len(5), Some(15));
        assert_eq!(axis(3, 2, false, Some(1)).output_len(5), Some(12));
        assert_eq!(axis(3, 2, true, Some(1)).output_len(5), Some(10));
        assert_eq!(axis(3, 2, true, None).trims(), (0, 1, 0));
        assert_eq!(axis(2, 3, false, None).trims(), (0, 0, 1));
    }
}
