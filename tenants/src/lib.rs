//! The tenants file: who a runtime serves, with which accounts, where, and how — parsed and
//! resolved (secrets read from the environment, defaults applied, every value checked) without
//! a runtime, so the `wxnotify` host, its CLI and the fuzz targets share one reading of it.
//!
//! [`TenantsFile`] is the file ([`mod@file`] shows it whole); [`ResolvedTenant`] what a runtime
//! registers; [`Limits`], [`SendRate`], [`AllowList`] and [`EngineOptions`] the settings beside
//! the accounts; [`ConfigError`] names the tenant and the field of every problem.

#![deny(missing_docs)]

mod error;
pub mod file;
mod limits;

pub use error::{BoxError, ComponentProblem, ConfigError, error_chain};
pub use file::*;
pub use limits::{AllowList, EngineOptions, Limits, SendRate, default_cache_dir};
