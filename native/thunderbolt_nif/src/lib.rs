//! The thin Rustler layer of Thunderbolt: it decodes terms, owns resources
//! and picks schedulers. Everything else lives in plain crates.

mod builder;
mod error;
mod file;
mod infer;
mod keras;
mod serving;
mod session;
mod tensor;
mod tensor_struct;

rustler::init!("Elixir.Thunderbolt.Native");
