//! Engine configurations the benches compare, named as in `WXNOTIFY_BENCH_ENGINES`.

use wxnotify::{Engine, EngineOptions};

/// The configurations in `WXNOTIFY_BENCH_ENGINES` (comma-separated), else `default`.
pub fn configurations(default: &str) -> Vec<String> {
    std::env::var("WXNOTIFY_BENCH_ENGINES")
        .unwrap_or_else(|_| default.to_owned())
        .split(',')
        .map(|configuration| configuration.trim().to_owned())
        .collect()
}

/// An engine for a configuration: `{KiB kept resident}` (all of it reset after each call) or
/// `{KiB}/touched` (only the pages a call touched are reset, see
/// [`EngineOptions::reset_touched_pages_only`]; wxnotify's default is `4096/touched`).
pub fn engine(configuration: &str) -> Engine {
    let (kib, touched_only) = match configuration.split_once('/') {
        Some((kib, "touched")) => (kib, true),
        None => (configuration, false),
        Some(_) => panic!("`{configuration}`: a size in KiB, optionally followed by `/touched`"),
    };
    Engine::with_options(EngineOptions {
        cache_dir: None,
        keep_resident_bytes: kib.parse::<usize>().expect("a size in KiB") << 10,
        reset_touched_pages_only: touched_only,
        ..EngineOptions::default()
    })
    .expect("engine")
}
