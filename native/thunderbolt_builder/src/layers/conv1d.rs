//! `Conv1D` → ONNX `Conv` (with the bias as its third input) + the activation's ops, between
//! `Transpose`s for `channels_last` (ONNX convolves `[batch, channels, steps]`).
//!
//! Keras' kernel `[kernel_size, channels / groups, filters]` becomes ONNX's
//! `[filters, channels / groups, kernel_size]`. Padding: `valid` is none, `same` is ONNX's
//! `SAME_UPPER` (the odd pad at the end, as TensorFlow and XLA place it), `causal` pads
//! `(kernel_size - 1) · dilation_rate` steps at the start.

use super::{expect_weight_shape, expect_weights, require_weight_dtype, single_input};
use crate::activation::Activation;
use crate::config::Config;
use crate::error::BuildError;
use crate::graph::{attr_int, attr_ints, attr_string, GraphBuilder};
use crate::registry::{LayerConverter, Masking, ValueRef};
use crate::shape::{format_shape, Dim, TensorInfo};
use crate::spec::Layer;
use crate::tensor::{DType, Tensor};

pub struct Conv1D;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Padding {
    Valid,
    Same,
    Causal,
}

/// A one-dimensional window: its size, stride, dilation and padding.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    pub size: usize,
    pub stride: usize,
    pub dilation: usize,
    pub padding: Padding,
}

impl Window {
    /// The output length over `steps` steps (`None` when dynamic or the window does not fit).
    pub(crate) fn output_len(&self, steps: Dim) -> Option<usize> {
        let steps = steps?;
        let span = (self.size - 1) * self.dilation + 1;
        match self.padding {
            Padding::Same => Some(steps.div_ceil(self.stride)),
            Padding::Causal => Some((steps - 1) / self.stride + 1).filter(|_| steps > 0),
            Padding::Valid => (steps >= span).then(|| (steps - span) / self.stride + 1),
        }
    }

    /// The ONNX attributes of this window (`kernel_shape`, `strides`, padding).
    pub(crate) fn attrs(&self) -> Vec<onnx_protobuf::AttributeProto> {
        let mut attrs = vec![
            attr_ints("kernel_shape", &[self.size as i64]),
            attr_ints("strides", &[self.stride as i64]),
        ];
        match self.padding {
            Padding::Valid => {}
            Padding::Same => attrs.push(attr_string("auto_pad", "SAME_UPPER")),
            Padding::Causal => attrs.push(attr_ints(
                "pads",
                &[((self.size - 1) * self.dilation) as i64, 0],
            )),
        }
        attrs
    }
}

pub(crate) fn padding(
    layer: &Layer,
    cfg: &Config<'_>,
    causal_allowed: bool,
) -> Result<Padding, BuildError> {
    match cfg.str_or("padding", "valid")? {
        "valid" => Ok(Padding::Valid),
        "same" => Ok(Padding::Same),
        "causal" if causal_allowed => Ok(Padding::Causal),
        other => Err(layer.error(format!("padding {other:?} is not supported"))),
    }
}

/// `[batch, steps, channels]` ↔ `[batch, channels, steps]`.
pub(crate) fn swap_last_axes(g: &mut GraphBuilder, x: &str, hint: &str) -> String {
    g.node("Transpose", &[x], hint, vec![attr_ints("perm", &[0, 2, 1])])
}

/// Reads a rank-3 input as (batch, steps, channels), whatever its data format.
pub(crate) fn steps_and_channels(
    layer: &Layer,
    x: &TensorInfo,
    first: bool,
) -> Result<(Dim, Dim), BuildError> {
    match x.shape.as_slice() {
        [_, a, b] => Ok(if first { (*b, *a) } else { (*a, *b) }),
        _ => Err(layer.error(format!(
            "expects an input of rank 3 (batch, steps, channels), got {}",
            format_shape(&x.shape)
        ))),
    }
}

struct Params {
    filters: usize,
    window: Window,
    groups: usize,
    first: bool,
    use_bias: bool,
    activation: Activation,
}

fn params(layer: &Layer) -> Result<Params, BuildError> {
    let cfg = Config::of(layer)?;
    let padding = padding(layer, &cfg, true)?;
    let first = cfg.channels_first()?;
    if first && padding == Padding::Causal {
        return Err(layer.error("causal padding needs data_format=\"channels_last\""));
    }
    Ok(Params {
        filters: cfg.one_usize("filters", None)?,
        window: Window {
            size: cfg.one_usize("kernel_size", None)?,
            stride: cfg.one_usize("strides", Some(1))?,
            dilation: cfg.one_usize("dilation_rate", Some(1))?,
            padding,
        },
        groups: cfg.one_usize("groups", Some(1))?,
        first,
        use_bias: cfg.bool_or("use_bias", true)?,
        activation: Activation::parse(layer, cfg.get("activation"))?,
    })
}

impl LayerConverter for Conv1D {
    // Keras: no `supports_masking`, so the mask ends here (Keras warns).
    fn masking(&self, _layer: &Layer) -> Masking {
        Masking::Drops
    }

