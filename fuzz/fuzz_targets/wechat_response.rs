//! WeChat's answers: any status and body, read as the flows read them (the errcode envelope,
//! then the expected fields).
#![no_main]

use libfuzzer_sys::fuzz_target;
use wxnotify_core::wechat::api;
use wxnotify_core::wechat::token::TokenAnswer;

fuzz_target!(|data: &[u8]| {
    let Some((status, body)) = data.split_first_chunk::<2>() else {
        return;
    };
    let status = u16::from_le_bytes(*status) % 600;
    let _ = api::parse::<TokenAnswer>("/cgi-bin/stable_token", status, body);
    let _ = api::parse::<serde_json::Value>("/cgi-bin/message/template/send", status, body);
});
