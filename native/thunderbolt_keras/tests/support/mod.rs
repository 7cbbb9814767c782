//! Shared by the integration tests: the Keras fixture manifest, running a converted model in
//! ONNX Runtime, and comparing with a tolerance.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use thunderbolt_builder::{DType, Tensor};
use thunderbolt_keras::ImportOptions;

pub const RTOL: f64 = 1e-5;
pub const ATOL: f64 = 1e-5;

pub use thunderbolt_testkit::{ort_env, repo_root, run};

pub fn fixture_dir() -> PathBuf {
    repo_root().join("test/fixtures/keras")
}

/// The Keras 2 (tf.keras) fixtures, written by scripts/gen_keras2_fixtures.py.
pub fn keras2_fixture_dir() -> PathBuf {
    repo_root().join("test/fixtures/keras2")
}

/// Fixtures saved by other Keras 3 releases, written by
/// scripts/gen_keras_release_fixtures.py.
pub fn keras_releases_fixture_dir() -> PathBuf {
    repo_root().join("test/fixtures/keras_releases")
}

/// One model of `test/fixtures/keras/manifest.tsv` (written by scripts/gen_keras_fixtures.py),
/// of `test/fixtures/keras2/manifest.tsv` or of `test/fixtures/keras_releases/manifest.tsv`.
#[derive(Debug, Default)]
pub struct Fixture {
    pub name: String,
    pub model: PathBuf,
    pub options: BTreeMap<String, String>,
    pub inputs: Vec<(String, Tensor)>,
    pub outputs: Vec<(String, Tensor)>,
}

impl Fixture {
    pub fn import_options(&self) -> ImportOptions {
        let mut options = ImportOptions::default();
        if let Some(dtype) = self.options.get("input_dtype") {
            options.input_dtype = Some(DType::from_name(dtype).expect("known dtype"));
        }
        options
    }

    /// The relative and absolute tolerance of the comparison with Keras: 1e-5, or the
    /// fixture's `tolerance` option (a mixed-precision model, which Keras computes in
    /// float16 and the import in float32).
    pub fn tolerance(&self) -> f64 {
        self.options
            .get("tolerance")
            .map_or(RTOL, |t| t.parse().expect("a numeric tolerance"))
    }
}

/// Every fixture: Keras 3's, then Keras 2's.
pub fn load_fixtures() -> Vec<Fixture> {
    let mut fixtures = load_manifest(&fixture_dir());
    fixtures.extend(load_manifest(&keras2_fixture_dir()));
    fixtures.extend(load_manifest(&keras_releases_fixture_dir()));
    fixtures
}

fn load_manifest(dir: &Path) -> Vec<Fixture> {
    let manifest = std::fs::read_to_string(dir.join("manifest.tsv"))
        .unwrap_or_else(|e| panic!("cannot read {}/manifest.tsv: {e}", dir.display()));
    let mut fixtures: Vec<Fixture> = Vec::new();
    for line in manifest
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let cols: Vec<&str> = line.split('\t').collect();
        assert_eq!(cols.len(), 6, "bad manifest row {line:?}");
        let (fixture, role, name, dtype, shape, file) =
            (cols[0], cols[1], cols[2], cols[3], cols[4], cols[5]);
        if fixtures.last().is_none_or(|f| f.name != fixture) {
            fixtures.push(Fixture {
                name: fixture.to_string(),
                ..Default::default()
            });
        }
        let f = fixtures.last_mut().expect("pushed above");
        match role {
            "model" => f.model = dir.join(file),
            "option" => {
                f.options.insert(name.to_string(), file.to_string());
            }
            "input" | "output" => {
                let shape: Vec<usize> = if shape == "-" {
                    vec![]
                } else {
                    shape
                        .split(',')
                        .map(|d| d.parse().expect("dimension"))
                        .collect()
                };
                let data = std::fs::read(dir.join(file)).expect("tensor file");
                let tensor = Tensor::new(DType::from_name(dtype).expect("dtype"), shape, data)
                    .expect("tensor size");
                let list = if role == "input" {
                    &mut f.inputs
                } else {
                    &mut f.outputs
                };
                list.push((name.to_string(), tensor));
            }
            other => panic!("unknown manifest role {other:?}"),
        }
    }
    assert!(!fixtures.is_empty(), "no fixtures in {}", dir.display());
    fixtures
}

/// `None` when `got` matches `expected` within the Keras fixtures' tolerance; otherwise a
/// description of the first mismatch.
pub fn mismatch(got: &Tensor, expected: &Tensor) -> Option<String> {
    thunderbolt_testkit::mismatch(got, expected, RTOL, ATOL)
}

/// [`mismatch`] within `tolerance`, relative and absolute.
pub fn mismatch_within(got: &Tensor, expected: &Tensor, tolerance: f64) -> Option<String> {
    thunderbolt_testkit::mismatch(got, expected, tolerance, tolerance)
}

