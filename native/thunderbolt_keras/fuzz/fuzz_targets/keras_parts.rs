//! `config.json` and `model.weights.h5` fuzzed directly, without the zip layer (whose CRC
//! check would reject nearly every mutation before the config or HDF5 parsers see it).
//! The input is `<config.json bytes> 0x00 <model.weights.h5 bytes>`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use thunderbolt_keras::{import_parts, ImportOptions};

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    let Ok(config) = std::str::from_utf8(&data[..split]) else { return };
    let weights = data.get(split + 1..).unwrap_or_default().to_vec();
    let _ = import_parts(config, weights, &ImportOptions::default());
});
