//! Which builder converter handles a Keras layer: built-in Keras classes by class name,
//! Cerebros's custom layers by their registered name, and anything else the caller maps.

use crate::config::LayerConfig;
use crate::error::{ImportError, Result};
use crate::ImportOptions;
use thunderbolt_builder::LayerRegistry;

/// Cerebros's custom layers (`cerebrosllmutils/llm_utils.py`), by registered name, and the
/// builder class that converts each.
pub const CEREBROS_LAYERS: &[(&str, &str)] =
    &[("cerebrosllmutils>InterleavedRoPE", "InterleavedRoPE")];

/// The mapping from Keras layers to builder classes.
#[derive(Debug, Default)]
pub struct CustomLayers;

impl CustomLayers {
    /// The builder class for `layer`, or an error naming the layer and how to add one.
    pub fn builder_class(
        &self,
        layer: &LayerConfig,
        options: &ImportOptions,
        registry: &LayerRegistry,
    ) -> Result<String> {
        let registered = layer.registered_name.as_deref();
        let mapped = registered
            .and_then(|r| options.custom_layers.get(r))
            .or_else(|| options.custom_layers.get(&layer.class_name))
            .map(String::as_str)
            .or_else(|| {
                registered.and_then(|r| {
                    CEREBROS_LAYERS
                        .iter()
                        .find(|(name, _)| *name == r)
                        .map(|(_, c)| *c)
                })
            });
        let class = match (mapped, registered) {
            (Some(class), _) => class,
            // Keras 3 writes `registered_name: null` for its own layers and
            // "package>Name" for custom ones; Keras 2 wrote the class name.
            (None, Some(r)) if r != layer.class_name => return Err(unsupported(layer, registry)),
            (None, _) => layer.class_name.as_str(),
        };
        if registry.get(class).is_none() {
            return Err(unsupported(layer, registry));
        }
        Ok(class.to_string())
    }
}

fn unsupported(layer: &LayerConfig, registry: &LayerRegistry) -> ImportError {
    let key = layer
        .registered_name
        .as_deref()
        .unwrap_or(&layer.class_name);
    ImportError::UnsupportedLayer {
        layer: layer.name.clone(),
        class_name: layer.class_name.clone(),
        registered_name: layer.registered_name.clone(),
        hint: format!(
            "To import it, map {key:?} to a converter: in Rust, implement \
             thunderbolt_builder::LayerConverter, register it in a LayerRegistry and set \
             ImportOptions::custom_layers[{key:?}] to its class name; from Elixir, pass \
             custom_layers: %{{{key:?} => \"Class\"}} to reuse a built-in converter. \
             Built-in converters: {}.",
            registry.class_names().join(", ")
        ),
    }
}
