//! `Softmax` layer → ONNX `Softmax` over one axis (opset 13+, where `axis` means a single
//! axis). Keras also accepts a list of axes; that becomes
//! `Exp(x - ReduceLogSumExp(x, axes, keepdims=1))`, as Keras computes it (opset 18 for the
//! `axes` input). The optional mask call argument is not supported.

use super::{expect_weights, require_float, single_input};
use crate::config::Config;
use crate::error::BuildError;
use crate::graph::{attr_int, GraphBuilder};
use crate::registry::{LayerConverter, ValueRef};
use crate::shape::TensorInfo;
use crate::spec::Layer;

pub struct Softmax;

fn axes(layer: &Layer, rank: usize) -> Result<Vec<i64>, BuildError> {
    let raw = Config::of(layer)?.axes_or("axis", -1)?;
    if raw.is_empty() {
        return Err(layer.error("config key \"axis\" must not be an empty list"));
    }
    let mut axes = Vec::with_capacity(raw.len());
    for a in raw {
        let n = super::checked_axis(layer, a, rank)?;
        if axes.contains(&(n as i64)) {
            return Err(layer.error(format!("axis {a} is listed twice")));
        }
        axes.push(n as i64);
    }
    axes.sort_unstable();
    Ok(axes)
}

impl LayerConverter for Softmax {
    fn infer(&self, layer: &Layer, inputs: &[TensorInfo]) -> Result<TensorInfo, BuildError> {
        let x = single_input(layer, inputs)?;
        expect_weights(layer, &[])?;
        require_float(layer, "input", x.dtype)?;
        axes(layer, x.rank())?;
        Ok(x.clone())
    }

    fn emit(
        &self,
        layer: &Layer,
        inputs: &[ValueRef<'_>],
        output: ValueRef<'_>,
        g: &mut GraphBuilder,
    ) -> Result<String, BuildError> {
        let x = inputs[0].name;
        let axes = axes(layer, inputs[0].info.rank())?;
        if let [axis] = axes[..] {
            g.node_into("Softmax", &[x], output.name, vec![attr_int("axis", axis)]);
        } else {
            let name = &layer.name;
            let axes = g.int64s(&format!("{name}/axes"), &axes);
            let lse = g.node(
                "ReduceLogSumExp",
                &[x, &axes],
                &format!("{name}/ReduceLogSumExp"),
                vec![attr_int("keepdims", 1)],
            );
            let shifted = g.node("Sub", &[x, &lse], &format!("{name}/Sub"), vec![]);
            g.node_into("Exp", &[&shifted], output.name, vec![]);
        }
        Ok(output.name.to_string())
    }
}
