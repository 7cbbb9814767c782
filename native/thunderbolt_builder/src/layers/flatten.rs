//! `Flatten` → ONNX `Flatten` with `axis=1`: `(batch, d1, ..., dn)` becomes
//! `(batch, d1 * ... * dn)`, and a rank-1 input becomes `(batch, 1)`, as in Keras. With
//! `data_format="channels_first"` and rank > 2, Keras first moves the channels axis last;
//! that is a `Transpose`. Opset 13+.

use super::{expect_weights, single_input};
use crate::config::Config;
use crate::error::BuildError;
use crate::graph::{attr_int, attr_ints, GraphBuilder};
use crate::registry::{LayerConverter, Masking, ValueRef};
use crate::shape::{static_product, TensorInfo};
use crate::spec::Layer;

pub struct Flatten;

impl LayerConverter for Flatten {
    // Keras: no `supports_masking`, so the mask ends here (Keras warns).
    fn masking(&self, _layer: &Layer) -> Masking {
        Masking::Drops
    }

    fn infer(&self, layer: &Layer, inputs: &[TensorInfo]) -> Result<TensorInfo, BuildError> {
        let x = single_input(layer, inputs)?;
        expect_weights(layer, &[])?;
        Config::of(layer)?.channels_first()?;
        if x.rank() == 0 {
            return Err(layer.error("cannot flatten a scalar input"));
        }
        let rest = static_product(&x.shape[1..]);
        Ok(TensorInfo::new(x.dtype, vec![x.shape[0], rest]))
    }

    fn emit(
        &self,
        layer: &Layer,
        inputs: &[ValueRef<'_>],
        output: ValueRef<'_>,
        g: &mut GraphBuilder,
    ) -> Result<String, BuildError> {
        let rank = inputs[0].info.rank();
        let mut x = inputs[0].name.to_string();
        if Config::of(layer)?.channels_first()? && rank > 2 {
            let perm: Vec<i64> = std::iter::once(0)
                .chain(2..rank as i64)
                .chain(std::iter::once(1))
                .collect();
            x = g.node(
                "Transpose",
                &[&x],
                &format!("{}/Transpose", layer.name),
                vec![attr_ints("perm", &perm)],
            );
        }
        g.node_into("Flatten", &[&x], output.name, vec![attr_int("axis", 1)]);
        Ok(output.name.to_string())
    }
}
