use crate::error::{Result, RuntimeError};

/// ONNX Runtime's graph optimisation levels. In `ort` rc.15 only
/// `ort::session::builder::GraphOptimizationLevel::All` is ORT's
/// `ORT_ENABLE_ALL`; `Level3` is the layout level, which we do not expose.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OptimizationLevel {
    Disable,
    Basic,
    Extended,
    #[default]
    All,
}

impl OptimizationLevel {
    pub fn from_name(name: &str) -> Result<Self> {
        match name {
            "disable" => Ok(Self::Disable),
            "basic" => Ok(Self::Basic),
            "extended" => Ok(Self::Extended),
            "all" => Ok(Self::All),
            other => Err(RuntimeError::InvalidOption(format!(
                "unknown optimization_level {other:?}; expected :disable, :basic, :extended or :all"
            ))),
        }
    }

    pub(crate) fn to_ort(self) -> ort::session::builder::GraphOptimizationLevel {
        use ort::session::builder::GraphOptimizationLevel as L;
        match self {
            Self::Disable => L::Disable,
            Self::Basic => L::Level1,
            Self::Extended => L::Level2,
            Self::All => L::All,
        }
    }
}

/// An execution provider a caller asks for, in order of preference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExecutionProvider {
    Cpu,
    Cuda,
    TensorRt,
    Rocm,
    OpenVino,
    CoreMl,
    DirectMl,
    Xnnpack,
}

impl ExecutionProvider {
    pub fn from_name(name: &str) -> Result<Self> {
        Ok(match name {
            "cpu" => Self::Cpu,
            "cuda" => Self::Cuda,
            "tensorrt" => Self::TensorRt,
            "rocm" => Self::Rocm,
            "openvino" => Self::OpenVino,
            "coreml" => Self::CoreMl,
            "directml" => Self::DirectMl,
            "xnnpack" => Self::Xnnpack,
            other => {
                return Err(RuntimeError::InvalidOption(format!(
                    "unknown execution provider {other:?}; expected one of :cpu, :cuda, :tensorrt, :rocm, :openvino, :coreml, :directml, :xnnpack"
                )))
            }
        })
    }

    /// The identifier ONNX Runtime uses in `GetAvailableProviders`.
    pub fn ort_name(self) -> &'static str {
        match self {
            Self::Cpu => "CPUExecutionProvider",
            Self::Cuda => "CUDAExecutionProvider",
            Self::TensorRt => "TensorrtExecutionProvider",
            Self::Rocm => "ROCMExecutionProvider",
            Self::OpenVino => "OpenVINOExecutionProvider",
            Self::CoreMl => "CoreMLExecutionProvider",
            Self::DirectMl => "DmlExecutionProvider",
            Self::Xnnpack => "XnnpackExecutionProvider",
        }
    }

    /// The short name the generic `SessionOptionsAppendExecutionProvider`
    /// understands, for the providers it supports.
    pub(crate) fn generic_name(self) -> Option<&'static str> {
        match self {
            Self::OpenVino => Some("OpenVINO"),
            Self::CoreMl => Some("CoreML"),
            Self::Xnnpack => Some("XNNPACK"),
            _ => None,
        }
    }
}

/// How to build a model's sessions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionOptions {
    /// Threads inside one operator; `None` keeps ONNX Runtime's default.
    pub intra_op_threads: Option<usize>,
    /// Threads across independent operators; `None` keeps the default.
    pub inter_op_threads: Option<usize>,
    pub optimization_level: OptimizationLevel,
    /// Preferred providers, best first. CPU is always the last resort.
    pub execution_providers: Vec<ExecutionProvider>,
    /// Independent sessions for this model, so that many callers can run it
    /// at once (`Session::run` needs exclusive access).
    pub pool_size: usize,
}

impl Default for SessionOptions {
    fn default() -> Self {
        Self {
            intra_op_threads: None,
            inter_op_threads: None,
            optimization_level: OptimizationLevel::All,
            execution_providers: vec![ExecutionProvider::Cpu],
            pool_size: 1,
        }
    }
}

impl SessionOptions {
    pub fn validate(&self) -> Result<()> {
        if self.pool_size == 0 || self.pool_size > 256 {
            return Err(RuntimeError::InvalidOption(format!(
                "pool_size must be between 1 and 256, got {}",
                self.pool_size
            )));
        }
        for (name, threads) in [
            ("intra_op_threads", self.intra_op_threads),
            ("inter_op_threads", self.inter_op_threads),
        ] {
            if threads.is_some_and(|t| t > 1024) {
                return Err(RuntimeError::InvalidOption(format!(
                    "{name} must be at most 1024"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names() {
        assert_eq!(
            OptimizationLevel::from_name("basic").unwrap(),
            OptimizationLevel::Basic
        );
        assert!(OptimizationLevel::from_name("max").is_err());
        assert_eq!(
            ExecutionProvider::from_name("cuda").unwrap(),
            ExecutionProvider::Cuda
        );
        assert!(ExecutionProvider::from_name("tpu").is_err());
    }

    #[test]
    fn validates_pool_size() {
        let opts = SessionOptions {
            pool_size: 0,
            ..Default::default()
        };
        assert!(opts.validate().is_err());
        assert!(SessionOptions::default().validate().is_ok());
    }
}
