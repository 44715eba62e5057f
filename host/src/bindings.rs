//! The host's one `bindgen!`: the `wechat:notify/notify` world.
//!
//! WASI interfaces that wasmtime implements (http, io, clocks, random) map to its types;
//! `wasi:keyvalue` and `wasi:config` (the draft versions Spin implements) are implemented here,
//! in [`crate::wasi_keyvalue`] and [`crate::wasi_config`].

#![allow(missing_docs, reason = "bindgen-generated code")]

wasmtime::component::bindgen!({
    path: "../wit",
    world: "wechat:notify/notify",
    imports: { default: async | trappable },
    exports: { default: async },
    require_store_data_send: true,
    with: {
        "wasi:http": wasmtime_wasi_http::p2::bindings::http,
        "wasi:io": wasmtime_wasi::p2::bindings::io,
        "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
        "wasi:random": wasmtime_wasi::p2::bindings::random,
        "wasi:keyvalue/store.bucket": crate::wasi_keyvalue::OpenBucket,
        "wasi:keyvalue/atomics.cas": crate::wasi_keyvalue::PendingCas,
    },
});

mod contract_conversions {
    use super::exports::wechat::notify::accounts;
    use super::wechat::notify::types;
    wxnotify_contract::wit_conversions!(types, accounts);
}
