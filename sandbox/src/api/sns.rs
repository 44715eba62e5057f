//! `/sns/jscode2session`: the mini-program login.

use axum::Json;
use axum::extract::State;
use serde_json::json;

use super::Params;
use super::token::authenticate;
use crate::config::Account;
use crate::error::{ApiError, ApiResult};
use crate::state::{LOGIN_CODE_TTL, SandboxState};

/// `GET /sns/jscode2session?appid&secret&js_code&grant_type=authorization_code`.
///
/// Exchanges a `wx.login` code (single use, 5 minutes) for the openid, a fresh session key and,
/// when the user has one, the unionid.
pub(super) async fn jscode2session(State(state): State<SandboxState>, params: Params) -> ApiResult {
    let appid = params
        .get("appid")
        .ok_or_else(|| ApiError::new(41002, "appid missing"))?;
    let secret = params
        .get("secret")
        .ok_or_else(|| ApiError::new(41004, "appsecret missing"))?;
    let js_code = params.get("js_code").ok_or_else(invalid_code)?;
    if params.get("grant_type") != Some("authorization_code") {
        return Err(ApiError::new(40002, "invalid grant_type"));
    }

    let mut world = state.world();
    // Only the mini-program can log users in; the OA's appid is not valid here.
    if authenticate(&world.config, appid, secret)? != Account::MiniProgram {
        return Err(ApiError::new(40013, "invalid appid"));
    }
    let now = world.now();
    let code = world.codes.get_mut(js_code).ok_or_else(invalid_code)?;
    if code.used {
        return Err(ApiError::new(40163, "code been used"));
    }
    if now.duration_since(code.issued_at).unwrap_or_default() > LOGIN_CODE_TTL {
        return Err(invalid_code());
    }
    code.used = true;
    let user = code.user;
    let session_key = world.new_session_key(user);
    let ids = &world.users.get(user).ids;
    let openid = ids.mini_openid.clone().ok_or_else(invalid_code)?;
    let mut answer = json!({ "openid": openid, "session_key": session_key });
    if let Some(unionid) = &ids.unionid {
        answer["unionid"] = json!(unionid);
    }
    Ok(Json(answer))
}

fn invalid_code() -> ApiError {
    ApiError::new(40029, "invalid code")
}
