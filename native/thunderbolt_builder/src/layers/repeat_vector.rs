//! `RepeatVector` → ONNX `Unsqueeze` + `Tile`: `[batch, features]` becomes
//! `[batch, n, features]`, the row repeated `n` times.

use super::{expect_weights, single_input};
use crate::config::Config;
use crate::error::BuildError;
use crate::graph::GraphBuilder;
use crate::registry::{LayerConverter, Masking, ValueRef};
use crate::shape::{format_shape, TensorInfo};
use crate::spec::Layer;

pub struct RepeatVector;

fn times(layer: &Layer) -> Result<usize, BuildError> {
    Config::of(layer)?
        .opt_usize("n")?
        .filter(|&n| n > 0 && n <= 1 << 24)
        .ok_or_else(|| layer.error("config key \"n\" must be a positive integer"))
}

impl LayerConverter for RepeatVector {
    // Keras: no `supports_masking`, so the mask ends here (Keras warns).
    fn masking(&self, _layer: &Layer) -> Masking {
        Masking::Drops
    }

    fn infer(&self, layer: &Layer, inputs: &[TensorInfo]) -> Result<TensorInfo, BuildError> {
        let x = single_input(layer, inputs)?;
        expect_weights(layer, &[])?;
        let n = times(layer)?;
        match x.shape.as_slice() {
            [batch, features] => Ok(TensorInfo::new(x.dtype, vec![*batch, Some(n), *features])),
            _ => Err(layer.error(format!(
                "expects an input of rank 2 (batch, features), got {}",
                format_shape(&x.shape)
            ))),
        }
    }

    fn emit(
        &self,
        layer: &Layer,
        inputs: &[ValueRef<'_>],
        output: ValueRef<'_>,
        g: &mut GraphBuilder,
    ) -> Result<String, BuildError> {
        let n = times(layer)? as i64;
        let name = &layer.name;
        let axes = g.int64s(&format!("{name}/axes"), &[1]);
        let row = g.node(
            "Unsqueeze",
            &[inputs[0].name, &axes],
            &format!("{name}/Unsqueeze"),
            vec![],
        );
        let repeats = g.int64s(&format!("{name}/repeats"), &[1, n, 1]);
        g.node_into("Tile", &[&row, &repeats], output.name, vec![]);
        Ok(output.name.to_string())
    }
}
