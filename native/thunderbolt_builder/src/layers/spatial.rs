//! What the convolution, pooling, padding, cropping and upsampling layers share: the
//! layout of `[batch, spatial..., channels]` (or channels first) values, the windows they
//! slide, and the per-axis settings Keras gives as one integer or one per axis.
//!
//! ONNX's `Conv`, `MaxPool`, `AveragePool` and linear `Resize` work channels first, so a
//! `channels_last` layer is emitted between two `Transpose`s.

use onnx_protobuf::AttributeProto;

use crate::config::Config;
use crate::error::BuildError;
use crate::graph::{attr_ints, attr_string, GraphBuilder};
use crate::registry::ValueRef;
use crate::shape::{format_shape, Dim, TensorInfo};
use crate::spec::Layer;

/// The largest window, stride, dilation, pad or factor accepted (as for other sizes).
const MAX_SETTING: usize = 1 << 24;

/// Where the channels sit in a value with `rank` spatial axes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Layout {
    pub rank: usize,
    pub channels_first: bool,
}

impl Layout {
    /// The layout from the layer's `data_format`.
    pub(crate) fn read(cfg: &Config<'_>, rank: usize) -> Result<Self, BuildError> {
        Ok(Layout {
            rank,
            channels_first: cfg.channels_first()?,
        })
    }

    /// The input's spatial dimensions and channels, checking its rank.
    pub(crate) fn split(
        &self,
        layer: &Layer,
        x: &TensorInfo,
    ) -> Result<(Vec<Dim>, Dim), BuildError> {
        if x.rank() != self.rank + 2 {
            let axes = match self.rank {
                1 => "steps",
                2 => "rows, columns",
                _ => "spatial axes",
            };
            let order = if self.channels_first {
                format!("batch, channels, {axes}")
            } else {
                format!("batch, {axes}, channels")
            };
            return Err(layer.error(format!(
                "expects an input of rank {} ({order}), got {}",
                self.rank + 2,
                format_shape(&x.shape)
            )));
        }
        Ok(if self.channels_first {
            (x.shape[2..].to_vec(), x.shape[1])
        } else {
            (x.shape[1..=self.rank].to_vec(), x.shape[self.rank + 1])
        })
    }

    /// A shape in this layout.
    pub(crate) fn shape(&self, batch: Dim, spatial: Vec<Dim>, channels: Dim) -> Vec<Dim> {
        let mut shape = Vec::with_capacity(self.rank + 2);
        shape.push(batch);
        if self.channels_first {
            shape.push(channels);
            shape.extend(spatial);
        } else {
            shape.extend(spatial);
            shape.push(channels);
        }
        shape
    }

    /// The axis of the value that holds spatial axis `i`.
    pub(crate) fn spatial_axis(&self, i: usize) -> usize {
        if self.channels_first {
            i + 2
        } else {
            i + 1
        }
    }

    /// `x` with its channels first (a `Transpose` unless they already are).
    pub(crate) fn channels_first_value(&self, g: &mut GraphBuilder, x: &str, hint: &str) -> String {
        if self.channels_first {
            return x.to_string();
        }
        let perm: Vec<i64> = std::iter::once(0)
            .chain(std::iter::once(self.rank as i64 + 1))
            .chain(1..=self.rank as i64)
            .collect();
        g.node("Transpose", &[x], hint, vec![attr_ints("perm", &perm)])
    }

    /// Writes `y`, channels first, into `out` in this layout.
    fn channels_first_into(&self, g: &mut GraphBuilder, y: &str, out: &str) {
        let perm: Vec<i64> = std::iter::once(0)
            .chain(2..=self.rank as i64 + 1)
            .chain(std::iter::once(1))
            .collect();
        g.node_into("Transpose", &[y], out, vec![attr_ints("perm", &perm)]);
    }

