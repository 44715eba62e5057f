//! The sandbox phone: `GET /sandbox/phone`, each simulated user's WeChat as they would see it
//! — the official account's template messages and the 服务通知 subscribe messages as cards,
//! truncated as the platform shows them — with buttons for what a user does (follow or
//! unfollow the OA, answer a subscribe popup, log in). The buttons call the admin API, so each
//! action goes through the sandbox's state and, where WeChat would push an event, pushes it
//! to the developer's callback URL ([`crate::pushes`]).
//!
//! Like the console of `wxnotify serve`, the page is plain HTML, CSS and JavaScript embedded
//! in the binary, with no framework and nothing loaded from elsewhere: it only reads one JSON
//! view and posts to the admin API.

use std::collections::{BTreeMap, HashMap};

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use crate::config::Account;
use crate::pushes::PushRecord;
use crate::record::{DeliveredSubscribeMessage, DeliveredTemplateMessage};
use crate::state::SandboxState;
use crate::users::SeededUser;

const PAGE: &str = include_str!("phone/index.html");
const SCRIPT: &str = include_str!("phone/phone.js");
const STYLE: &str = include_str!("phone/phone.css");

/// Most messages of each kind shown per user, and pushes shown: the newest.
const MESSAGES_SHOWN: usize = 50;
/// Most users shown: the latest added (a sandbox may hold a million followers).
const USERS_SHOWN: usize = 100;

/// The phone's routes (under `/sandbox`, so the WeChat API's request log does not record them).
pub(crate) fn routes() -> Router<SandboxState> {
    Router::new()
        .route("/sandbox/phone", get(page))
        .route("/sandbox/phone/phone.js", get(script))
        .route("/sandbox/phone/phone.css", get(style))
        .route("/sandbox/phone/state", get(view))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; frame-ancestors 'none'",
            ),
        ],
        body,
    )
        .into_response()
}

async fn page() -> Response {
    asset("text/html; charset=utf-8", PAGE)
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

/// Everything the phone shows.
#[derive(Debug, Serialize)]
pub(crate) struct PhoneView {
    /// The mini-program's subscribe templates: id → keys in display order.
    mini_templates: BTreeMap<String, Vec<String>>,
    /// The official account's templates.
    oa_templates: BTreeMap<String, Vec<String>>,
    /// Where pushes go, per account.
    callbacks: BTreeMap<Account, Option<String>>,
    /// The users, in the order they were added.
    users: Vec<PhoneUser>,
    /// The latest pushes, newest first.
    pushes: Vec<PushRecord>,
}

/// One simulated user's phone.
#[derive(Debug, Serialize)]
struct PhoneUser {
    #[serde(flatten)]
    ids: SeededUser,
    following: bool,
    /// One-time subscriptions left, per mini-program template.
    subscriptions: BTreeMap<String, u32>,
    /// Template messages from the OA, newest first.
    template_messages: Vec<DeliveredTemplateMessage>,
    /// 服务通知: subscribe messages, newest first.
    subscribe_messages: Vec<DeliveredSubscribeMessage>,
}

async fn view(State(state): State<SandboxState>) -> Json<PhoneView> {
    Json(phone_view(&state))
}

fn phone_view(state: &SandboxState) -> PhoneView {
    let mini_templates = state.templates(Account::MiniProgram);
    // Newest first, at most MESSAGES_SHOWN per recipient.
    fn take<M>(grouped: &mut HashMap<String, Vec<M>>, id: Option<&String>) -> Vec<M> {
        id.and_then(|id| grouped.remove(id)).unwrap_or_default()
    }
    fn by_recipient<M>(messages: Vec<M>, to: impl Fn(&M) -> &str) -> HashMap<String, Vec<M>> {
        let mut grouped: HashMap<String, Vec<M>> = HashMap::new();
        for message in messages.into_iter().rev() {
            let list = grouped.entry(to(&message).to_owned()).or_default();
            if list.len() < MESSAGES_SHOWN {
                list.push(message);
            }
        }
        grouped
    }
    let mut template_messages =
        by_recipient(state.delivered_template_messages(), |m| m.touser.as_str());
    let mut subscribe_messages =
        by_recipient(state.delivered_subscribe_messages(), |m| m.touser.as_str());
    let users = state
        .latest_users(USERS_SHOWN)
        .into_iter()
        .map(|(ids, following)| {
            let subscriptions = ids
                .mini_openid
                .as_deref()
                .map_or_else(BTreeMap::new, |openid| {
                    mini_templates
                        .keys()
                        .map(|template| {
                            (template.clone(), state.subscriptions_left(openid, template))
                        })
                        .collect()
                });
            PhoneUser {
                template_messages: take(&mut template_messages, ids.oa_openid.as_ref()),
                subscribe_messages: take(&mut subscribe_messages, ids.mini_openid.as_ref()),
                ids,
                following,
                subscriptions,
            }
        })
        .collect();
    let mut pushes = state.pushes();
    pushes.reverse();
    pushes.truncate(MESSAGES_SHOWN);
    PhoneView {
        mini_templates,
        oa_templates: state.templates(Account::OfficialAccount),
        callbacks: Account::ALL
            .into_iter()
            .map(|account| (account, state.callback_url(account)))
            .collect(),
        users,
        pushes,
    }
}
