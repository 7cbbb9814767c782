//! `UpSampling1D`, `UpSampling2D` and `UpSampling3D` → ONNX `Resize` by whole factors.
//!
//! Nearest (every one of them; Keras repeats each cell `size` times): `nearest` mode with
//! `asymmetric` coordinates and `floor`, so output cell `i` reads input cell `⌊i / size⌋`,
//! in the layer's own data format. Bilinear (`UpSampling2D` only): `linear` mode with
//! `half_pixel` coordinates, as Keras' `ops.image.resize`, channels first.

use super::spatial::{per_axis, Layout};
use super::{expect_weights, require_float, single_input};
use crate::config::Config;
use crate::error::BuildError;
use crate::graph::{attr_string, GraphBuilder};
use crate::registry::{LayerConverter, Masking, ValueRef};
use crate::shape::TensorInfo;
use crate::spec::Layer;
use crate::tensor::Tensor;

/// Upsampling over `rank` spatial axes (1, 2 or 3).
pub struct UpSampling {
    pub rank: usize,
}

struct Params {
    sizes: Vec<usize>,
    layout: Layout,
    bilinear: bool,
}

impl UpSampling {
    fn params(&self, layer: &Layer) -> Result<Params, BuildError> {
        let cfg = Config::of(layer)?;
        let sizes = per_axis(&cfg, layer, "size", self.rank, Some(&vec![2; self.rank]))?;
        let bilinear = match (self.rank, cfg.str_or("interpolation", "nearest")?) {
            (_, "nearest") => false,
            (2, "bilinear") => true,
            (_, other) => {
                return Err(layer.error(format!("interpolation {other:?} is not supported")))
            }
        };
        Ok(Params {
            sizes,
            layout: Layout::read(&cfg, self.rank)?,
            bilinear,
        })
    }
}

impl LayerConverter for UpSampling {
    // Keras: no `supports_masking`, so the mask ends here (Keras warns).
    fn masking(&self, _layer: &Layer) -> Masking {
        Masking::Drops
    }

    fn infer(&self, layer: &Layer, inputs: &[TensorInfo]) -> Result<TensorInfo, BuildError> {
        let x = single_input(layer, inputs)?;
        require_float(layer, "input", x.dtype)?;
        expect_weights(layer, &[])?;
        let p = self.params(layer)?;
        let (spatial, channels) = p.layout.split(layer, x)?;
        let scaled = spatial
            .iter()
            .zip(&p.sizes)
            .map(|(d, s)| d.and_then(|d| d.checked_mul(*s)))
            .collect();
        Ok(TensorInfo::new(
            x.dtype,
            p.layout.shape(x.shape[0], scaled, channels),
        ))
    }

    fn emit(
        &self,
        layer: &Layer,
        inputs: &[ValueRef<'_>],
        output: ValueRef<'_>,
        g: &mut GraphBuilder,
    ) -> Result<String, BuildError> {
        let p = self.params(layer)?;
        let name = &layer.name;
        let factors: Vec<f32> = p.sizes.iter().map(|&s| s as f32).collect();
        let scales_in = |layout: Layout| {
            let mut scales = vec![1.0f32; layout.rank + 2];
            for (i, &f) in factors.iter().enumerate() {
                scales[layout.spatial_axis(i)] = f;
            }
            Tensor::from_f32(vec![scales.len()], &scales)
        };
        if p.bilinear {
            let first = Layout {
                channels_first: true,
                ..p.layout
            };
            let scales = g.initializer_owned(&format!("{name}/scales"), scales_in(first));
            p.layout
                .emit(g, layer, inputs[0].name, output, None, |g, x, out| {
                    g.node_into(
                        "Resize",
                        &[x, "", &scales],
                        out,
                        vec![
                            attr_string("mode", "linear"),
                            attr_string("coordinate_transformation_mode", "half_pixel"),
                        ],
                    );
                });
        } else {
            let scales = g.initializer_owned(&format!("{name}/scales"), scales_in(p.layout));
            g.node_into(
                "Resize",
                &[inputs[0].name, "", &scales],
                output.name,
                vec![
                    attr_string("mode", "nearest"),
                    attr_string("coordinate_transformation_mode", "asymmetric"),
                    attr_string("nearest_mode", "floor"),
                ],
            );
        }
        Ok(output.name.to_string())
    }
}