    /// Emits a channels-first computation for a layer in this layout: `body` gets the
    /// input with its channels first and the name its last node must write, and the result
    /// goes, through `activation` (ops on the layer's output, which has the layout's
    /// order), into `output`. No `Transpose` or `Identity` is added where none is needed.
    pub(crate) fn emit(
        &self,
        g: &mut GraphBuilder,
        layer: &Layer,
        input: &str,
        output: ValueRef<'_>,
        activation: Option<&crate::activation::Activation>,
        body: impl FnOnce(&mut GraphBuilder, &str, &str),
    ) {
        let name = &layer.name;
        let activation = activation.filter(|a| !a.is_linear());
        let x = self.channels_first_value(g, input, &format!("{name}/channels_first"));
        let direct = self.channels_first && activation.is_none();
        let body_out = if direct {
            output.name.to_string()
        } else {
            g.fresh(&format!(
                "{name}/{}",
                if self.channels_first {
                    "pre_activation"
                } else {
                    "channels_first_out"
                }
            ))
        };
        body(g, &x, &body_out);
        if direct {
            return;
        }
        let laid_out = match (self.channels_first, activation) {
            (true, _) => body_out,
            (false, None) => {
                self.channels_first_into(g, &body_out, output.name);
                return;
            }
            (false, Some(_)) => {
                let out = g.fresh(&format!("{name}/channels_last"));
                self.channels_first_into(g, &body_out, &out);
                out
            }
        };
        if let Some(activation) = activation {
            activation.emit(g, &laid_out, output.info, name, output.name);
        }
    }
}

/// How a window treats the edges, as Keras' `padding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Padding {
    Valid,
    /// TensorFlow's and XLA's `same`: the odd pad at the end (ONNX `SAME_UPPER`).
    Same,
    /// `(size - 1) · dilation` steps in front (one spatial axis only).
    Causal,
}

impl Padding {
    pub(crate) fn read(
        layer: &Layer,
        cfg: &Config<'_>,
        causal_allowed: bool,
    ) -> Result<Self, BuildError> {
        match cfg.str_or("padding", "valid")? {
            "valid" => Ok(Padding::Valid),
            "same" => Ok(Padding::Same),
            "causal" if causal_allowed => Ok(Padding::Causal),
            other => Err(layer.error(format!("padding {other:?} is not supported"))),
        }
    }
}

/// A window over the spatial axes: its size, stride and dilation on each, and padding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Window {
    pub sizes: Vec<usize>,
    pub strides: Vec<usize>,
    pub dilations: Vec<usize>,
    pub padding: Padding,
}

impl Window {
    /// The output length of one axis of `steps` (`None` when dynamic or the window does not
    /// fit).
    fn output_len(&self, axis: usize, steps: Dim) -> Option<usize> {
        let steps = steps?;
        let (size, stride) = (self.sizes[axis], self.strides[axis]);
        let span = (size - 1) * self.dilations[axis] + 1;
        match self.padding {
            Padding::Same => Some(steps.div_ceil(stride)),
            Padding::Causal => Some((steps - 1) / stride + 1).filter(|_| steps > 0),
            Padding::Valid => (steps >= span).then(|| (steps - span) / stride + 1),
        }
    }

    /// The output's spatial dimensions, or an error naming the axis the window does not fit.
    pub(crate) fn output_dims(
        &self,
        layer: &Layer,
        what: &str,
        x: &TensorInfo,
        spatial: &[Dim],
    ) -> Result<Vec<Dim>, BuildError> {
        spatial
            .iter()
            .enumerate()
            .map(|(axis, &steps)| {
                let out = self.output_len(axis, steps);
                if steps.is_some() && out.is_none() {
                    let dilated = if self.dilations.iter().any(|&d| d > 1) {
                        format!(" (dilation {})", format_sizes(&self.dilations))
                    } else {
                        String::new()
                    };
                    return Err(layer.error(format!(
                        "a {what} of {}{dilated} does not fit an input of shape {}",
                        format_sizes(&self.sizes),
                        format_shape(&x.shape)
                    )));
                }
                Ok(out)
            })
            .collect()
    }

    /// Keras refuses strides and dilation above 1 together; so do we.
    pub(crate) fn check_strides_or_dilation(&self, layer: &Layer) -> Result<(), BuildError> {
        check_strides_or_dilation(layer, &self.strides, &self.dilations)
    }

