//! The `wechat:notify` contract (`wit/`) as plain Rust, for everything that speaks it without
//! being a bindings generator's output: the WeChat logic, the components' JSON API, the host's
//! HTTP API and its OpenAPI document, the outbox's stored payloads.
//!
//! - [`types`]: the WIT records and variants, with their JSON view (serde).
//! - [`Error`]: the WIT `error`, its JSON, its HTTP status, and [`Error::retry`] — the one
//!   place that decides what an error means for trying again.
//! - [`json_api`]: the JSON API over [`Notify`] (the world's operations), which a component
//!   serves on `wasi:http/incoming-handler` for gateways.
//! - [`submission`]: what a queue accepts in one request (one notification or a batch).
//! - [`egress`]: one outgoing HTTP exchange (method, answer, failure), as the flows and the
//!   hosts' HTTP glue hand it to each other.
//! - [`wit_conversions!`]: `From` both ways to the types wit-bindgen or wasmtime's `bindgen!`
//!   generate from the same WIT, used once by each component and by the host.
//!
//! No I/O and no WASI: it builds for `wasm32-wasip2` and natively alike.

pub mod convert;
pub mod egress;
mod error;
pub mod json_api;
pub mod submission;
pub mod types;

pub use error::{ApiError, DAILY_QUOTA_ERRCODE, Error, ErrorJson, Retry};
pub use json_api::Notify;
pub use types::*;
