//! `Reshape` → ONNX `Reshape` with shape `[0, *target_shape]`: the leading `0` copies the
//! batch dimension (`allowzero=0`), and one `-1` in `target_shape` is inferred, as in Keras.
//! Opset 14+.

use super::{expect_weights, single_input};
use crate::config::Config;
use crate::error::BuildError;
use crate::graph::GraphBuilder;
use crate::registry::{LayerConverter, Masking, ValueRef};
use crate::shape::{format_shape, static_product, Dim, TensorInfo};
use crate::spec::Layer;

pub struct Reshape;

fn target(layer: &Layer) -> Result<Vec<i64>, BuildError> {
    let target = Config::of(layer)?
        .opt_i64_list("target_shape")?
        .ok_or_else(|| layer.error("config key \"target_shape\" is required"))?;
    if target.iter().any(|&d| d == 0 || d < -1) {
        return Err(layer.error(format!(
            "target_shape {target:?} may hold positive sizes and one -1 only"
        )));
    }
    if target.iter().filter(|&&d| d == -1).count() > 1 {
        return Err(layer.error(format!("target_shape {target:?} has more than one -1")));
    }
    Ok(target)
}

impl LayerConverter for Reshape {
    // Keras: no `supports_masking`, so the mask ends here (Keras warns).
    fn masking(&self, _layer: &Layer) -> Masking {
        Masking::Drops
    }

    fn infer(&self, layer: &Layer, inputs: &[TensorInfo]) -> Result<TensorInfo, BuildError> {
        let x = single_input(layer, inputs)?;
        expect_weights(layer, &[])?;
        let target = target(layer)?;
        if x.rank() == 0 {
            return Err(layer.error("cannot reshape a scalar input (no batch dimension)"));
        }
        let mismatch = || {
            layer.error(format!(
                "cannot reshape input of shape {} to target_shape {target:?}",
                format_shape(&x.shape)
            ))
        };
        // Checked: the sizes come from the caller's config.
        let known = target
            .iter()
            .filter(|&&d| d > 0)
            .try_fold(1usize, |n, &d| n.checked_mul(d as usize))
            .ok_or_else(mismatch)?;
        let incoming = static_product(&x.shape[1..]);
        let mut shape: Vec<Dim> = vec![x.shape[0]];
        for &d in &target {
            shape.push(if d > 0 {
                Some(d as usize)
            } else {
                match incoming {
                    Some(n) if known > 0 && n % known == 0 => Some(n / known),
                    Some(_) => return Err(mismatch()),
                    None => None,
                }
            });
        }
        if let Some(n) = incoming {
            if static_product(&shape[1..]).is_some_and(|m| m != n) {
                return Err(mismatch());
            }
        }
        Ok(TensorInfo::new(x.dtype, shape))
    }

    fn emit(
        &self,
        layer: &Layer,
        inputs: &[ValueRef<'_>],
        output: ValueRef<'_>,
        g: &mut GraphBuilder,
    ) -> Result<String, BuildError> {
        let mut shape = vec![0i64];
        shape.extend(target(layer)?);
        let shape = g.int64s(&format!("{}/shape", layer.name), &shape);
        g.node_into("Reshape", &[inputs[0].name, &shape], output.name, vec![]);
        Ok(output.name.to_string())
    }
}
