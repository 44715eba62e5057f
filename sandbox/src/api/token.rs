//! `/cgi-bin/token` and `/cgi-bin/stable_token`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use serde_json::json;

use super::{JsonObject, Params};
use crate::config::{Account, CGI_STABLE_TOKEN, CGI_TOKEN, SandboxConfig};
use crate::error::{ApiError, ApiResult};
use crate::state::{SandboxState, World};
use crate::tokens::IssuedToken;

/// `GET /cgi-bin/token?grant_type=client_credential&appid&secret`: a new token on every call.
pub(super) async fn classic(State(state): State<SandboxState>, params: Params) -> ApiResult {
    let (appid, secret) = credentials(
        params.get("grant_type"),
        params.get("appid"),
        params.get("secret"),
    )?;
    let mut world = state.world();
    let account = authenticate(&world.config, appid, secret)?;
    world.consume_quota(account, CGI_TOKEN)?;
    let (ttl, now) = (world.config.token_ttl, world.now());
    Ok(answer(world.tokens.issue_classic(account, ttl, now)))
}

/// `POST /cgi-bin/stable_token` with `{grant_type, appid, secret, force_refresh?}`.
pub(super) async fn stable(State(state): State<SandboxState>, body: Bytes) -> ApiResult {
    let body = JsonObject::parse(&body)?;
    let (appid, secret) = credentials(
        body.str("grant_type")?,
        body.str("appid")?,
        body.str("secret")?,
    )?;
    let force_refresh = body.bool("force_refresh")?.unwrap_or(false);
    let mut world = state.world();
    let account = authenticate(&world.config, appid, secret)?;
    world.consume_quota(account, CGI_STABLE_TOKEN)?;
    let (ttl, now) = (world.config.token_ttl, world.now());
    let day = World::cst_day(now);
    Ok(answer(world.tokens.issue_stable(
        account,
        force_refresh,
        ttl,
        now,
        day,
    )))
}

/// The presence checks shared by both endpoints, in WeChat's errcodes.
fn credentials<'a>(
    grant_type: Option<&str>,
    appid: Option<&'a str>,
    secret: Option<&'a str>,
) -> Result<(&'a str, &'a str), ApiError> {
    if grant_type != Some("client_credential") {
        return Err(ApiError::new(40002, "invalid grant_type"));
    }
    let appid = appid.ok_or_else(|| ApiError::new(41002, "appid missing"))?;
    let secret = secret.ok_or_else(|| ApiError::new(41004, "appsecret missing"))?;
    Ok((appid, secret))
}

/// The account whose appid and secret these are: 40013 unknown appid, 40125 wrong secret.
pub(super) fn authenticate(
    config: &SandboxConfig,
    appid: &str,
    secret: &str,
) -> Result<Account, ApiError> {
    let account = config
        .account_of(appid)
        .ok_or_else(|| ApiError::new(40013, "invalid appid"))?;
    if config.credentials(account).secret != secret {
        return Err(ApiError::new(40125, "invalid appsecret"));
    }
    Ok(account)
}

fn answer(issued: IssuedToken) -> Json<serde_json::Value> {
    let IssuedToken {
        access_token,
        expires_in,
    } = issued;
    Json(json!({ "access_token": access_token, "expires_in": expires_in }))
}