    /// The ONNX attributes of this window: `kernel_shape`, `strides`, the padding and, when
    /// `with_dilations`, `dilations` (pooling ops take none).
    pub(crate) fn attrs(&self, with_dilations: bool) -> Vec<AttributeProto> {
        let ints = |v: &[usize]| v.iter().map(|&n| n as i64).collect::<Vec<_>>();
        let mut attrs = vec![
            attr_ints("kernel_shape", &ints(&self.sizes)),
            attr_ints("strides", &ints(&self.strides)),
        ];
        match self.padding {
            Padding::Valid => {}
            // ONNX Runtime refuses `auto_pad` with dilations above 1. Those come with
            // strides of 1 (see `check_strides_or_dilation`), where `same` pads
            // `(size - 1) · dilation` cells whatever the input, the odd one at the end.
            Padding::Same if self.dilations.iter().any(|&d| d > 1) => {
                let totals: Vec<i64> = self
                    .sizes
                    .iter()
                    .zip(&self.dilations)
                    .map(|(&size, &dilation)| ((size - 1) * dilation) as i64)
                    .collect();
                let pads: Vec<i64> = totals
                    .iter()
                    .map(|total| total / 2)
                    .chain(totals.iter().map(|total| total - total / 2))
                    .collect();
                attrs.push(attr_ints("pads", &pads));
            }
            Padding::Same => attrs.push(attr_string("auto_pad", "SAME_UPPER")),
            Padding::Causal => {
                let front = ((self.sizes[0] - 1) * self.dilations[0]) as i64;
                attrs.push(attr_ints("pads", &[front, 0]));
            }
        }
        if with_dilations {
            attrs.push(attr_ints("dilations", &ints(&self.dilations)));
        }
        attrs
    }
}

/// Keras refuses strides and dilation above 1 together (every convolution, transposed or
/// not); so do we.
pub(crate) fn check_strides_or_dilation(
    layer: &Layer,
    strides: &[usize],
    dilations: &[usize],
) -> Result<(), BuildError> {
    if strides.iter().any(|&s| s > 1) && dilations.iter().any(|&d| d > 1) {
        return Err(layer.error("strides and dilation_rate cannot both be above 1"));
    }
    Ok(())
}

fn format_sizes(sizes: &[usize]) -> String {
    match sizes {
        [one] => one.to_string(),
        many => format!("{many:?}"),
    }
}

/// A positive per-axis setting (`kernel_size`, `strides`, `pool_size`, `size`): one integer
/// for every axis, or a list of one per axis.
pub(crate) fn per_axis(
    cfg: &Config<'_>,
    layer: &Layer,
    key: &str,
    rank: usize,
    default: Option<&[usize]>,
) -> Result<Vec<usize>, BuildError> {
    per_axis_from(cfg, layer, key, rank, default, 1)
}

/// [`per_axis`] with values from `min` (0 for `output_padding`) up.
pub(crate) fn per_axis_from(
    cfg: &Config<'_>,
    layer: &Layer,
    key: &str,
    rank: usize,
    default: Option<&[usize]>,
    min: usize,
) -> Result<Vec<usize>, BuildError> {
    let kind = if min > 0 { "positive" } else { "non-negative" };
    let bad = || {
        layer.error(format!(
            "config key {key:?} must be a {kind} integer or a list of {rank}"
        ))
    };
    let values = match cfg.get(key) {
        None => default.map(<[usize]>::to_vec).ok_or_else(bad)?,
        Some(v) => match (v.as_u64(), v.as_array()) {
            (Some(n), _) => vec![usize::try_from(n).map_err(|_| bad())?; rank],
            (None, Some(items)) if items.len() == rank => items
                .iter()
                .map(|x| x.as_u64().and_then(|n| usize::try_from(n).ok()))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(bad)?,
            _ => return Err(bad()),
        },
    };
    if values.iter().any(|&n| n < min || n > MAX_SETTING) {
        return Err(bad());
    }
    Ok(values)
}

/// The layout and the per-axis `(before, after)` amounts under `key` of a padding or
/// cropping layer (see [`per_axis_pairs`]).
pub(crate) fn sides(
    layer: &Layer,
    key: &str,
    rank: usize,
    default: usize,
) -> Result<(Vec<(usize, usize)>, Layout), BuildError> {
    let cfg = Config::of(layer)?;
    let amounts = per_axis_pairs(&cfg, layer, key, rank, default)?;
    Ok((amounts, Layout::read(&cfg, rank)?))
}

