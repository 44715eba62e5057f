//! Safe mode past its signature: the `Encrypt` value is fuzzed and `msg_signature` computed
//! over it, so the message-crypto decoder (base64, AES-CBC, padding, length field, appid) and
//! the parsing of what it decrypts are reached through the callback path.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wxnotify_core::wechat::callback::{self, CallbackConfig, Query};
use wxnotify_core::wechat::config::AccountKind;
use wxnotify_core::wechat::crypto;

const TOKEN: &str = "spamtest";

fuzz_target!(|data: &[u8]| {
    let Ok(encrypt) = std::str::from_utf8(data) else {
        return;
    };
    let config = CallbackConfig::load(AccountKind::OfficialAccount, |key| {
        Ok(match key {
            "oa_callback_token" => Some(TOKEN.to_owned()),
            "oa_encoding_aes_key" => Some("abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG".to_owned()),
            "oa_appid" => Some("wx2c2769f8efd9abc2".to_owned()),
            "callback_max_age_secs" => Some("0".to_owned()),
            _ => None,
        })
    })
    .expect("the configuration is valid");
    let (timestamp, nonce) = ("1409735669", "1320562132");
    let msg_signature = crypto::msg_signature(TOKEN, timestamp, nonce, encrypt);
    let query = Query::parse(&format!(
        "timestamp={timestamp}&nonce={nonce}&encrypt_type=aes&msg_signature={msg_signature}"
    ));
    let body = format!(
        "<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
    );
    let admitted = callback::admit(&config, &query, 0).expect("signed");
    let _ = admitted.open(body.as_bytes());
});
