//! Typed reads of Keras config keys, with errors that name the layer and the key.
//! A key set to JSON `null` counts as absent, as in Keras.

use crate::error::BuildError;
use crate::spec::Layer;
use serde_json::{Map, Value};

/// A view of a layer's config object.
pub struct Config<'a> {
    layer: &'a Layer,
    map: Option<&'a Map<String, Value>>,
}

impl<'a> Config<'a> {
    /// The layer's config; it must be a JSON object (or `null`, meaning empty).
    pub fn of(layer: &'a Layer) -> Result<Self, BuildError> {
        Self::within(layer, &layer.config)
    }

    /// A config object nested in the layer's config (a wrapped layer's, say); errors
    /// still name the layer.
    pub fn within(layer: &'a Layer, value: &'a Value) -> Result<Self, BuildError> {
        let map = match value {
            Value::Object(map) => Some(map),
            Value::Null => None,
            other => return Err(layer.error(format!("config must be an object, got {other}"))),
        };
        Ok(Config { layer, map })
    }

    /// The raw value of `key`, `None` when absent or null.
    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.and_then(|m| m.get(key)).filter(|v| !v.is_null())
    }

    fn invalid(&self, key: &str, expected: &str, got: &Value) -> BuildError {
        self.layer
            .error(format!("config key {key:?} must be {expected}, got {got}"))
    }

    pub fn bool_or(&self, key: &str, default: bool) -> Result<bool, BuildError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.as_bool().ok_or_else(|| self.invalid(key, "a boolean", v)),
        }
    }

    pub fn f64_or(&self, key: &str, default: f64) -> Result<f64, BuildError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .as_f64()
                .filter(|x| x.is_finite())
                .ok_or_else(|| self.invalid(key, "a finite number", v)),
        }
    }

    pub fn str_or(&self, key: &str, default: &'a str) -> Result<&'a str, BuildError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.as_str().ok_or_else(|| self.invalid(key, "a string", v)),
        }
    }

    /// An optional non-negative integer (Keras `units`, `input_dim`, ...).
    pub fn opt_usize(&self, key: &str) -> Result<Option<usize>, BuildError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| self.invalid(key, "a non-negative integer", v)),
        }
    }

    pub fn i64_or(&self, key: &str, default: i64) -> Result<i64, BuildError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.as_i64().ok_or_else(|| self.invalid(key, "an integer", v)),
        }
    }

    /// A list of integers (Keras `target_shape`); `None` when absent.
    pub fn opt_i64_list(&self, key: &str) -> Result<Option<Vec<i64>>, BuildError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let items = v
            .as_array()
            .ok_or_else(|| self.invalid(key, "a list of integers", v))?;
        items
            .iter()
            .map(|x| {
                x.as_i64()
                    .ok_or_else(|| self.invalid(key, "a list of integers", v))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// A window size, stride or count that Keras may give as one integer or a list of
    /// one (`kernel_size: [3]`): positive and at most 2^24.
    pub fn one_usize(&self, key: &str, default: Option<usize>) -> Result<usize, BuildError> {
        let value = match self.get(key) {
            None => default,
            Some(v) => v
                .as_u64()
                .or_else(|| match v.as_array().map(Vec::as_slice) {
                    Some([one]) => one.as_u64(),
                    _ => None,
                })
                .and_then(|n| usize::try_from(n).ok()),
        };
        value.filter(|&n| n > 0 && n <= 1 << 24).ok_or_else(|| {
            self.layer.error(format!(
                "config key {key:?} must be a positive integer or a list of one"
            ))
        })
    }

    /// `data_format`: whether the channels come before the steps (`channels_first`) or
    /// last (`channels_last`, the default).
    pub fn channels_first(&self) -> Result<bool, BuildError> {
        match self.str_or("data_format", "channels_last")? {
            "channels_last" => Ok(false),
            "channels_first" => Ok(true),
            other => Err(self.layer.error(format!(
                "data_format must be \"channels_last\" or \"channels_first\", got {other:?}"
            ))),
        }
    }

    /// An axis that Keras accepts either as one integer or as a list of integers.
    pub fn axes_or(&self, key: &str, default: i64) -> Result<Vec<i64>, BuildError> {
        match self.get(key) {
            None => Ok(vec![default]),
            Some(v) if v.is_i64() => Ok(vec![v.as_i64().unwrap_or(default)]),
            Some(_) => Ok(self.opt_i64_list(key)?.unwrap_or_default()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn layer(config: Value) -> Layer {
        Layer {
            name: "l".into(),
            class_name: "Dense".into(),
            config,
            inbound: vec![],
            weights: vec![],
        }
    }

    #[test]
    fn reads_typed_values_with_defaults_and_null_as_absent() {
        let l = layer(
            json!({"units": 4, "use_bias": false, "epsilon": 0.5, "axis": [1, -1], "x": null}),
        );
        let c = Config::of(&l).unwrap();
        assert_eq!(c.opt_usize("units").unwrap(), Some(4));
        assert!(!c.bool_or("use_bias", true).unwrap());
        assert!(c.bool_or("x", true).unwrap());
        assert_eq!(c.f64_or("epsilon", 1e-3).unwrap(), 0.5);
        assert_eq!(c.axes_or("axis", -1).unwrap(), vec![1, -1]);
        assert_eq!(c.axes_or("missing", -1).unwrap(), vec![-1]);
    }

    #[test]
    fn wrong_types_name_the_layer_and_key() {
        let l = layer(json!({"units": "four"}));
        let err = Config::of(&l)
            .unwrap()
            .opt_usize("units")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("layer \"l\" (Dense)") && err.contains("\"units\""),
            "{err}"
        );
        let l = layer(json!([1]));
        assert!(Config::of(&l).is_err());
    }
}
