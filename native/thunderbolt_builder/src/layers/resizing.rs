//! `Resizing` (bilinear, as Keras' default) → ONNX `Resize` in `linear` mode with
//! `half_pixel` coordinates and no antialiasing, its `sizes` only for the rows and columns
//! (Resize's `axes`, so the batch may be dynamic), in the layer's own layout: with
//! `Transpose`s around it, ONNX Runtime 1.31 rejected the model, reading `sizes` as empty. Integer images are resized as floats, then rounded (half to even), clipped to
//! their type's range and cast back, as Keras does.

use super::spatial::Layout;
use super::{cast_to, expect_weights, single_input};
use crate::config::Config;
use crate::error::BuildError;
use crate::graph::{attr_int, attr_ints, attr_string, GraphBuilder};
use crate::registry::{LayerConverter, Masking, ValueRef};
use crate::shape::TensorInfo;
use crate::spec::Layer;
use crate::tensor::DType;

pub struct Resizing;

struct Params {
    height: usize,
    width: usize,
    layout: Layout,
}

fn params(layer: &Layer) -> Result<Params, BuildError> {
    let cfg = Config::of(layer)?;
    let interpolation = cfg.str_or("interpolation", "bilinear")?;
    if interpolation != "bilinear" {
        return Err(layer.error(format!(
            "interpolation {interpolation:?} is not supported (bilinear is)"
        )));
    }
    for key in ["crop_to_aspect_ratio", "pad_to_aspect_ratio", "antialias"] {
        if cfg.bool_or(key, false)? {
            return Err(layer.error(format!("{key}=true is not supported")));
        }
    }
    Ok(Params {
        height: cfg.one_usize("height", None)?,
        width: cfg.one_usize("width", None)?,
        layout: Layout::read(&cfg, 2)?,
    })
}

/// The range of an integer type, for the clip before the cast back.
fn integer_range(dtype: DType) -> Option<(f64, f64)> {
    Some(match dtype {
        DType::U8 => (0.0, 255.0),
        DType::I8 => (-128.0, 127.0),
        DType::I16 => (-32768.0, 32767.0),
        DType::I32 => (-2_147_483_648.0, 2_147_483_647.0),
        _ => return None,
    })
}

impl LayerConverter for Resizing {
    // Keras: no `supports_masking`, so the mask ends here (Keras warns).
    fn masking(&self, _layer: &Layer) -> Masking {
        Masking::Drops
    }

    fn infer(&self, layer: &Layer, inputs: &[TensorInfo]) -> Result<TensorInfo, BuildError> {
        let x = single_input(layer, inputs)?;
        expect_weights(layer, &[])?;
        if x.dtype != DType::F32 && integer_range(x.dtype).is_none() {
            return Err(layer.dtype_error("input", x.dtype, "float32, uint8, int8, int16, int32"));
        }
        let p = params(layer)?;
        let (_, channels) = p.layout.split(layer, x)?;
        Ok(TensorInfo::new(
            x.dtype,
            p.layout
                .shape(x.shape[0], vec![Some(p.height), Some(p.width)], channels),
        ))
    }

    fn emit(
        &self,
        layer: &Layer,
        inputs: &[ValueRef<'_>],
        output: ValueRef<'_>,
        g: &mut GraphBuilder,
    ) -> Result<String, BuildError> {
        let p = params(layer)?;
        let name = &layer.name;
        let dtype = inputs[0].info.dtype;
        let x = cast_to(g, layer, inputs[0].name, dtype, DType::F32);
        let sizes = g.int64s(&format!("{name}/sizes"), &[p.height as i64, p.width as i64]);
        let axes: Vec<i64> = (0..2).map(|i| p.layout.spatial_axis(i) as i64).collect();
        let resize = |g: &mut GraphBuilder, out: &str| {
            g.node_into(
                "Resize",
                &[&x, "", "", &sizes],
                out,
                vec![
                    attr_ints("axes", &axes),
                    attr_string("mode", "linear"),
                    attr_string("coordinate_transformation_mode", "half_pixel"),
                ],
            );
        };
        let Some((low, high)) = integer_range(dtype) else {
            resize(g, output.name);
            return Ok(output.name.to_string());
        };
        let resized = g.fresh(&format!("{name}/resized"));
        resize(g, &resized);
        let rounded = g.node("Round", &[&resized], &format!("{name}/Round"), vec![]);
        let low = g.scalar(&format!("{name}/min"), DType::F32, low);
        let high = g.scalar(&format!("{name}/max"), DType::F32, high);
        let clipped = g.node(
            "Clip",
            &[&rounded, &low, &high],
            &format!("{name}/Clip"),
            vec![],
        );
        let to = attr_int("to", dtype.onnx() as i64);
        g.node_into("Cast", &[&clipped], output.name, vec![to]);
        Ok(output.name.to_string())
    }
}
