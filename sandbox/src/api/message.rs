//! Sending: OA template messages, mini-program subscribe messages, and the retired uniform send.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use serde_json::{Value, json};

use super::{JsonObject, Params, opt_str};
use crate::config::{Account, CGI_SUBSCRIBE_SEND, CGI_TEMPLATE_SEND, CGI_UNIFORM_SEND};
use crate::error::{ApiError, ApiResult};
use crate::record::{DeliveredSubscribeMessage, DeliveredTemplateMessage, DisplayedValue};
use crate::state::SandboxState;

const MINIPROGRAM_STATES: [&str; 3] = ["developer", "trial", "formal"];
const LANGS: [&str; 4] = ["zh_CN", "en_US", "zh_HK", "zh_TW"];

/// `POST /cgi-bin/message/template/send` (OA token, OA openid).
pub(super) async fn template_send(
    State(state): State<SandboxState>,
    params: Params,
    body: Bytes,
) -> ApiResult {
    let parsed = JsonObject::parse(&body);
    let mut world = state.world();
    world.authorize(&params, CGI_TEMPLATE_SEND)?;
    let body = parsed?;
    // Types first: a wrongly typed field is a format error (47001) whatever its value.
    let touser = body.str("touser")?;
    let template_id = body.str("template_id")?;
    let url = body.str("url")?;
    let client_msg_id = body.str("client_msg_id")?;
    let miniprogram = body
        .get("miniprogram")
        .map(MiniprogramJump::parse)
        .transpose()?;
    let data = data_values(body.get("data"))?;

    let user = touser
        .and_then(|openid| world.users.by_oa_openid(openid))
        .ok_or_else(ApiError::invalid_openid)?;
    let template_id = template_id.ok_or_else(ApiError::invalid_template_id)?;
    let keys = world.templates[Account::OfficialAccount.index()]
        .get(template_id)
        .ok_or_else(ApiError::invalid_template_id)?
        .clone();
    if let Some(jump) = &miniprogram {
        if jump.appid != world.config.mini_program.appid {
            return Err(ApiError::new(40166, "invalid weapp appid"));
        }
        if jump
            .pagepath
            .is_some_and(|path| !is_mini_page(&world.config.mini_pages, path))
        {
            return Err(ApiError::new(40165, "invalid weapp pagepath"));
        }
    }
    if !world.users.get(user).following {
        return Err(ApiError::new(43004, "require subscribe"));
    }
    if let Some(client_msg_id) = client_msg_id
        && let Some(msgid) = world.dedup_lookup(user, client_msg_id)
    {
        // A retry of a message WeChat already took: same msgid, nothing delivered twice.
        return Ok(Json(
            json!({ "errcode": 0, "errmsg": "ok", "msgid": msgid }),
        ));
    }

    let msgid = world.next_msgid();
    if let Some(client_msg_id) = client_msg_id {
        world.dedup_remember(user, client_msg_id, msgid);
    }
    let displayed = keys
        .iter()
        .map(|key| {
            let shown = wxnotify_rules::template_display(data.get(key).map_or("", String::as_str));
            DisplayedValue {
                key: key.clone(),
                text: shown.text,
                truncated: shown.truncated,
            }
        })
        .collect();
    let message = DeliveredTemplateMessage {
        touser: touser.unwrap_or_default().to_owned(),
        template_id: template_id.to_owned(),
        data: body.get("data").cloned().unwrap_or(Value::Null),
        displayed,
        url: url.map(str::to_owned),
        miniprogram: body.get("miniprogram").cloned(),
        msgid,
        client_msg_id: client_msg_id.map(str::to_owned),
        at: world.now(),
    };
    world.template_messages.push(message);
    world.stats.template_messages += 1;
    Ok(Json(
        json!({ "errcode": 0, "errmsg": "ok", "msgid": msgid }),
    ))
}

