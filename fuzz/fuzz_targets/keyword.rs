//! The subscribe-message keyword validator and the template display rule: any key, any value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wxnotify_rules::{KeywordType, template_display, validate_keyword};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let value = String::from_utf8_lossy(rest);
    let ty = KeywordType::ALL[usize::from(selector) % KeywordType::ALL.len()];
    // A key of the type, as templates name them, and the value's own first line as a key.
    let _ = validate_keyword(&format!("{ty}{}", selector / 13), &value);
    if let Some((key, value)) = value.split_once('\n') {
        let _ = validate_keyword(key, value);
    }
    let shown = template_display(&value);
    let _ = shown.truncated;
});
