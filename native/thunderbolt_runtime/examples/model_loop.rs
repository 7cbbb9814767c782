//! Thunderbolt's own run path without the BEAM: `Model::run` in a Rust
//! loop, copying each output once as the NIF does. Set beside the floor
//! example (the `ort` crate's `Session::run`), it splits the gap between
//! the floor and `Thunderbolt.run/3` into what this crate costs and what
//! crossing into the BEAM costs.
//!
//!     cargo run --release -p thunderbolt_runtime --example model_loop -- MODEL ITERATIONS
//!
//! Prints one JSON object: p50/p99 microseconds at batch 1 and batch 32.

use std::path::Path;
use std::time::Instant;

use thunderbolt_runtime::{
    environment, ElementType, Model, ModelSource, SessionOptions, TensorView,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let model = args.next().ok_or("usage: model_loop MODEL [ITERATIONS]")?;
    let iterations: usize = args
        .next()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(20_000);
    let lib = std::env::var("THUNDERBOLT_ORT_LIB")
        .unwrap_or_else(|_| "priv/onnxruntime/libonnxruntime.so.1.31.1".into());
    environment::get_or_init(Path::new(&lib))?;
    // The same settings Thunderbolt.load/2 uses by default.
    let options = SessionOptions {
        intra_op_threads: Some(1),
        inter_op_threads: Some(1),
        pool_size: 2,
        ..SessionOptions::default()
    };
    let model = Model::load(ModelSource::File(Path::new(&model)), &options)?;

    let mut report = Vec::new();
    for batch in [1usize, 32] {
        let ids: Vec<i64> = (0..batch * 40).map(|i| (i % 1000) as i64).collect();
        let bytes: Vec<u8> = ids.iter().flat_map(|i| i.to_ne_bytes()).collect();
        let shape = [batch as i64, 40];
        let runs = if batch == 1 {
            iterations
        } else {
            iterations / 4
        };
        let mut times = Vec::with_capacity(runs);
        for i in 0..runs + runs / 10 {
            let started = Instant::now();
            let view = TensorView::new(ElementType::S64, &shape, &bytes)?;
            let outputs = model.run(&[view], None, |out| Ok(out.data.to_vec()))?;
            std::hint::black_box(outputs);
            // The first tenth warms caches and ONNX Runtime's arena.
            if i >= runs / 10 {
                times.push(started.elapsed().as_nanos() as f64 / 1_000.0);
            }
        }
        times.sort_by(f64::total_cmp);
        let pct = |p: f64| times[((times.len() as f64 - 1.0) * p) as usize];
        report.push(format!(
            "\"b{batch}\": {{\"p50\": {:.2}, \"p99\": {:.2}, \"n\": {}}}",
            pct(0.5),
            pct(0.99),
            times.len()
        ));
    }
    println!("{{{}}}", report.join(", "));
    Ok(())
}
