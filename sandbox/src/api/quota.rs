//! `/cgi-bin/openapi/quota/get`: an API's daily quota for the calling account.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use serde_json::json;

use super::{JsonObject, Params};
use crate::config::{CGI_QUOTA_GET, api_accounts};
use crate::error::{ApiError, ApiResult};
use crate::state::SandboxState;

/// `POST /cgi-bin/openapi/quota/get?access_token` with `{"cgi_path"}`.
pub(super) async fn get(
    State(state): State<SandboxState>,
    params: Params,
    body: Bytes,
) -> ApiResult {
    let parsed = JsonObject::parse(&body);
    let mut world = state.world();
    let account = world.authorize(&params, CGI_QUOTA_GET)?;
    let body = parsed?;
    let cgi_path = body
        .str("cgi_path")?
        .filter(|path| path.starts_with('/'))
        .ok_or_else(|| ApiError::new(76003, "invalid cgi_path"))?;
    if cgi_path.starts_with("/sns/") {
        return Err(wrong_token_type());
    }
    let accounts =
        api_accounts(cgi_path).ok_or_else(|| ApiError::new(76021, "cgi_path not found"))?;
    if !accounts.contains(&account) {
        return Err(wrong_token_type());
    }
    let used = world.quota_used(account, cgi_path);
    // Paths without a configured limit are unlimited; report the largest value WeChat's
    // clients can hold rather than inventing a limit.
    let daily_limit = world
        .config
        .daily_limits
        .get(cgi_path)
        .copied()
        .unwrap_or(u64::from(u32::MAX));
    Ok(Json(json!({
        "errcode": 0,
        "errmsg": "ok",
        "quota": {
            "daily_limit": daily_limit,
            "used": used,
            "remain": daily_limit.saturating_sub(used),
        },
    })))
}

fn wrong_token_type() -> ApiError {
    ApiError::new(76022, "could not use this cgi_path, no permission")
}
