//! Thunderbolt's own run path without the BEAM: `Model::run` in a Rust
//! loop, copying each output once as the NIF does. Set beside the floor
//! example (the `ort` crate's `Session::run`), it splits the gap between
//! the floor and `Thunderbolt.run/3` into what this crate costs and what
//! crossing into the BEAM costs.
//!
//!     cargo run --release -p thunderbolt_runtime --example model_loop -- MODEL ITERATIONS
//!
//! Prints one JSON object: p50/p99 microseconds at batch 1 and batch 32.

#[path = "common/latency.rs"]
mod latency;

use std::path::Path;

use thunderbolt_runtime::{
    environment, ElementType, Model, ModelSource, SessionOptions, TensorView,
};

fn main() -> Result<(), latency::Error> {
    let (model, iterations, lib) = latency::args("model_loop")?;
    environment::get_or_init(Path::new(&lib))?;
    // The same settings Thunderbolt.load/2 uses by default.
    let options = SessionOptions {
        intra_op_threads: Some(1),
        inter_op_threads: Some(1),
        pool_size: 2,
        ..SessionOptions::default()
    };
    let model = Model::load(ModelSource::File(Path::new(&model)), &options)?;

    // The input's bytes, made once per batch size, outside the timing, as
    // the BEAM caller's binary is.
    let mut input: (usize, Vec<u8>) = (0, Vec::new());
    let report = latency::report(iterations, |batch, ids| {
        if input.0 != batch {
            input = (batch, ids.iter().flat_map(|i| i.to_ne_bytes()).collect());
        }
        let bytes = &input.1;
        let shape = [batch as i64, 40];
        let view = TensorView::new(ElementType::S64, &shape, bytes)?;
        let outputs = model.run(&[view], None, |out| Ok(out.data.to_vec()))?;
        std::hint::black_box(outputs);
        Ok(())
    })?;
    println!("{report}");
    Ok(())
}