/// Per-axis `(before, after)` amounts (`padding` of `ZeroPadding*D`, `cropping` of
/// `Cropping*D`): one integer for every side; one integer per axis, both sides alike; or a
/// pair per axis. With one axis, a list of two integers is that axis' pair.
pub(crate) fn per_axis_pairs(
    cfg: &Config<'_>,
    layer: &Layer,
    key: &str,
    rank: usize,
    default: usize,
) -> Result<Vec<(usize, usize)>, BuildError> {
    let bad = || {
        layer.error(format!(
            "config key {key:?} must be a non-negative integer, a list of {rank} or a list of {rank} pairs"
        ))
    };
    let amount = |v: &serde_json::Value| {
        v.as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .filter(|&n| n <= MAX_SETTING)
    };
    let pair = |v: &serde_json::Value| match v.as_array().map(Vec::as_slice) {
        Some([a, b]) => Some((amount(a)?, amount(b)?)),
        _ => amount(v).map(|n| (n, n)),
    };
    let Some(value) = cfg.get(key) else {
        return Ok(vec![(default, default); rank]);
    };
    if let Some(n) = amount(value) {
        return Ok(vec![(n, n); rank]);
    }
    if rank == 1 {
        return pair(value).map(|p| vec![p]).ok_or_else(bad);
    }
    match value.as_array() {
        Some(items) if items.len() == rank => items
            .iter()
            .map(pair)
            .collect::<Option<Vec<_>>>()
            .ok_or_else(bad),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn layer(config: serde_json::Value) -> Layer {
        Layer {
            name: "l".into(),
            class_name: "Conv2D".into(),
            config,
            inbound: vec![],
            weights: vec![],
        }
    }

    fn window(sizes: &[usize], strides: &[usize], dilations: &[usize], padding: Padding) -> Window {
        Window {
            sizes: sizes.to_vec(),
            strides: strides.to_vec(),
            dilations: dilations.to_vec(),
            padding,
        }
    }

    #[test]
    fn output_lengths_follow_keras() {
        let len = |w: Window, steps| w.output_len(0, steps);
        assert_eq!(
            len(window(&[3], &[1], &[1], Padding::Valid), Some(10)),
            Some(8)
        );
        assert_eq!(
            len(window(&[3], &[2], &[1], Padding::Valid), Some(10)),
            Some(4)
        );
        assert_eq!(
            len(window(&[3], &[1], &[2], Padding::Valid), Some(10)),
            Some(6)
        );
        assert_eq!(
            len(window(&[3], &[2], &[1], Padding::Same), Some(9)),
            Some(5)
        );
        assert_eq!(
            len(window(&[3], &[1], &[2], Padding::Causal), Some(10)),
            Some(10)
        );
        assert_eq!(len(window(&[5], &[1], &[1], Padding::Valid), Some(4)), None);
        assert_eq!(len(window(&[3], &[1], &[1], Padding::Same), None), None);
        let w = window(&[3, 2], &[2, 1], &[1, 1], Padding::Same);
        assert_eq!(w.output_len(0, Some(8)), Some(4));
        assert_eq!(w.output_len(1, Some(9)), Some(9));
    }

    #[test]
    fn per_axis_settings_take_one_integer_or_one_per_axis() {
        let l = layer(json!({"k": 3, "s": [2, 1], "bad": [1, 2, 3], "zero": [0, 1]}));
        let cfg = Config::of(&l).unwrap();
        assert_eq!(per_axis(&cfg, &l, "k", 2, None).unwrap(), vec![3, 3]);
        assert_eq!(per_axis(&cfg, &l, "s", 2, None).unwrap(), vec![2, 1]);
        assert_eq!(
            per_axis(&cfg, &l, "absent", 2, Some(&[1, 1])).unwrap(),
            vec![1, 1]
        );
        for key in ["bad", "zero", "absent"] {
            let err = per_axis(&cfg, &l, key, 2, None).unwrap_err().to_string();
            assert!(err.contains("a list of 2"), "{err}");
        }
    }

    #[test]
    fn per_axis_pairs_read_every_keras_form() {
        let l = layer(json!({
            "one": 1, "each": [1, 2], "pairs": [[1, 0], [2, 3]], "mixed": [[1, 0], 2],
            "bad": [[1, 2, 3], [1, 1]], "negative": -1
        }));
        let cfg = Config::of(&l).unwrap();
        let pairs = |key, rank| per_axis_pairs(&cfg, &l, key, rank, 0);
        assert_eq!(pairs("one", 2).unwrap(), vec![(1, 1), (1, 1)]);
        assert_eq!(pairs("each", 2).unwrap(), vec![(1, 1), (2, 2)]);
        assert_eq!(pairs("each", 1).unwrap(), vec![(1, 2)]);
        assert_eq!(pairs("pairs", 2).unwrap(), vec![(1, 0), (2, 3)]);
        assert_eq!(pairs("mixed", 2).unwrap(), vec![(1, 0), (2, 2)]);
        assert_eq!(pairs("absent", 3).unwrap(), vec![(0, 0); 3]);
        assert!(pairs("bad", 2).is_err());
        assert!(pairs("negative", 2).is_err());
        assert!(pairs("pairs", 3).is_err());
    }
}
