//! `wasi:http/incoming-handler`: WeChat's callback URLs, and the JSON API
//! (`wxnotify_contract::json_api`: `/v1/...`) for everything else, so a wasi:http gateway
//! (Spin, Node, wasmtime serve) can route requests to the component directly.
//!
//! | route | body | answer |
//! |---|---|---|
//! | `GET /callback/{oa\|mini}` | — | URL verification: `echostr`, as text |
//! | `POST /callback/{oa\|mini}` | a WeChat push (XML, or JSON for mini) | `success`, as text |
//! | `/v1/...` | JSON | see `wxnotify_contract::json_api` |
//!
//! The callback routes are the URLs to set in the official account's and the mini program's
//! consoles; see `wxnotify_core::callbacks` for what a push changes and
//! `wxnotify_core::wechat::callback` for how it is checked. A refused push answers `{"error": {"kind", "message"}}` with a 4xx
//! status; a push that could not be applied answers 5xx, so WeChat retries it.

use wxnotify_component_io::wasi::http::types::{IncomingRequest, Method, ResponseOutparam};
use wxnotify_component_io::{BodyError, answer_json_api, read_request_body, respond, respond_json};
use wxnotify_contract::json_api::Answer;

use crate::Component;
use crate::bindings::exports::wasi::http::incoming_handler::Guest;
use crate::host_io::WasiEnv;
use wxnotify_core::callbacks;
use wxnotify_core::wechat::callback::{self, CallbackError, Rejection};
use wxnotify_core::wechat::config::AccountKind;

impl Guest for Component {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let path_with_query = request.path_with_query().unwrap_or_default();
        let (path, query) = path_with_query
            .split_once('?')
            .unwrap_or((&path_with_query, ""));
        let kind = match path.trim_matches('/') {
            "callback/oa" => AccountKind::OfficialAccount,
            "callback/mini" => AccountKind::MiniProgram,
            _ => return respond_json(response_out, &answer_json_api(&Component, &request)),
        };
        let method = request.method();
        if !matches!(method, Method::Get | Method::Post) {
            let answer = Answer::route_error(
                405,
                "method_not_allowed",
                "method not allowed on this route",
            );
            return respond_json(response_out, &answer);
        }
        match callback_answer(&request, &method, kind, query) {
            Ok(text) => respond(
                response_out,
                200,
                "text/plain; charset=utf-8",
                text.as_bytes(),
            ),
            Err(answer) => respond_json(response_out, &answer),
        }
    }
}

/// `GET` (URL verification) or `POST` (a push) on `kind`'s callback URL: the text to answer
/// WeChat, or the error.
fn callback_answer(
    request: &IncomingRequest,
    method: &Method,
    kind: AccountKind,
    query: &str,
) -> Result<String, Answer> {
    let env = WasiEnv::default();
    let outcome = if matches!(method, Method::Get) {
        callbacks::verify_url(&env, kind, query)
    } else {
        let read = || read_request_body(request, callback::MAX_BODY_BYTES).map_err(into_callback);
        // WeChat wants `success` (or nothing) for every push it need not retry, duplicates and
        // pushes that change nothing included; never a passive reply.
        wxnotify_core::block_on(callbacks::receive(&env, kind, query, read))
            .map(|_| "success".to_owned())
    };
    outcome.map_err(|error| callbacks::refusal_answer(&error))
}

/// What a request body that could not be read means for a callback: refused, nothing applied.
fn into_callback(error: BodyError) -> CallbackError {
    match error {
        BodyError::TooLarge => Rejection::TooLarge.into(),
        BodyError::Unreadable(m) => Rejection::Malformed(m).into(),
    }
}
