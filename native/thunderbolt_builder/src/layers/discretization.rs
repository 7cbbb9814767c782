//! `Discretization` with its `bin_boundaries` (given, or adapted: Keras saves them in the
//! config) → the bucket of each value, the number of boundaries at or below it (`Less`,
//! `Not`, `ReduceSum` against the boundaries; NaN lands in the last bucket, as NumPy's
//! `digitize`), as int32 for `output_mode="int"`, or encoded as `CategoryEncoding` does.

use super::category_encoding::{encode, encoded_shape, OutputMode};
use super::{expect_weights, require_float, single_input};
use crate::config::Config;
use crate::error::BuildError;
use crate::graph::{attr_int, GraphBuilder};
use crate::registry::{LayerConverter, Masking, ValueRef};
use crate::shape::TensorInfo;
use crate::spec::Layer;
use crate::tensor::{DType, Tensor};

pub struct Discretization;

fn params(layer: &Layer) -> Result<(Vec<f64>, OutputMode), BuildError> {
    let cfg = Config::of(layer)?;
    let bad = || {
        layer.error(
            "config key \"bin_boundaries\" must be a list of increasing numbers (an adapted \
             layer saves them there)",
        )
    };
    let boundaries: Vec<f64> = cfg
        .get("bin_boundaries")
        .and_then(|v| v.as_array())
        .ok_or_else(bad)?
        .iter()
        .map(|v| v.as_f64().filter(|x| x.is_finite()))
        .collect::<Option<_>>()
        .ok_or_else(bad)?;
    if boundaries.windows(2).any(|w| w[0] >= w[1]) {
        return Err(bad());
    }
    if cfg.bool_or("sparse", false)? {
        return Err(layer.error("sparse=true is not supported"));
    }
    Ok((boundaries, OutputMode::read(layer, &cfg, "int")?))
}

impl LayerConverter for Discretization {
    // Keras: no `supports_masking`, so the mask ends here (Keras warns).
    fn masking(&self, _layer: &Layer) -> Masking {
        Masking::Drops
    }

    fn infer(&self, layer: &Layer, inputs: &[TensorInfo]) -> Result<TensorInfo, BuildError> {
        let x = single_input(layer, inputs)?;
        expect_weights(layer, &[])?;
        require_float(layer, "input", x.dtype)?;
        let (boundaries, mode) = params(layer)?;
        let dtype = if mode == OutputMode::Int {
            DType::I32
        } else {
            DType::F32
        };
        let shape = encoded_shape(layer, mode, &x.shape, boundaries.len() + 1)?;
        Ok(TensorInfo::new(dtype, shape))
    }

    fn emit(
        &self,
        layer: &Layer,
        inputs: &[ValueRef<'_>],
        output: ValueRef<'_>,
        g: &mut GraphBuilder,
    ) -> Result<String, BuildError> {
        let (boundaries, mode) = params(layer)?;
        let name = &layer.name;
        let x = inputs[0];
        let table = Tensor::from_f64_as(x.info.dtype, vec![boundaries.len()], &boundaries)
            .expect("a float input type");
        let table = g.initializer_owned(&format!("{name}/bin_boundaries"), table);
        let last = g.int64s(&format!("{name}/last_axis"), &[-1]);
        let values = g.node(
            "Unsqueeze",
            &[x.name, &last],
            &format!("{name}/values"),
            vec![],
        );
        let below = g.node("Less", &[&values, &table], &format!("{name}/below"), vec![]);
        let passed = g.node("Not", &[&below], &format!("{name}/passed"), vec![]);
        let to_int = attr_int("to", DType::I32.onnx() as i64);
        let passed = g.node(
            "Cast",
            &[&passed],
            &format!("{name}/passed_count"),
            vec![to_int],
        );
        let keep = attr_int("keepdims", 0);
        if mode == OutputMode::Int {
            g.node_into("ReduceSum", &[&passed, &last], output.name, vec![keep]);
            return Ok(output.name.to_string());
        }
        let buckets = g.node(
            "ReduceSum",
            &[&passed, &last],
            &format!("{name}/buckets"),
            vec![keep],
        );
        let info = TensorInfo::new(DType::I32, x.info.shape.clone());
        encode(
            g,
            layer,
            &buckets,
            &info,
            mode,
            boundaries.len() + 1,
            output.name,
        );
        Ok(output.name.to_string())
    }
}
