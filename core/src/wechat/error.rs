//! The component's error is the contract's: the logic returns the WIT `error`'s plain form,
//! and the export converts it, once.

pub use wxnotify_contract::{ApiError, Error};

pub type Result<T, E = Error> = std::result::Result<T, E>;
