//! `Bidirectional` around an `LSTM`, `GRU` or `SimpleRNN` → one ONNX op with
//! `direction = "bidirectional"`, whose reverse half is Keras' backward layer. With
//! `return_sequences`, Keras flips the backward outputs back into step order before merging,
//! which is how ONNX lays them out already.
//!
//! Weights, in Keras order: the forward layer's (`kernel`, `recurrent_kernel`, `bias`),
//! then the backward layer's. `merge_mode` `concat` (forward first), `sum`, `ave` or
//! `mul`; `None`, which gives two outputs, is not supported.

use super::recurrent::{check_input, emit_op, merge_directions, Cell, Recurrent, Returns};
use super::{expect_weights, single_input};
use crate::config::Config;
use crate::error::BuildError;
use crate::graph::{attr_int, GraphBuilder};
use crate::registry::{LayerConverter, Masking, ValueRef};
use crate::shape::TensorInfo;
use crate::spec::Layer;
use crate::tensor::DType;
use serde_json::Value;

pub struct Bidirectional;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Merge {
    Concat,
    Sum,
    Ave,
    Mul,
}

struct Params {
    forward: Cell,
    backward: Cell,
    merge: Merge,
}

/// The wrapped layer serialized in `key`, as a recurrent cell.
fn wrapped(layer: &Layer, key: &str) -> Result<Option<Cell>, BuildError> {
    let Some(inner) = layer.config.get(key).filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let class = inner
        .get("class_name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let kind = Recurrent::from_class(class).ok_or_else(|| {
        layer.error(format!(
            "{key} must be an LSTM, GRU or SimpleRNN, got {:?}",
            if class.is_empty() { "nothing" } else { class }
        ))
    })?;
    let config = inner.get("config").unwrap_or(&Value::Null);
    Cell::parse(layer, kind, config).map(Some)
}

fn params(layer: &Layer) -> Result<Params, BuildError> {
    let forward = wrapped(layer, "layer")?
        .ok_or_else(|| layer.error("config key \"layer\" (the wrapped layer) is required"))?;
    if forward.go_backwards {
        return Err(layer.error("a wrapped layer with go_backwards=true is not supported"));
    }
    let backward = wrapped(layer, "backward_layer")?.unwrap_or_else(|| forward.reversed());
    if !backward.pairs_with(&forward) {
        return Err(layer.error(
            "the backward layer differs from the forward layer in class, units, use_bias, \
             reset_after or return_sequences",
        ));
    }
    if !backward.go_backwards {
        return Err(layer.error("the backward layer must have go_backwards=true"));
    }
    let merge = match Config::of(layer)?.get("merge_mode") {
        None => return Err(layer.error("merge_mode=None (two outputs) is not supported")),
        Some(Value::String(mode)) => match mode.as_str() {
            "concat" => Merge::Concat,
            "sum" => Merge::Sum,
            "ave" => Merge::Ave,
            "mul" => Merge::Mul,
            other => return Err(layer.error(format!("unknown merge_mode {other:?}"))),
        },
        Some(other) => return Err(layer.error(format!("merge_mode must be a string, got {other}"))),
    };
    Ok(Params {
        forward,
        backward,
        merge,
    })
}

impl LayerConverter for Bidirectional {
    // As for the wrapped layer (see `recurrent`); with `return_sequences` Keras forces
    // `zero_output_for_mask` on both layers, so masked steps give zeros.
    fn masking(&self, layer: &Layer) -> Masking {
        match params(layer) {
            Ok(p) if p.forward.return_sequences => Masking::Uses,
            Ok(_) => Masking::Consumes,
            Err(_) => Masking::Unsupported,
        }
    }

    fn infer(&self, layer: &Layer, inputs: &[TensorInfo]) -> Result<TensorInfo, BuildError> {
        let x = single_input(layer, inputs)?;
        let p = params(layer)?;
        let features = check_input(layer, x)?;
        let n = if p.forward.use_bias { 3 } else { 2 };
        let names = ["kernel", "recurrent_kernel", "bias"];
        let names: Vec<&str> = names[..n].iter().chain(&names[..n]).copied().collect();
        expect_weights(layer, &names)?;
        p.forward.check_weights(layer, 0, features)?;
        p.backward.check_weights(layer, n, features)?;
        let width = p.forward.units * if p.merge == Merge::Concat { 2 } else { 1 };
        let shape = if p.forward.return_sequences {
            vec![x.shape[0], x.shape[1], Some(width)]
        } else {
            vec![x.shape[0], Some(width)]
        };
        Ok(TensorInfo::new(DType::F32, shape))
    }

    fn emit(
        &self,
        layer: &Layer,
        inputs: &[ValueRef<'_>],
        output: ValueRef<'_>,
        g: &mut GraphBuilder,
    ) -> Result<String, BuildError> {
        let p = params(layer)?;
        let features = check_input(layer, inputs[0].info)?;
        let seq = p.forward.return_sequences;
        let n = if p.forward.use_bias { 3 } else { 2 };
        let (fw, bw) = layer.weights.split_at(n);
        let y = emit_op(
            g,
            layer,
            inputs[0],
            features,
            &[(&p.forward, fw), (&p.backward, bw)],
            "bidirectional",
            if seq {
                Returns::Sequences { zero_masked: true }
            } else {
                Returns::LastState
            },
        )?;
        let prefix = &layer.name;
        let axis = if seq { 2 } else { 1 };
        match p.merge {
            Merge::Concat => merge_directions(g, prefix, &y, seq, output.name),
            Merge::Sum | Merge::Ave => {
                let op = if p.merge == Merge::Sum {
                    "ReduceSum"
                } else {
                    "ReduceMean"
                };
                let axes = g.int64s(&format!("{prefix}/directions_axis"), &[axis]);
                g.node_into(op, &[&y, &axes], output.name, vec![attr_int("keepdims", 0)]);
            }
            Merge::Mul => {
                let halves: Vec<String> = (0..2)
                    .map(|d| {
                        let index =
                            g.scalar(&format!("{prefix}/direction_{d}"), DType::I64, d as f64);
                        g.node(
                            "Gather",
                            &[&y, &index],
                            &format!("{prefix}/Gather_{d}"),
                            vec![attr_int("axis", axis)],
                        )
                    })
                    .collect();
                g.node_into("Mul", &[&halves[0], &halves[1]], output.name, vec![]);
            }
        }
        Ok(output.name.to_string())
    }
}
