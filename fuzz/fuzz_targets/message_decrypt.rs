//! The message-crypto decoder alone: any `Encrypt` value, for the demo key and appid.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use wxnotify_core::wechat::crypto::MessageCrypt;

static CRYPT: LazyLock<MessageCrypt> = LazyLock::new(|| {
    MessageCrypt::new(
        "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
        "wx2c2769f8efd9abc2",
    )
    .expect("the demo key is valid")
});

fuzz_target!(|data: &[u8]| {
    if let Ok(encrypt) = std::str::from_utf8(data) {
        let _ = CRYPT.decrypt(encrypt);
    }
});
