//! What the component imports, one module per WIT interface it serves, and the storage behind
//! `wasi:keyvalue`.

pub mod storage;
pub mod wasi_config;
pub mod wasi_http;
pub mod wasi_keyvalue;
