//! What the latency examples share: their arguments, and timing one
//! inference in a loop at batch 1 and 32 with `cerebros_trained.onnx`'s
//! input (`input_ids`, s64 `[batch, 40]`).

use std::time::Instant;

pub type Error = Box<dyn std::error::Error>;

/// `MODEL [ITERATIONS]` from the command line, and the ONNX Runtime
/// library (`THUNDERBOLT_ORT_LIB`, or the one setup installs).
pub fn args(example: &str) -> Result<(String, usize, String), Error> {
    let mut args = std::env::args().skip(1);
    let model = args
        .next()
        .ok_or_else(|| format!("usage: {example} MODEL [ITERATIONS]"))?;
    let iterations: usize = args
        .next()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(20_000);
    let lib = std::env::var("THUNDERBOLT_ORT_LIB")
        .unwrap_or_else(|_| "priv/onnxruntime/libonnxruntime.so.1.31.1".into());
    Ok((model, iterations, lib))
}

/// Times `run(batch, ids)` at batch 1 (`iterations` runs) and 32 (a
/// quarter as many) after a tenth more as warm-up, and returns one JSON
/// object of p50/p99 microseconds.
pub fn report(
    iterations: usize,
    mut run: impl FnMut(usize, &[i64]) -> Result<(), Error>,
) -> Result<String, Error> {
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
            run(batch, &ids)?;
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
    Ok(format!("{{{}}}", report.join(", ")))
}
