//! `Activation` → the ops of its `activation` (see [`crate::activation`]); `linear` emits
//! nothing and forwards its input.

use super::single_input;
use crate::activation::Activation;
use crate::config::Config;
use crate::error::BuildError;
use crate::graph::GraphBuilder;
use crate::registry::{LayerConverter, Masking, ValueRef};
use crate::shape::TensorInfo;
use crate::spec::Layer;

pub struct ActivationLayer;

fn parse(layer: &Layer) -> Result<Activation, BuildError> {
    let cfg = Config::of(layer)?;
    let value = cfg
        .get("activation")
        .ok_or_else(|| layer.error("config key \"activation\" is required"))?;
    Activation::parse(layer, Some(value))
}

impl LayerConverter for ActivationLayer {
    // Keras: `supports_masking`, and `call` ignores the mask.
    fn masking(&self, _layer: &Layer) -> Masking {
        Masking::Propagates
    }

    fn infer(&self, layer: &Layer, inputs: &[TensorInfo]) -> Result<TensorInfo, BuildError> {
        let x = single_input(layer, inputs)?;
        super::expect_weights(layer, &[])?;
        parse(layer)?.check(layer, x)?;
        Ok(x.clone())
    }

    fn emit(
        &self,
        layer: &Layer,
        inputs: &[ValueRef<'_>],
        output: ValueRef<'_>,
        g: &mut GraphBuilder,
    ) -> Result<String, BuildError> {
        let activation = parse(layer)?;
        if activation.is_linear() {
            return Ok(inputs[0].name.to_string());
        }
        activation.emit(g, inputs[0].name, output.info, &layer.name, output.name);
        Ok(output.name.to_string())
    }
}
