//! The thin layer over the WASI imports: config, one JSON POST, a pause. The only module
//! besides `http_api` that calls the bindings.
//!
//! Transport errors describe what failed, never the URL: its query carries the webhook key (and
//! `wxnotify_component_io::send` never puts the URL in one).

use wxnotify_component_io as io;
use wxnotify_component_io::wasi::clocks::monotonic_clock;

use crate::bindings::wasi::config::store as config_store;
use crate::error::Error;

/// Robot answers are tiny JSON documents; anything larger is not an answer.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// A tenant config value.
pub fn config(key: &str) -> Result<Option<String>, Error> {
    config_store::get(key).map_err(|e| match e {
        config_store::Error::Upstream(m) | config_store::Error::Io(m) => {
            Error::Config(format!("reading config key `{key}`: {m}"))
        }
    })
}

pub fn pause_ms(millis: u64) {
    monotonic_clock::subscribe_duration(millis.saturating_mul(1_000_000)).block();
}

/// POSTs `body` as JSON to `url`.
pub fn post_json(url: &str, body: &[u8]) -> Result<io::Response, io::Failure> {
    io::send(&io::Request {
        method: io::Method::Post,
        url,
        json: Some(body),
        max_response_bytes: MAX_RESPONSE_BYTES,
    })
}
