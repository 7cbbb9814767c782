//! Times building the 217,832-parameter Cerebros model (Embedding(1000, 64) →
//! GlobalAveragePooling1D → Dense(128, relu) → Dense(128, relu) → Dense(1000)) and measures
//! the builder's peak heap use with a counting allocator.
//!
//! Run: `cargo run --release -p thunderbolt_builder --example build_benchmark`
//!
//! Weights come from `../shared/models/cerebros_trained.onnx` when present, otherwise from
//! a seeded generator (same shapes; building does not depend on the values).

use onnx_protobuf::{Message, ModelProto};
use serde_json::json;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;
use thunderbolt_builder::{
    build, build_model, build_owned, DType, Input, Layer, ModelSpec, Output, Tensor,
};

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator and only adds bookkeeping.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                let now = CURRENT.fetch_add(new_size - layout.size(), Ordering::Relaxed) + new_size
                    - layout.size();
                PEAK.fetch_max(now, Ordering::Relaxed);
            } else {
                CURRENT.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn weights_from_file() -> Option<Vec<(String, Tensor)>> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/models/cerebros_trained.onnx"
    );
    let model = ModelProto::parse_from_bytes(&std::fs::read(path).ok()?).ok()?;
    let tensors = model
        .graph
        .initializer
        .iter()
        .map(|t| {
            let shape = t.dims.iter().map(|&d| d as usize).collect();
            (
                t.name.clone(),
                Tensor {
                    dtype: DType::F32,
                    shape,
                    data: t.raw_data.clone(),
                },
            )
        })
        .collect();
    Some(tensors)
}

fn seeded_weights() -> Vec<(String, Tensor)> {
    let mut state = 42u64;
    let mut tensor = |shape: Vec<usize>| {
        let n = shape.iter().product();
        let values: Vec<f32> = (0..n)
            .map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1);
                ((state >> 40) as f32 / (1u64 << 24) as f32) - 0.5
            })
            .collect();
        Tensor::from_f32(shape, &values)
    };
    [
        ("embed_weight", vec![1000, 64]),
        ("dense1_weight", vec![64, 128]),
        ("dense1_bias", vec![128]),
        ("dense2_weight", vec![128, 128]),
        ("dense2_bias", vec![128]),
        ("logits_weight", vec![128, 1000]),
        ("logits_bias", vec![1000]),
    ]
    .into_iter()
    .map(|(n, s)| (n.to_string(), tensor(s)))
    .collect()
}

fn spec(mut weights: Vec<(String, Tensor)>) -> ModelSpec {
    let mut take = |name: &str| {
        let i = weights
            .iter()
            .position(|(n, _)| n == name)
            .expect("weight present");
        weights.swap_remove(i).1
    };
    let dense =
        |name: &str, inbound: &str, units: usize, act: &str, kernel: Tensor, bias: Tensor| Layer {
            name: name.into(),
            class_name: "Dense".into(),
            config: json!({"units": units, "activation": act}),
            inbound: vec![inbound.into()],
            weights: vec![kernel, bias],
        };
    let embedding = take("embed_weight");
    let (k1, b1) = (take("dense1_weight"), take("dense1_bias"));
    let (k2, b2) = (take("dense2_weight"), take("dense2_bias"));
    let (k3, b3) = (take("logits_weight"), take("logits_bias"));
    ModelSpec {
        name: "cerebros".into(),
        inputs: vec![Input {
            name: "input_ids".into(),
            dtype: DType::I64,
            shape: vec![None, Some(40)],
        }],
        layers: vec![
            Layer {
                name: "embedding".into(),
                class_name: "Embedding".into(),
                config: json!({"input_dim": 1000, "output_dim": 64}),
                inbound: vec!["input_ids".into()],
                weights: vec![embedding],
            },
            Layer {
                name: "pooling".into(),
                class_name: "GlobalAveragePooling1D".into(),
                config: json!({}),
                inbound: vec!["embedding".into()],
                weights: vec![],
            },
            dense("dense1", "pooling", 128, "relu", k1, b1),
            dense("dense2", "dense1", 128, "relu", k2, b2),
            dense("logits", "dense2", 1000, "linear", k3, b3),
        ],
        outputs: vec![Output {
            name: "logits".into(),
            source: "logits".into(),
        }],
        opset: None,
    }
}

fn summary(label: &str, mut samples: Vec<f64>) {
    samples.sort_by(f64::total_cmp);
    let pct = |p: f64| samples[((samples.len() - 1) as f64 * p).round() as usize];
    println!(
        "{label}: min {:.3} ms, median {:.3} ms, p95 {:.3} ms over {} runs",
        samples[0],
        pct(0.5),
        pct(0.95),
        samples.len()
    );
}

fn main() {
    let (weights, source) = match weights_from_file() {
        Some(w) => (w, "cerebros_trained.onnx"),
        None => (seeded_weights(), "seeded random weights"),
    };
    let spec = spec(weights);
    let weight_bytes: usize = spec
        .layers
        .iter()
        .flat_map(|l| &l.weights)
        .map(|w| w.data.len())
        .sum();
    let params = weight_bytes / 4;
    println!("model: {params} parameters ({weight_bytes} bytes of float32 weights, from {source})");

    for _ in 0..20 {
        build(&spec).expect("build");
    }
    let runs = 300;
    let mut to_bytes = Vec::with_capacity(runs);
    let mut to_proto = Vec::with_capacity(runs);
    let mut size = 0;
    for _ in 0..runs {
        let t = Instant::now();
        size = build(&spec).expect("build").len();
        to_bytes.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        std::hint::black_box(build_model(&spec).expect("build"));
        to_proto.push(t.elapsed().as_secs_f64() * 1e3);
    }
    summary("build (spec -> serialized bytes)", to_bytes);
    summary("build_model (spec -> ModelProto)", to_proto);
    println!("serialized model: {size} bytes");

    let mut owned = Vec::with_capacity(runs);
    for _ in 0..runs {
        let copy = spec.clone();
        let t = Instant::now();
        std::hint::black_box(build_owned(copy).expect("build"));
        owned.push(t.elapsed().as_secs_f64() * 1e3);
    }
    summary("build_owned (owned spec -> serialized bytes)", owned);

    let baseline = CURRENT.load(Ordering::Relaxed);
    PEAK.store(baseline, Ordering::Relaxed);
    let bytes = build(&spec).expect("build");
    let peak = PEAK.load(Ordering::Relaxed) - baseline;
    drop(bytes);
    println!(
        "build(&spec): peak heap beyond the spec {peak} bytes = {:.2}x the weights; with the spec's weights {:.2}x",
        peak as f64 / weight_bytes as f64,
        (peak + weight_bytes) as f64 / weight_bytes as f64
    );

    let copy = spec.clone();
    let baseline = CURRENT.load(Ordering::Relaxed);
    PEAK.store(baseline, Ordering::Relaxed);
    let bytes = build_owned(copy).expect("build");
    let peak = PEAK.load(Ordering::Relaxed) - baseline;
    drop(bytes);
    println!(
        "build_owned(spec): peak heap beyond the spec {peak} bytes = {:.2}x the weights; with the spec's weights {:.2}x",
        peak as f64 / weight_bytes as f64,
        (peak + weight_bytes) as f64 / weight_bytes as f64
    );
}
