//! How long a start spends loading the component: cold (compiling with Cranelift) versus warm
//! (precompiled code from the disk cache), each in a fresh engine as a new process would have.
//!
//! Run with `cargo bench -p wxnotify --bench component_load`.

use std::time::{Duration, Instant};

use wxnotify::{BUILTIN_COMPONENT, CompiledFrom, Engine, EngineOptions};

fn load(cache: &std::path::Path) -> (Duration, CompiledFrom) {
    let engine = Engine::with_options(EngineOptions {
        cache_dir: Some(cache.to_path_buf()),
        ..EngineOptions::default()
    })
    .expect("engine");
    let started = Instant::now();
    let (_, from) = engine
        .load(BUILTIN_COMPONENT)
        .expect("the built-in component loads");
    (started.elapsed(), from)
}

fn main() {
    const ROUNDS: usize = 5;
    let mut cold = Vec::new();
    let mut warm = Vec::new();
    for _ in 0..ROUNDS {
        let cache = tempfile::tempdir().expect("tempdir");
        let (first, from) = load(cache.path());
        assert_eq!(from, CompiledFrom::Compiled);
        let (second, from) = load(cache.path());
        assert_eq!(from, CompiledFrom::DiskCache);
        cold.push(first);
        warm.push(second);
    }
    cold.sort();
    warm.sort();
    let (cold, warm) = (cold[ROUNDS / 2], warm[ROUNDS / 2]);
    println!(
        "component: built-in, {} bytes; median of {ROUNDS} rounds",
        BUILTIN_COMPONENT.len()
    );
    println!("first start (compile):         {cold:>10.1?}");
    println!("second start (warm cache):     {warm:>10.1?}");
    println!(
        "warm / cold:                   {:>9.1}%",
        100.0 * warm.as_secs_f64() / cold.as_secs_f64()
    );
}
