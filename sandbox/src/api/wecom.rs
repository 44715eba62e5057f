//! The WeCom (企业微信) group robot webhook: `POST /cgi-bin/webhook/send?key=…`.
//!
//! Checks run in WeCom's order: the key (93000), the JSON (47001: WeCom's own code for a
//! non-JSON body is undocumented, so the sandbox answers the way every WeChat endpoint here
//! does), the message type (40008), the content (44004 empty, 40058 over 2048 bytes for
//! `text` / 4096 for `markdown`), then the robot's 20-per-minute limit (45009). Only `text` and
//! `markdown` are emulated; the other real types (image, news, file, template_card) get 40008
//! here.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use serde_json::{Map, Value, json};

use super::{JsonObject, Params, opt_str};
use crate::error::{ApiError, ApiResult};
use crate::record::RobotMessage;
use crate::state::SandboxState;

/// `text` content limit, in bytes of UTF-8.
pub(crate) const TEXT_MAX_BYTES: usize = 2048;
/// `markdown` content limit, in bytes of UTF-8.
pub(crate) const MARKDOWN_MAX_BYTES: usize = 4096;

fn invalid_webhook_url() -> ApiError {
    ApiError::new(
        93000,
        "invalid webhook url, hint: [key is invalid or the robot was removed]",
    )
}

fn empty_content() -> ApiError {
    ApiError::new(44004, "empty content")
}

/// `POST /cgi-bin/webhook/send?key=…`.
pub(super) async fn webhook_send(
    State(state): State<SandboxState>,
    params: Params,
    body: Bytes,
) -> ApiResult {
    let parsed = JsonObject::parse(&body);
    let mut world = state.world();
    let key = params
        .get("key")
        .filter(|key| world.robots.contains_key(*key))
        .ok_or_else(invalid_webhook_url)?;
    let body = parsed?;
    let (msgtype, limit) = match body.str("msgtype")? {
        Some("text") => ("text", TEXT_MAX_BYTES),
        Some("markdown") => ("markdown", MARKDOWN_MAX_BYTES),
        _ => return Err(ApiError::new(40008, "invalid message type")),
    };
    let section = match body.get(msgtype) {
        None => return Err(empty_content()),
        Some(Value::Object(section)) => section,
        Some(_) => return Err(ApiError::data_format()),
    };
    let content = opt_str(section.get("content"))?.ok_or_else(empty_content)?;
    if content.len() > limit {
        return Err(ApiError::new(
            40058,
            format!("{msgtype}.content exceed max length {limit}"),
        ));
    }
    let (mentioned_list, mentioned_mobile_list) = if msgtype == "text" {
        (
            strings(section, "mentioned_list")?,
            strings(section, "mentioned_mobile_list")?,
        )
    } else {
        (Vec::new(), Vec::new())
    };
    let message = RobotMessage {
        msgtype: msgtype.to_owned(),
        content: content.to_owned(),
        mentioned_list,
        mentioned_mobile_list,
        at: world.now(),
    };
    world
        .robots
        .get_mut(key)
        .ok_or_else(invalid_webhook_url)?
        .accept(message)?;
    Ok(Json(json!({ "errcode": 0, "errmsg": "ok" })))
}

/// An optional array of strings; 47001 when it is anything else.
fn strings(section: &Map<String, Value>, field: &str) -> Result<Vec<String>, ApiError> {
    match section.get(field) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| {
                item.as_str()
                    .map(str::to_owned)
                    .ok_or_else(ApiError::data_format)
            })
            .collect(),
        Some(_) => Err(ApiError::data_format()),
    }
}
