//! ONNX Runtime for Thunderbolt, independent of the BEAM.
//!
//! This crate owns everything that does not need Erlang terms: loading the
//! ONNX Runtime library once per process ([`environment`]), element types
//! ([`ElementType`]), zero-copy input views ([`TensorView`]) and pooled,
//! thread-safe model sessions ([`Model`]), and the batching queue of a
//! serving ([`BatchQueue`], [`batch`]). The NIF crate is a thin layer that
//! decodes terms into these types.

pub mod batch;
mod batch_queue;
mod due_timer;
mod element_type;
pub mod environment;
mod error;
mod file_stamp;
mod model;
pub mod number;
mod options;
mod output_plan;
mod raw;
mod tensor;
mod timing;

pub use batch_queue::{
    Batch, BatchQueue, Cancel, Entry, QueueConfig, QueueStats, SubmitError, Taken,
};
pub use due_timer::DueTimer;
pub use element_type::ElementType;
pub use error::{Result, RuntimeError};
pub use file_stamp::{file_stamp, FileStamp};
pub use model::{
    Dims, Model, ModelInfo, ModelSource, Output, OutputBytes, OutputTensor, ValueInfo,
};
pub use options::{ExecutionProvider, OptimizationLevel, SessionOptions};
pub use tensor::TensorView;
pub use timing::RunTimer;
