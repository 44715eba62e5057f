//! The body of `POST /v1/{tenant}/notifications`: one notification or a batch, read as
//! `wxnotify serve` reads it. Nothing may panic; a batch's error names a notification of it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wxnotify_contract::submission;

fuzz_target!(|data: &[u8]| {
    match submission::parse(data, 500) {
        Ok((notifications, batch)) => {
            assert!(!notifications.is_empty() && notifications.len() <= 500);
            assert!(batch || notifications.len() == 1);
        }
        Err(error) => {
            if let Some(index) = error.index {
                assert!(
                    error
                        .message
                        .starts_with(&format!("notifications[{index}]"))
                );
            }
        }
    }
});
