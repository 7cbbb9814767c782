//! `Cropping1D`, `Cropping2D` and `Cropping3D` → one ONNX `Slice` over the spatial axes, in
//! the layer's own data format. A dynamic axis is cut from its end with a negative index.

use super::spatial::sides;
use super::{expect_weights, single_input};
use crate::error::BuildError;
use crate::graph::GraphBuilder;
use crate::registry::{LayerConverter, Masking, ValueRef};
use crate::shape::{format_shape, TensorInfo};
use crate::spec::Layer;

/// Cropping over `rank` spatial axes (1, 2 or 3).
pub struct Cropping {
    pub rank: usize,
}

impl LayerConverter for Cropping {
    // Keras: no `supports_masking`, so the mask ends here (Keras warns).
    fn masking(&self, _layer: &Layer) -> Masking {
        Masking::Drops
    }

    fn infer(&self, layer: &Layer, inputs: &[TensorInfo]) -> Result<TensorInfo, BuildError> {
        let x = single_input(layer, inputs)?;
        expect_weights(layer, &[])?;
        let (crops, layout) = sides(layer, "cropping", self.rank, 0)?;
        let (spatial, channels) = layout.split(layer, x)?;
        let cropped = spatial
            .iter()
            .zip(&crops)
            .map(|(d, (before, after))| match d {
                // Keras refuses to crop an axis to nothing.
                Some(d) if before + after >= *d => Err(layer.error(format!(
                    "cropping {before} and {after} leaves nothing of an axis of {d} in an input of shape {}",
                    format_shape(&x.shape)
                ))),
                Some(d) => Ok(Some(d - before - after)),
                None => Ok(None),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TensorInfo::new(
            x.dtype,
            layout.shape(x.shape[0], cropped, channels),
        ))
    }

    fn emit(
        &self,
        layer: &Layer,
        inputs: &[ValueRef<'_>],
        output: ValueRef<'_>,
        g: &mut GraphBuilder,
    ) -> Result<String, BuildError> {
        let (crops, layout) = sides(layer, "cropping", self.rank, 0)?;
        let name = &layer.name;
        let starts: Vec<i64> = crops.iter().map(|c| c.0 as i64).collect();
        let ends: Vec<i64> = crops
            .iter()
            .map(|&(_, after)| {
                if after == 0 {
                    i64::MAX
                } else {
                    -(after as i64)
                }
            })
            .collect();
        let axes: Vec<i64> = (0..self.rank)
            .map(|i| layout.spatial_axis(i) as i64)
            .collect();
        let starts = g.int64s(&format!("{name}/starts"), &starts);
        let ends = g.int64s(&format!("{name}/ends"), &ends);
        let axes = g.int64s(&format!("{name}/axes"), &axes);
        g.node_into(
            "Slice",
            &[inputs[0].name, &starts, &ends, &axes],
            output.name,
            vec![],
        );
        Ok(output.name.to_string())
    }
}
