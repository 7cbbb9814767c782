//! `Rescaling` → ONNX `Mul` + `Add`: `x * scale + offset`, each a number or a list that
//! broadcasts from the last axis. Integer inputs (pixels, counts) are cast to float32
//! first, as Keras casts them to its compute dtype.

use super::normalization::numbers;
use super::{cast_to, expect_weights, float_output, propagates_since_keras_3, single_input};
use crate::config::Config;
use crate::error::BuildError;
use crate::graph::GraphBuilder;
use crate::registry::{LayerConverter, Masking, ValueRef};
use crate::shape::{broadcast, format_shape, static_dims, TensorInfo};
use crate::spec::Layer;
use crate::tensor::Tensor;

pub struct Rescaling;

/// `scale` and `offset` as (shape, values).
type Constant = (Vec<usize>, Vec<f64>);

fn constants(layer: &Layer) -> Result<(Constant, Constant), BuildError> {
    let cfg = Config::of(layer)?;
    let read = |key: &str, default: f64| match cfg.get(key) {
        None => Ok((vec![], vec![default])),
        Some(v) => numbers(layer, key, v),
    };
    let scale = read("scale", 1.0)?;
    if cfg.get("scale").is_none() {
        return Err(layer.error("config key \"scale\" is required"));
    }
    Ok((scale, read("offset", 0.0)?))
}

impl LayerConverter for Rescaling {
    // Keras 3: `supports_masking`, and `call` ignores the mask; Keras 2 drops it.
    fn masking(&self, layer: &Layer) -> Masking {
        propagates_since_keras_3(layer)
    }

    fn infer(&self, layer: &Layer, inputs: &[TensorInfo]) -> Result<TensorInfo, BuildError> {
        let x = single_input(layer, inputs)?;
        expect_weights(layer, &[])?;
        let dtype = float_output(layer, x.dtype)?;
        let (scale, offset) = constants(layer)?;
        for (key, (shape, _)) in [("scale", &scale), ("offset", &offset)] {
            let dims = static_dims(shape);
            if dims.len() > x.rank() || broadcast(&x.shape, &dims).as_deref() != Some(&x.shape[..])
            {
                return Err(layer.error(format!(
                    "{key} of shape {shape:?} does not broadcast to the input shape {}",
                    format_shape(&x.shape)
                )));
            }
        }
        Ok(TensorInfo::new(dtype, x.shape.clone()))
    }

    fn emit(
        &self,
        layer: &Layer,
        inputs: &[ValueRef<'_>],
        output: ValueRef<'_>,
        g: &mut GraphBuilder,
    ) -> Result<String, BuildError> {
        let x = inputs[0].info;
        let dt = float_output(layer, x.dtype)?;
        let name = &layer.name;
        let ((scale_shape, scale), (offset_shape, offset)) = constants(layer)?;
        let constant = |shape: Vec<usize>, values: &[f64]| {
            Tensor::from_f64_as(dt, shape, values)
                .ok_or_else(|| layer.dtype_error("output", dt, super::FLOAT_TYPES))
        };
        let scale = g.initializer_owned(&format!("{name}/scale"), constant(scale_shape, &scale)?);
        let offset =
            g.initializer_owned(&format!("{name}/offset"), constant(offset_shape, &offset)?);
        let input = cast_to(g, layer, inputs[0].name, x.dtype, dt);
        let scaled = g.node("Mul", &[&input, &scale], &format!("{name}/Mul"), vec![]);
        g.node_into("Add", &[&scaled, &offset], output.name, vec![]);
        Ok(output.name.to_string())
    }
}
