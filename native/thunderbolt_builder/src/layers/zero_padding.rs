//! `ZeroPadding1D`, `ZeroPadding2D` and `ZeroPadding3D` → ONNX `Pad` (constant zeros) over
//! the spatial axes, in the layer's own data format.

use super::spatial::sides;
use super::{expect_weights, single_input};
use crate::error::BuildError;
use crate::graph::GraphBuilder;
use crate::registry::{LayerConverter, Masking, ValueRef};
use crate::shape::TensorInfo;
use crate::spec::Layer;

/// Zero padding over `rank` spatial axes (1, 2 or 3).
pub struct ZeroPadding {
    pub rank: usize,
}

impl LayerConverter for ZeroPadding {
    // Keras: no `supports_masking`, so the mask ends here (Keras warns).
    fn masking(&self, _layer: &Layer) -> Masking {
        Masking::Drops
    }

    fn infer(&self, layer: &Layer, inputs: &[TensorInfo]) -> Result<TensorInfo, BuildError> {
        let x = single_input(layer, inputs)?;
        expect_weights(layer, &[])?;
        // Keras' default is one cell on every side.
        let (pads, layout) = sides(layer, "padding", self.rank, 1)?;
        let (spatial, channels) = layout.split(layer, x)?;
        let padded = spatial
            .iter()
            .zip(&pads)
            .map(|(d, (before, after))| d.map(|d| d + before + after))
            .collect();
        Ok(TensorInfo::new(
            x.dtype,
            layout.shape(x.shape[0], padded, channels),
        ))
    }

    fn emit(
        &self,
        layer: &Layer,
        inputs: &[ValueRef<'_>],
        output: ValueRef<'_>,
        g: &mut GraphBuilder,
    ) -> Result<String, BuildError> {
        let (pads, layout) = sides(layer, "padding", self.rank, 1)?;
        let name = &layer.name;
        // Pads for every axis, without `Pad`'s `axes` input: with `axes`, a model with a
        // `Transpose` beside the `Pad` failed in ONNX Runtime 1.31 at run time (a `Gather`
        // its optimizer added read past the pads), as if they covered every axis.
        let mut amounts = vec![0i64; 2 * (self.rank + 2)];
        for (i, &(before, after)) in pads.iter().enumerate() {
            let axis = layout.spatial_axis(i);
            amounts[axis] = before as i64;
            amounts[self.rank + 2 + axis] = after as i64;
        }
        let amounts = g.int64s(&format!("{name}/pads"), &amounts);
        g.node_into("Pad", &[inputs[0].name, &amounts], output.name, vec![]);
        Ok(output.name.to_string())
    }
}