    fn infer(&self, layer: &Layer, inputs: &[TensorInfo]) -> Result<TensorInfo, BuildError> {
        let x = single_input(layer, inputs)?;
        if x.dtype != DType::F32 {
            return Err(layer.dtype_error("input", x.dtype, "float32"));
        }
        let p = params(layer)?;
        let (steps, channels) = steps_and_channels(layer, x, p.first)?;
        let channels =
            channels.ok_or_else(|| layer.error("the channels dimension must be static"))?;
        if channels % p.groups != 0 || p.filters % p.groups != 0 {
            return Err(layer.error(format!(
                "groups {} must divide both the input channels {channels} and filters {}",
                p.groups, p.filters
            )));
        }
        if p.window.stride > 1 && p.window.dilation > 1 {
            return Err(layer.error("strides and dilation_rate cannot both be above 1"));
        }
        let names: &[&str] = if p.use_bias {
            &["kernel", "bias"]
        } else {
            &["kernel"]
        };
        expect_weights(layer, names)?;
        expect_weight_shape(
            layer,
            0,
            "kernel",
            &[p.window.size, channels / p.groups, p.filters],
        )?;
        if p.use_bias {
            expect_weight_shape(layer, 1, "bias", &[p.filters])?;
        }
        for (i, name) in names.iter().enumerate() {
            require_weight_dtype(layer, i, name, DType::F32)?;
        }
        let out_steps = p.window.output_len(steps);
        if steps.is_some() && out_steps.is_none() {
            return Err(layer.error(format!(
                "a window of {} steps (dilation {}) does not fit an input of {} steps",
                p.window.size,
                p.window.dilation,
                format_shape(&x.shape)
            )));
        }
        let shape = if p.first {
            vec![x.shape[0], Some(p.filters), out_steps]
        } else {
            vec![x.shape[0], out_steps, Some(p.filters)]
        };
        let out = TensorInfo::new(DType::F32, shape);
        p.activation.check(layer, &out)?;
        Ok(out)
    }

    fn emit(
        &self,
        layer: &Layer,
        inputs: &[ValueRef<'_>],
        output: ValueRef<'_>,
        g: &mut GraphBuilder,
    ) -> Result<String, BuildError> {
        let p = params(layer)?;
        let name = &layer.name;
        let kernel = &layer.weights[0];
        let (k, per_group, filters) = (kernel.shape[0], kernel.shape[1], kernel.shape[2]);
        let values = kernel.to_f64_vec();
        let mut w = Vec::with_capacity(values.len());
        for m in 0..filters {
            for c in 0..per_group {
                w.extend((0..k).map(|t| values[(t * per_group + c) * filters + m]));
            }
        }
        let w = Tensor::from_f64_as(DType::F32, vec![filters, per_group, k], &w)
            .ok_or_else(|| layer.dtype_error("kernel", DType::F32, "float32"))?;
        let w = g.initializer_owned(&format!("{name}/W"), w);
        let x = if p.first {
            inputs[0].name.to_string()
        } else {
            swap_last_axes(g, inputs[0].name, &format!("{name}/channels_first"))
        };
        let mut conv_inputs = vec![x, w];
        if p.use_bias {
            conv_inputs.push(g.initializer(&format!("{name}/bias"), &layer.weights[1]));
        }
        let mut attrs = p.window.attrs();
        attrs.extend([
            attr_ints("dilations", &[p.window.dilation as i64]),
            attr_int("group", p.groups as i64),
        ]);
        let conv_inputs: Vec<&str> = conv_inputs.iter().map(String::as_str).collect();
        let linear = p.activation.is_linear();
        let conv_out = if p.first && linear {
            output.name.to_string()
        } else {
            g.fresh(&format!("{name}/Conv"))
        };
        g.node_into("Conv", &conv_inputs, &conv_out, attrs);
        let pre = if p.first {
            conv_out
        } else if linear {
            g.node_into(
                "Transpose",
                &[&conv_out],
                output.name,
                vec![attr_ints("perm", &[0, 2, 1])],
            );
            output.name.to_string()
        } else {
            swap_last_axes(g, &conv_out, &format!("{name}/channels_last"))
        };
        if !linear {
            p.activation.emit(g, &pre, output.info, name, output.name);
        }
        Ok(output.name.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_lengths_follow_keras() {
        let w = |size, stride, dilation, padding| Window {
            size,
            stride,
            dilation,
            padding,
        };
        assert_eq!(w(3, 1, 1, Padding::Valid).output_len(Some(10)), Some(8));
        assert_eq!(w(3, 2, 1, Padding::Valid).output_len(Some(10)), Some(4));
        assert_eq!(w(3, 1, 2, Padding::Valid).output_len(Some(10)), Some(6));
        assert_eq!(w(3, 2, 1, Padding::Same).output_len(Some(9)), Some(5));
        assert_eq!(w(3, 1, 2, Padding::Causal).output_len(Some(10)), Some(10));
        assert_eq!(w(5, 1, 1, Padding::Valid).output_len(Some(4)), None);
        assert_eq!(w(3, 1, 1, Padding::Same).output_len(None), None);
    }
}
