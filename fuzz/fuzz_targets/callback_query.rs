//! Callback admission: any query string (and body) against a configured account, plain and
//! safe mode, both account kinds. Nothing may panic; whatever is admitted must have been
//! signed with the account's token.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wxnotify_core::wechat::callback::{self, CallbackConfig, Query};
use wxnotify_core::wechat::config::AccountKind;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let (query, body) = text.split_once('\n').unwrap_or((&text, ""));
    let kind = if selector & 1 == 0 {
        AccountKind::OfficialAccount
    } else {
        AccountKind::MiniProgram
    };
    let prefix = if selector & 1 == 0 { "oa" } else { "mini" };
    let config = CallbackConfig::load(kind, |key| {
        Ok(match key.strip_prefix(prefix) {
            Some("_callback_token") => Some("spamtest".to_owned()),
            Some("_encoding_aes_key") if selector & 2 == 0 => {
                Some("abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG".to_owned())
            }
            Some("_appid") => Some("wx2c2769f8efd9abc2".to_owned()),
            _ if key == "callback_max_age_secs" => Some("0".to_owned()),
            _ => None,
        })
    })
    .expect("the configuration is valid");
    let query = Query::parse(query);
    let _ = callback::verify_url(&config, &query);
    if let Ok(admitted) = callback::admit(&config, &query, 1_409_735_669) {
        let _ = admitted.open(body.as_bytes());
    }
});
