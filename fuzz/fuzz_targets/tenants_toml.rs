//! The tenants file: any text, parsed and resolved (every secret variable answered), as
//! `wxnotify` reads it at start. Nothing may panic; every problem is a `ConfigError`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wxnotify_tenants::TenantsFile;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(file) = TenantsFile::parse(text, "fuzz.toml") else {
        return;
    };
    if let Ok(tenants) = file.resolve_all(|variable| Some(format!("value of {variable}"))) {
        for tenant in tenants {
            // What the runtime and the logs read of a resolved tenant.
            let _ = format!("{tenant:?}");
        }
    }
    let _ = file.api_keys(|variable| Some(format!("key of {variable}")));
});
