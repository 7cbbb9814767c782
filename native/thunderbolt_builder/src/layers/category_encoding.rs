//! `CategoryEncoding` → the ids compared with `0..num_tokens` (`Equal` against a table, so
//! a negative or too large id encodes as zeros, as Keras' JAX backend gives), cast to
//! float32, and for `multi_hot` / `count` reduced over the ids of a sample (`ReduceMax` /
//! `ReduceSum`). `encode` below is also `Discretization`'s.

use super::{cast_to, expect_weights, single_input};
use crate::config::Config;
use crate::error::BuildError;
use crate::graph::{attr_int, GraphBuilder};
use crate::registry::{LayerConverter, Masking, ValueRef};
use crate::shape::{format_shape, Dim, TensorInfo};
use crate::spec::Layer;
use crate::tensor::{DType, Tensor};

pub struct CategoryEncoding;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OutputMode {
    Int,
    OneHot,
    MultiHot,
    Count,
}

impl OutputMode {
    pub(crate) fn read(layer: &Layer, cfg: &Config<'_>, default: &str) -> Result<Self, BuildError> {
        Ok(match cfg.str_or("output_mode", default)? {
            "int" => OutputMode::Int,
            "one_hot" => OutputMode::OneHot,
            "multi_hot" => OutputMode::MultiHot,
            "count" => OutputMode::Count,
            other => return Err(layer.error(format!("output_mode {other:?} is not supported"))),
        })
    }
}

/// The shape `mode` gives ids of `shape` over `depth` categories, as Keras'
/// `encode_categorical_inputs`: `one_hot` adds an axis (replacing a last axis of 1),
/// `multi_hot` and `count` encode each sample's ids into one row. Only the ranks whose
/// shape Keras computes consistently are taken.
pub(crate) fn encoded_shape(
    layer: &Layer,
    mode: OutputMode,
    shape: &[Dim],
    depth: usize,
) -> Result<Vec<Dim>, BuildError> {
    let refuse = || {
        layer.error(format!(
            "{mode:?} encoding takes ids of shape (batch, n), got {}",
            format_shape(shape)
        ))
    };
    match mode {
        OutputMode::Int => Ok(shape.to_vec()),
        OutputMode::OneHot => {
            let mut out = shape.to_vec();
            if out.len() < 2 {
                return Err(refuse());
            }
            if out.last() == Some(&Some(1)) {
                out.pop();
            }
            out.push(Some(depth));
            Ok(out)
        }
        OutputMode::MultiHot | OutputMode::Count if shape.len() == 2 => {
            Ok(vec![shape[0], Some(depth)])
        }
        _ => Err(refuse()),
    }
}

/// Whether each of the int64 `ids` (with a 1 at `axis` to broadcast along) equals each
/// category `0..depth`, laid along `axis` of a result of rank `rank`: an id out of range
/// matches none, as Keras' JAX backend encodes it (ONNX's `OneHot` would count a negative
/// id from the end). `keras.ops.one_hot` uses this too.
pub(crate) fn category_hits(
    g: &mut GraphBuilder,
    name: &str,
    ids: &str,
    depth: usize,
    axis: usize,
    rank: usize,
) -> String {
    let mut shape = vec![1; rank];
    shape[axis] = depth;
    let categories: Vec<i64> = (0..depth as i64).collect();
    let table = g.initializer_owned(
        &format!("{name}/categories"),
        Tensor::from_i64(shape, &categories),
    );
    g.node("Equal", &[ids, &table], &format!("{name}/hits"), vec![])
}

/// Emits the encoding of the integer ids `ids` (typed `info`) into `output` (float32).
pub(crate) fn encode(
    g: &mut GraphBuilder,
    layer: &Layer,
    ids: &str,
    info: &TensorInfo,
    mode: OutputMode,
    depth: usize,
    output: &str,
) {
    let name = &layer.name;
    let ids = cast_to(g, layer, ids, info.dtype, DType::I64);
    let ids = if mode == OutputMode::OneHot && info.shape.last() == Some(&Some(1)) {
        ids
    } else {
        let last = g.int64s(&format!("{name}/last_axis"), &[-1]);
        g.node("Unsqueeze", &[&ids, &last], &format!("{name}/ids"), vec![])
    };
    let hits = category_hits(g, name, &ids, depth, 0, 1);
    let to_float = attr_int("to", DType::F32.onnx() as i64);
    if mode == OutputMode::OneHot {
        g.node_into("Cast", &[&hits], output, vec![to_float]);
        return;
    }
    let hits = g.node("Cast", &[&hits], &format!("{name}/one_hot"), vec![to_float]);
    let op = if mode == OutputMode::Count {
        "ReduceSum"
    } else {
        "ReduceMax"
    };
    let axis = g.int64s(&format!("{name}/sample_axis"), &[1]);
    g.node_into(op, &[&hits, &axis], output, vec![attr_int("keepdims", 0)]);
}

fn params(layer: &Layer) -> Result<(usize, OutputMode), BuildError> {
    let cfg = Config::of(layer)?;
    let mode = OutputMode::read(layer, &cfg, "multi_hot")?;
    if mode == OutputMode::Int {
        return Err(layer.error("output_mode \"int\" is not a CategoryEncoding mode"));
    }
    if cfg.bool_or("sparse", false)? {
        return Err(layer.error("sparse=true is not supported"));
    }
    Ok((cfg.one_usize("num_tokens", None)?, mode))
}

impl LayerConverter for CategoryEncoding {
    // Keras: no `supports_masking`, so the mask ends here (Keras warns).
    fn masking(&self, _layer: &Layer) -> Masking {
        Masking::Drops
    }

    fn infer(&self, layer: &Layer, inputs: &[TensorInfo]) -> Result<TensorInfo, BuildError> {
        let x = single_input(layer, inputs)?;
        expect_weights(layer, &[])?;
        if !x.dtype.is_integer() {
            return Err(layer.dtype_error("input", x.dtype, "an integer type (category ids)"));
        }
        let (depth, mode) = params(layer)?;
        Ok(TensorInfo::new(
            DType::F32,
            encoded_shape(layer, mode, &x.shape, depth)?,
        ))
    }

    fn emit(
        &self,
        layer: &Layer,
        inputs: &[ValueRef<'_>],
        output: ValueRef<'_>,
        g: &mut GraphBuilder,
    ) -> Result<String, BuildError> {
        let (depth, mode) = params(layer)?;
        encode(
            g,
            layer,
            inputs[0].name,
            inputs[0].info,
            mode,
            depth,
            output.name,
        );
        Ok(output.name.to_string())
    }
}
