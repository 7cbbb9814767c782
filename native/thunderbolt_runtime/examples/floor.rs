//! The floor for the runtime benchmark: the `ort` crate's own
//! `Session::run` in a tight loop, with no BEAM and no Thunderbolt code.
//!
//!     cargo run --release -p thunderbolt_runtime --example floor -- MODEL ITERATIONS
//!
//! Prints one JSON object: p50/p99 microseconds at batch 1 and batch 32.
//!
//! `TOUCH_KB=N` writes to N KiB of other memory between runs, the way a VM
//! that does other work between inferences does. It shows how much of the
//! gap between this loop and any real caller is cache pressure: the model's
//! weights (870 KB) stay hot in this loop and nowhere else.

use std::time::Instant;

use ort::session::{builder::GraphOptimizationLevel, Session};
use ort::value::TensorRef;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let model = args.next().ok_or("usage: floor MODEL [ITERATIONS]")?;
    let iterations: usize = args
        .next()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(20_000);
    let lib = std::env::var("THUNDERBOLT_ORT_LIB")
        .unwrap_or_else(|_| "priv/onnxruntime/libonnxruntime.so.1.31.1".into());
    let env = ort::init_from(lib)?.with_telemetry(false).build()?;
    // The same settings Thunderbolt.load/2 uses by default.
    let mut session = Session::builder(&env)?
        .with_optimization_level(GraphOptimizationLevel::All)?
        .with_intra_threads(1)?
        .with_inter_threads(1)?
        .commit_from_file(&model)?;

    let touch_kb: usize = std::env::var("TOUCH_KB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut scratch = vec![0u8; touch_kb * 1024];

    let mut report = Vec::new();
    for batch in [1usize, 32] {
        let ids: Vec<i64> = (0..batch * 40).map(|i| (i % 1000) as i64).collect();
        let runs = if batch == 1 {
            iterations
        } else {
            iterations / 4
        };
        let mut times = Vec::with_capacity(runs);
        for i in 0..runs + runs / 10 {
            let started = Instant::now();
            let input = TensorRef::from_array_view(([batch, 40], ids.as_slice()))?;
            let outputs = session.run(ort::inputs!["input_ids" => input])?;
            let (_, logits) = outputs["logits"].try_extract_tensor::<f32>()?;
            std::hint::black_box(logits);
            for (j, byte) in scratch.iter_mut().enumerate().step_by(64) {
                *byte = byte.wrapping_add(j as u8);
            }
            std::hint::black_box(&scratch);
            drop(outputs);
            // The first tenth warms caches and ORT's arena.
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
