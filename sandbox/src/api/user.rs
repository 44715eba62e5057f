//! Official-account followers: `user/get`, `user/info`, `user/info/batchget`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use serde_json::{Value, json};

use super::{JsonObject, Params, opt_str};
use crate::config::{CGI_USER_BATCHGET, CGI_USER_GET, CGI_USER_INFO};
use crate::error::{ApiError, ApiResult};
use crate::state::{SandboxState, World};

/// Most openids `user/info/batchget` accepts per call.
const BATCH_LIMIT: usize = 100;

/// `GET /cgi-bin/user/get?access_token&next_openid`: one page of followers, in seeding order.
pub(super) async fn followers(State(state): State<SandboxState>, params: Params) -> ApiResult {
    let mut world = state.world();
    world.authorize(&params, CGI_USER_GET)?;
    // An unknown `next_openid` is refused; one who unfollowed since still marks a position.
    let after = params
        .get("next_openid")
        .map(|openid| {
            world
                .users
                .by_oa_openid(openid)
                .ok_or_else(ApiError::invalid_openid)
        })
        .transpose()?;
    let total = world.users.follower_count();
    let (page, at_end) = world
        .users
        .followers_after(after, world.config.page_size.max(1));
    if page.is_empty() {
        // Past the end WeChat answers without `data`; clients must stop on this shape too.
        return Ok(Json(
            json!({ "total": total, "count": 0, "next_openid": "" }),
        ));
    }
    let next_openid = if at_end {
        String::new()
    } else {
        page.last().cloned().unwrap_or_default()
    };
    Ok(Json(json!({
        "total": total,
        "count": page.len(),
        "data": { "openid": page },
        "next_openid": next_openid,
    })))
}

/// `GET /cgi-bin/user/info?access_token&openid&lang`.
pub(super) async fn info(State(state): State<SandboxState>, params: Params) -> ApiResult {
    let mut world = state.world();
    world.authorize(&params, CGI_USER_INFO)?;
    let openid = params
        .get("openid")
        .ok_or_else(|| ApiError::new(41009, "missing openid"))?;
    Ok(Json(user_info(&world, openid)?))
}

/// `POST /cgi-bin/user/info/batchget?access_token` with `{"user_list":[{"openid","lang"?}]}`.
pub(super) async fn batch_info(
    State(state): State<SandboxState>,
    params: Params,
    body: Bytes,
) -> ApiResult {
    // Parsed before the token check only so the lock is not held while parsing; a body error
    // still loses to a token error below, as on WeChat.
    let parsed = parse_batch(&body);
    let mut world = state.world();
    world.authorize(&params, CGI_USER_BATCHGET)?;
    let openids = parsed?;
    let list = openids
        .iter()
        .map(|openid| user_info(&world, openid))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(json!({ "user_info_list": list })))
}

fn parse_batch(body: &[u8]) -> Result<Vec<String>, ApiError> {
    let body = JsonObject::parse(body)?;
    let list = match body.get("user_list") {
        None => &Vec::new(),
        Some(Value::Array(list)) => list,
        Some(_) => return Err(ApiError::data_format()),
    };
    if list.is_empty() || list.len() > BATCH_LIMIT {
        return Err(ApiError::new(40032, "invalid openid list size"));
    }
    list.iter()
        .map(|item| {
            let Value::Object(item) = item else {
                return Err(ApiError::data_format());
            };
            // `lang` is optional but must be a string when present.
            opt_str(item.get("lang"))?;
            opt_str(item.get("openid"))?
                .map(str::to_owned)
                .ok_or_else(ApiError::invalid_openid)
        })
        .collect()
}

/// One user as the OA sees them; 40003 for openids that are not this OA's.
fn user_info(world: &World, openid: &str) -> Result<Value, ApiError> {
    let id = world
        .users
        .by_oa_openid(openid)
        .ok_or_else(ApiError::invalid_openid)?;
    let user = world.users.get(id);
    if !user.following {
        return Ok(json!({ "subscribe": 0, "openid": openid }));
    }
    let mut info = json!({
        "subscribe": 1,
        "openid": openid,
        "language": user.language,
        "subscribe_time": user.subscribe_time,
        "remark": "",
        "groupid": 0,
        "tagid_list": [],
        "subscribe_scene": "ADD_SCENE_SEARCH",
        "qr_scene": 0,
        "qr_scene_str": "",
    });
    if let Some(unionid) = &user.ids.unionid {
        info["unionid"] = json!(unionid);
    }
    Ok(info)
}
