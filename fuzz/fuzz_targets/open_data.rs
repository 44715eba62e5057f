//! Mini-program open data (`encryptedData`): session key, data and iv as the client sends
//! them, newline-separated; the watermark check against the official vector's appid.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wxnotify_core::wechat::crypto::decrypt_user_data;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut fields = text.splitn(3, '\n');
    let (Some(key), Some(encrypted), Some(iv)) = (fields.next(), fields.next(), fields.next())
    else {
        return;
    };
    let _ = decrypt_user_data(key, encrypted, iv, "wx4f4bc4dec97d474b");
});
