//! `Permute` → ONNX `Transpose` with `perm = [0, *dims]` (Keras counts `dims` from 1 and
//! never moves the batch axis).

use super::{expect_weights, single_input};
use crate::config::Config;
use crate::error::BuildError;
use crate::graph::{attr_ints, GraphBuilder};
use crate::registry::{LayerConverter, Masking, ValueRef};
use crate::shape::TensorInfo;
use crate::spec::Layer;

pub struct Permute;

fn perm(layer: &Layer, rank: usize) -> Result<Vec<usize>, BuildError> {
    let dims = Config::of(layer)?
        .opt_i64_list("dims")?
        .ok_or_else(|| layer.error("config key \"dims\" is required"))?;
    let mut perm = vec![0usize];
    for &d in &dims {
        match usize::try_from(d) {
            Ok(d) if (1..rank).contains(&d) && !perm.contains(&d) => perm.push(d),
            _ => break,
        }
    }
    if perm.len() != rank || dims.len() + 1 != rank {
        return Err(layer.error(format!(
            "dims {dims:?} must order the axes 1..{} of an input of rank {rank}",
            rank.saturating_sub(1)
        )));
    }
    Ok(perm)
}

impl LayerConverter for Permute {
    // Keras: no `supports_masking`, so the mask ends here (Keras warns).
    fn masking(&self, _layer: &Layer) -> Masking {
        Masking::Drops
    }

    fn infer(&self, layer: &Layer, inputs: &[TensorInfo]) -> Result<TensorInfo, BuildError> {
        let x = single_input(layer, inputs)?;
        expect_weights(layer, &[])?;
        let perm = perm(layer, x.rank())?;
        Ok(TensorInfo::new(
            x.dtype,
            perm.iter().map(|&a| x.shape[a]).collect(),
        ))
    }

    fn emit(
        &self,
        layer: &Layer,
        inputs: &[ValueRef<'_>],
        output: ValueRef<'_>,
        g: &mut GraphBuilder,
    ) -> Result<String, BuildError> {
        let perm: Vec<i64> = perm(layer, inputs[0].info.rank())?
            .into_iter()
            .map(|a| a as i64)
            .collect();
        g.node_into(
            "Transpose",
            &[inputs[0].name],
            output.name,
            vec![attr_ints("perm", &perm)],
        );
        Ok(output.name.to_string())
    }
}
