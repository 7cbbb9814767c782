//! `TimeDistributed` around a layer that acts on the last axis alone (`Dense`, `Activation`,
//! the activation layer classes, the dropouts): applying it to every step is applying it
//! to the whole `[batch, steps, ...]` tensor, so the wrapped layer's own converter runs on
//! the wrapper's input. Its weights are the wrapped layer's, in Keras order.

use super::{activation, activation_classes, dense, identity, saved_by_keras_2, single_input};
use crate::error::BuildError;
use crate::graph::GraphBuilder;
use crate::registry::{LayerConverter, Masking, ValueRef};
use crate::shape::{format_shape, TensorInfo};
use crate::spec::Layer;
use serde_json::Value;

pub struct TimeDistributed;

/// The wrapped layer, under the wrapper's name, with its converter.
fn wrapped(layer: &Layer) -> Result<(Layer, &'static dyn LayerConverter), BuildError> {
    let inner = layer.config.get("layer").filter(|v| !v.is_null());
    let class = inner
        .and_then(|v| v.get("class_name"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let converter: &'static dyn LayerConverter = match class {
        "Dense" => &dense::Dense,
        "Activation" => &activation::ActivationLayer,
        "ReLU" => &activation_classes::ActivationClass::ReLU,
        "LeakyReLU" => &activation_classes::ActivationClass::LeakyReLU,
        "ELU" => &activation_classes::ActivationClass::ELU,
        "Dropout" | "GaussianNoise" | "GaussianDropout" | "AlphaDropout" => &identity::Identity,
        "" => return Err(layer.error("config key \"layer\" (the wrapped layer) is required")),
        other => {
            return Err(layer.error(format!(
                "wrapping {other} is not supported; supported: Dense, Activation, ReLU, LeakyReLU, \
                 ELU and the dropouts"
            )))
        }
    };
    let mut config = inner
        .and_then(|v| v.get("config"))
        .cloned()
        .unwrap_or(Value::Null);
    // The wrapped layer is as much from a Keras 2 file as its wrapper.
    if let (true, Value::Object(map)) = (saved_by_keras_2(layer), &mut config) {
        map.insert("keras_2".into(), Value::Bool(true));
    }
    let inner = Layer {
        name: layer.name.clone(),
        class_name: class.to_string(),
        config,
        inbound: layer.inbound.clone(),
        weights: layer.weights.clone(),
    };
    Ok((inner, converter))
}

impl LayerConverter for TimeDistributed {
    // Keras: `supports_masking`, and `call` ignores the mask.
    fn masking(&self, _layer: &Layer) -> Masking {
        Masking::Propagates
    }

    fn infer(&self, layer: &Layer, inputs: &[TensorInfo]) -> Result<TensorInfo, BuildError> {
        let x = single_input(layer, inputs)?;
        if x.rank() < 3 {
            return Err(layer.error(format!(
                "expects an input of rank 3 or more (batch, steps, ...), got {}",
                format_shape(&x.shape)
            )));
        }
        let (inner, converter) = wrapped(layer)?;
        converter.infer(&inner, inputs)
    }

    fn emit(
        &self,
        layer: &Layer,
        inputs: &[ValueRef<'_>],
        output: ValueRef<'_>,
        g: &mut GraphBuilder,
    ) -> Result<String, BuildError> {
        let (inner, converter) = wrapped(layer)?;
        converter.emit(&inner, inputs, output, g)
    }
}