/// `../shared/models/<name>`, or `None` with a message saying the test is skipped.
pub fn shared_model(name: &str) -> Option<PathBuf> {
    let path = repo_root().join("../shared/models").join(name);
    if path.is_file() {
        Some(path)
    } else {
        eprintln!(
            "SKIPPED: reference model {} is absent (it lives outside the repo)",
            path.display()
        );
        None
    }
}

/// An HDF5 dataset a test writes.
#[derive(Debug, Clone)]
pub enum H5Data {
    F32(Vec<u64>, Vec<f32>),
    U32(Vec<u64>, Vec<u32>),
}

/// A `.keras` file taken apart, to be changed and put back together by a test.
pub struct KerasParts {
    pub config: serde_json::Value,
    /// Dataset path (`layers/dense/vars/0`) to data.
    pub weights: BTreeMap<String, H5Data>,
}

impl KerasParts {
    /// Reads a fixture `.keras` (float32 weights only, as the fixtures have).
    pub fn read(path: &Path) -> KerasParts {
        use std::io::Read;
        let bytes = std::fs::read(path).expect("read .keras");
        let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("zip");
        let mut config = String::new();
        zip.by_name("config.json")
            .expect("config.json")
            .read_to_string(&mut config)
            .expect("utf8");
        let mut h5 = Vec::new();
        zip.by_name("model.weights.h5")
            .expect("weights")
            .read_to_end(&mut h5)
            .expect("read");
        let file = hdf5_pure::File::from_bytes(h5).expect("hdf5");
        let mut weights = BTreeMap::new();
        walk(&file.root(), "", &mut weights);
        KerasParts {
            config: serde_json::from_str(&config).expect("json"),
            weights,
        }
    }

    /// The layer entry named `name` in the top-level model's config.
    pub fn layer_mut(&mut self, name: &str) -> &mut serde_json::Value {
        self.config["config"]["layers"]
            .as_array_mut()
            .expect("layers")
            .iter_mut()
            .find(|l| l["name"] == name)
            .unwrap_or_else(|| panic!("no layer {name}"))
    }

    pub fn weights_h5(&self) -> Vec<u8> {
        let mut builder = hdf5_pure::FileBuilder::new();
        let tree = Tree::of(&self.weights);
        for (name, data) in &tree.datasets {
            write_dataset(builder.create_dataset(name), data);
        }
        for (name, child) in &tree.groups {
            let g = build_group(builder.create_group(name), child);
            builder.add_group(g);
        }
        builder.finish().expect("write hdf5")
    }

    pub fn to_keras(&self) -> Vec<u8> {
        keras_zip(&[
            ("metadata.json", br#"{"keras_version": "3.12.0"}"#.to_vec()),
            ("config.json", self.config.to_string().into_bytes()),
            ("model.weights.h5", self.weights_h5()),
        ])
    }
}

/// A zip archive with the given entries, stored uncompressed as Keras does.
pub fn keras_zip(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
    use std::io::Write;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, bytes) in entries {
        zip.start_file(*name, options).expect("start entry");
        zip.write_all(bytes).expect("write entry");
    }
    zip.finish().expect("finish zip").into_inner()
}

fn walk(group: &hdf5_pure::Group, prefix: &str, out: &mut BTreeMap<String, H5Data>) {
    for name in group.datasets().expect("datasets") {
        let ds = group.dataset(&name).expect("dataset");
        out.insert(
            format!("{prefix}{name}"),
            H5Data::F32(ds.shape().expect("shape"), ds.read_f32().expect("f32")),
        );
    }
    for name in group.groups().expect("groups") {
        walk(
            &group.group(&name).expect("group"),
            &format!("{prefix}{name}/"),
            out,
        );
    }
}

#[derive(Default)]
struct Tree {
    datasets: BTreeMap<String, H5Data>,
    groups: BTreeMap<String, Tree>,
}

impl Tree {
    fn of(weights: &BTreeMap<String, H5Data>) -> Tree {
        let mut root = Tree::default();
        for (path, data) in weights {
            let parts: Vec<&str> = path.split('/').collect();
            let mut node = &mut root;
            for part in &parts[..parts.len() - 1] {
                node = node.groups.entry(part.to_string()).or_default();
            }
            node.datasets
                .insert(parts[parts.len() - 1].to_string(), data.clone());
        }
        root
    }
}

fn build_group(mut g: hdf5_pure::GroupBuilder, tree: &Tree) -> hdf5_pure::FinishedGroup {
    for (name, data) in &tree.datasets {
        write_dataset(g.create_dataset(name), data);
    }
    for (name, child) in &tree.groups {
        let sub = build_group(g.create_group(name), child);
        g.add_group(sub);
    }
    g.finish()
}

fn write_dataset(ds: &mut hdf5_pure::DatasetBuilder, data: &H5Data) {
    match data {
        H5Data::F32(shape, values) => ds.with_f32_data(values).with_shape(shape),
        H5Data::U32(shape, values) => ds.with_u32_data(values).with_shape(shape),
    };
}