/// `POST /cgi-bin/message/subscribe/send` (mini-program token, mini-program openid).
pub(super) async fn subscribe_send(
    State(state): State<SandboxState>,
    params: Params,
    body: Bytes,
) -> ApiResult {
    let parsed = JsonObject::parse(&body);
    let mut world = state.world();
    world.authorize(&params, CGI_SUBSCRIBE_SEND)?;
    let body = parsed?;
    let touser = body.str("touser")?;
    let template_id = body.str("template_id")?;
    let page = body.str("page")?;
    let miniprogram_state = body.str("miniprogram_state")?.unwrap_or("formal");
    let lang = body.str("lang")?.unwrap_or("zh_CN");
    let data = data_values(body.get("data"))?;

    let user = touser
        .and_then(|openid| world.users.by_mini_openid(openid))
        .ok_or_else(ApiError::invalid_openid)?;
    let template_id = template_id.ok_or_else(ApiError::invalid_template_id)?;
    let keys = world.templates[Account::MiniProgram.index()]
        .get(template_id)
        .ok_or_else(ApiError::invalid_template_id)?
        .clone();
    if page.is_some_and(|page| !is_mini_page(&world.config.mini_pages, page)) {
        return Err(ApiError::new(41030, "invalid page"));
    }
    if !MINIPROGRAM_STATES.contains(&miniprogram_state) {
        return Err(ApiError::argument_invalid("miniprogram_state invalid"));
    }
    if !LANGS.contains(&lang) {
        return Err(ApiError::argument_invalid("lang invalid"));
    }
    // Every template keyword must be present and valid for its type; keys outside the
    // template are ignored, as WeChat does.
    let mut displayed = Vec::with_capacity(keys.len());
    for key in &keys {
        let value = data.get(key).map_or("", String::as_str);
        wxnotify_rules::validate_keyword(key, value).map_err(ApiError::argument_invalid)?;
        displayed.push(DisplayedValue {
            key: key.clone(),
            text: value.to_owned(),
            truncated: false,
        });
    }
    let left = world
        .subscriptions
        .get_mut(&(user, template_id.to_owned()))
        .filter(|left| **left > 0)
        .ok_or_else(|| ApiError::new(43101, "user refuse to accept the msg"))?;
    *left -= 1;

    let message = DeliveredSubscribeMessage {
        touser: touser.unwrap_or_default().to_owned(),
        template_id: template_id.to_owned(),
        data: body.get("data").cloned().unwrap_or(Value::Null),
        displayed,
        page: page.map(str::to_owned),
        miniprogram_state: miniprogram_state.to_owned(),
        lang: lang.to_owned(),
        at: world.now(),
    };
    world.subscribe_messages.push(message);
    world.stats.subscribe_messages += 1;
    Ok(Json(json!({ "errcode": 0, "errmsg": "ok" })))
}

/// `POST /cgi-bin/message/wxopen/template/uniform_send`: retired since 2023-09-20.
pub(super) async fn uniform_send(State(state): State<SandboxState>, params: Params) -> ApiResult {
    state.world().authorize(&params, CGI_UNIFORM_SEND)?;
    Err(ApiError::new(45109, "This API has been unsupported"))
}

/// `miniprogram` of a template message.
struct MiniprogramJump<'a> {
    appid: &'a str,
    pagepath: Option<&'a str>,
}

impl<'a> MiniprogramJump<'a> {
    fn parse(value: &'a Value) -> Result<Self, ApiError> {
        let Value::Object(jump) = value else {
            return Err(ApiError::data_format());
        };
        let appid = opt_str(jump.get("appid"))?
            .ok_or_else(|| ApiError::new(40166, "invalid weapp appid"))?;
        let pagepath = opt_str(jump.get("pagepath"))?;
        Ok(Self { appid, pagepath })
    }
}

/// `data` as `{key: {"value": string, ...}}` (other members such as the ignored `color` are
/// allowed); anything else is a format error.
fn data_values(data: Option<&Value>) -> Result<BTreeMap<String, String>, ApiError> {
    let Some(Value::Object(data)) = data else {
        return Err(ApiError::data_format());
    };
    data.iter()
        .map(|(key, item)| match item.get("value") {
            Some(Value::String(value)) => Ok((key.clone(), value.clone())),
            _ => Err(ApiError::data_format()),
        })
        .collect()
}

/// Whether `page` (query allowed) is one of the released mini-program's pages.
fn is_mini_page(pages: &[String], page: &str) -> bool {
    let path = page.split_once('?').map_or(page, |(path, _)| path);
    // WeChat accepts the app.json form; a leading slash is a common variant of it.
    let path = path.strip_prefix('/').unwrap_or(path);
    pages.iter().any(|known| known == path)
}
