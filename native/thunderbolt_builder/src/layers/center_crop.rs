//! `CenterCrop` → a `Cast` to float32 (Keras casts to the layer's compute dtype) and one
//! ONNX `Slice` of the rows and columns, starting `⌊(size - target) / 2⌋` in. Keras itself
//! needs static rows and columns here; an image smaller than the target, which Keras
//! resizes instead, is refused.

use super::spatial::Layout;
use super::{cast_to, expect_weights, single_input};
use crate::config::Config;
use crate::error::BuildError;
use crate::graph::GraphBuilder;
use crate::registry::{LayerConverter, Masking, ValueRef};
use crate::shape::{format_shape, Dim, TensorInfo};
use crate::spec::Layer;
use crate::tensor::DType;

pub struct CenterCrop;

/// The target size and layout, and the first row and column kept, after checking that the
/// image holds the target.
struct Crop {
    height: usize,
    width: usize,
    layout: Layout,
    channels: Dim,
    starts: [usize; 2],
}

fn crop(layer: &Layer, x: &TensorInfo) -> Result<Crop, BuildError> {
    let cfg = Config::of(layer)?;
    let (height, width) = (
        cfg.one_usize("height", None)?,
        cfg.one_usize("width", None)?,
    );
    let layout = Layout::read(&cfg, 2)?;
    let (spatial, channels) = layout.split(layer, x)?;
    let mut starts = [0; 2];
    for (i, (size, target)) in spatial.iter().zip([height, width]).enumerate() {
        match size {
            Some(size) if *size >= target => starts[i] = (size - target) / 2,
            _ => {
                return Err(layer.error(format!(
                    "needs static rows and columns of at least ({height}, {width}), got an input of shape {} (Keras resizes smaller images instead; that is not converted)",
                    format_shape(&x.shape)
                )))
            }
        }
    }
    Ok(Crop {
        height,
        width,
        layout,
        channels,
        starts,
    })
}

impl LayerConverter for CenterCrop {
    // Keras: no `supports_masking`, so the mask ends here (Keras warns).
    fn masking(&self, _layer: &Layer) -> Masking {
        Masking::Drops
    }

    fn infer(&self, layer: &Layer, inputs: &[TensorInfo]) -> Result<TensorInfo, BuildError> {
        let x = single_input(layer, inputs)?;
        expect_weights(layer, &[])?;
        let c = crop(layer, x)?;
        Ok(TensorInfo::new(
            DType::F32,
            c.layout
                .shape(x.shape[0], vec![Some(c.height), Some(c.width)], c.channels),
        ))
    }

    fn emit(
        &self,
        layer: &Layer,
        inputs: &[ValueRef<'_>],
        output: ValueRef<'_>,
        g: &mut GraphBuilder,
    ) -> Result<String, BuildError> {
        let Crop {
            height,
            width,
            layout,
            starts: [row, column],
            ..
        } = crop(layer, inputs[0].info)?;
        let name = &layer.name;
        let x = cast_to(g, layer, inputs[0].name, inputs[0].info.dtype, DType::F32);
        let starts = g.int64s(&format!("{name}/starts"), &[row as i64, column as i64]);
        let ends = g.int64s(
            &format!("{name}/ends"),
            &[(row + height) as i64, (column + width) as i64],
        );
        let axes: Vec<i64> = (0..2).map(|i| layout.spatial_axis(i) as i64).collect();
        let axes = g.int64s(&format!("{name}/axes"), &axes);
        g.node_into("Slice", &[&x, &starts, &ends, &axes], output.name, vec![]);
        Ok(output.name.to_string())
    }
}
