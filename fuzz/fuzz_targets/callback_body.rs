//! A push body, signed (plain mode) so that it passes admission: XML for the official
//! account, JSON or XML for the mini program, however malformed, nested or large.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wxnotify_core::wechat::callback::{self, CallbackConfig, Query};
use wxnotify_core::wechat::config::AccountKind;
use wxnotify_core::wechat::crypto;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let (kind, token_key) = if selector & 1 == 0 {
        (AccountKind::OfficialAccount, "oa_callback_token")
    } else {
        (AccountKind::MiniProgram, "mini_callback_token")
    };
    let config = CallbackConfig::load(kind, |key| {
        Ok((key == token_key).then(|| "AAAAA".to_owned()))
    })
    .expect("the configuration is valid");
    let (timestamp, nonce) = ("1714036504", "1514711492");
    let signature = crypto::url_signature("AAAAA", timestamp, nonce);
    let query = Query::parse(&format!(
        "signature={signature}&timestamp={timestamp}&nonce={nonce}"
    ));
    let admitted = callback::admit(&config, &query, 1_714_036_504).expect("signed");
    if let Ok(push) = admitted.open(body) {
        // What the component does with an accepted push.
        let _ = push.marker(kind);
    }
});
