//! Times converting a Keras model end to end (read file, unzip, parse, read weights, build,
//! serialize): `cargo run --release -p thunderbolt_keras --example convert_timing [MODEL]`.
//! Defaults to `../shared/models/cerebros_trained.keras`.

use std::time::{Duration, Instant};
use thunderbolt_keras::{convert_file, DType, ImportOptions};

fn main() {
    let path = std::env::args().nth(1).unwrap_or_else(|| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/models/cerebros_trained.keras"
        )
        .to_string()
    });
    let options = ImportOptions {
        input_dtype: Some(DType::I64),
        ..Default::default()
    };
    let onnx = match convert_file(&path, &options) {
        Ok(onnx) => onnx,
        Err(e) => {
            eprintln!("cannot convert {path}: {e}");
            std::process::exit(1);
        }
    };
    let runs = 50;
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            let out = convert_file(&path, &options).expect("convert");
            let elapsed = start.elapsed();
            assert_eq!(out.len(), onnx.len());
            elapsed
        })
        .collect();
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{path}: {} bytes of ONNX; {runs} runs: min {:.2} ms, p50 {:.2} ms, max {:.2} ms",
        onnx.len(),
        ms(times[0]),
        ms(times[runs / 2]),
        ms(times[runs - 1])
    );
}
