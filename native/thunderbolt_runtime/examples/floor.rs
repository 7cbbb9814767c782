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

#[path = "common/latency.rs"]
mod latency;

use ort::session::{builder::GraphOptimizationLevel, Session};
use ort::value::TensorRef;

fn main() -> Result<(), latency::Error> {
    let (model, iterations, lib) = latency::args("floor")?;
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

    let report = latency::report(iterations, |batch, ids| {
        let input = TensorRef::from_array_view(([batch, 40], ids))?;
        let outputs = session.run(ort::inputs!["input_ids" => input])?;
        let (_, logits) = outputs["logits"].try_extract_tensor::<f32>()?;
        std::hint::black_box(logits);
        for (j, byte) in scratch.iter_mut().enumerate().step_by(64) {
            *byte = byte.wrapping_add(j as u8);
        }
        std::hint::black_box(&scratch);
        Ok(())
    })?;
    println!("{report}");
    Ok(())
}
