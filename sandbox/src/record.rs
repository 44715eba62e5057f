//! What the sandbox observed: requests, delivered messages and counters.

use std::collections::{BTreeMap, VecDeque};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Serialize, Serializer};

use crate::faults::FaultAction;

/// One call to a WeChat endpoint (admin calls under `/sandbox` are not recorded).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordedRequest {
    /// HTTP method, e.g. `GET`.
    pub method: String,
    /// Path without the query, e.g. `/cgi-bin/token`.
    pub path: String,
    /// Decoded query parameters (secrets and tokens included: this is a test double), except
    /// a WeCom robot's webhook `key`, recorded as `***`.
    pub query: BTreeMap<String, String>,
    /// The body: parsed JSON, or the raw text as a JSON string when it is not JSON; `None` when
    /// empty.
    pub body: Option<serde_json::Value>,
    /// How the request delimited its body on the wire.
    pub framing: Framing,
    /// `errcode` of the answer; 0 when the answer has none (success without errcode, a plain 404,
    /// or a dropped connection — see `status`).
    pub errcode: i64,
    /// HTTP status of the answer; `None` when the connection was dropped by a fault.
    pub status: Option<u16>,
    /// Faults that hit this call, in order.
    pub faults: Vec<FaultAction>,
    /// When the call arrived, on the sandbox clock (serialised as Unix milliseconds).
    #[serde(serialize_with = "unix_millis")]
    pub at: SystemTime,
}

/// How a request delimited its body: the headers it came with.
///
/// Every peer SDK sends a known body with `Content-Length`; a front end that reads bodies by
/// `Content-Length` alone sees a chunked one as empty (and WeChat answers `47001`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Framing {
    /// `Content-Length: N`.
    ContentLength(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Neither header: no body (a GET).
    None,
}

impl Framing {
    /// The framing declared by `headers`. `Transfer-Encoding` wins, as in HTTP/1.1 (RFC 9112 §6.3).
    pub fn of(headers: &http::HeaderMap) -> Framing {
        let chunked = headers
            .get_all(http::header::TRANSFER_ENCODING)
            .iter()
            .any(|value| {
                value
                    .to_str()
                    .is_ok_and(|v| v.to_ascii_lowercase().contains("chunked"))
            });
        if chunked {
            return Framing::Chunked;
        }
        headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok()?.trim().parse().ok())
            .map_or(Framing::None, Framing::ContentLength)
    }
}

impl RecordedRequest {
    /// Whether the request was framed the way every peer SDK frames it: a body with
    /// `Content-Length` (the server checks that the length is exact), never chunked.
    pub fn framed_like_peers(&self) -> bool {
        match self.framing {
            Framing::ContentLength(_) => true,
            Framing::Chunked => false,
            Framing::None => self.body.is_none(),
        }
    }
}

/// A value as the recipient sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DisplayedValue {
    /// The data key, e.g. `thing1`.
    pub key: String,
    /// The text shown.
    pub text: String,
    /// Whether the platform cut the value (template messages show at most 20 characters).
    pub truncated: bool,
}

/// An official-account template message the sandbox accepted.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeliveredTemplateMessage {
    /// The OA openid it went to.
    pub touser: String,
    /// The template.
    pub template_id: String,
    /// `data` exactly as sent.
    pub data: serde_json::Value,
    /// What the user sees, one entry per template key in template order (a key missing from
    /// `data` shows as empty; keys outside the template are not shown).
    pub displayed: Vec<DisplayedValue>,
    /// The jump URL, if any.
    pub url: Option<String>,
    /// The mini-program jump (`{"appid","pagepath"}`) as sent, if any.
    pub miniprogram: Option<serde_json::Value>,
    /// The msgid returned.
    pub msgid: i64,
    /// The de-duplication key, if any.
    pub client_msg_id: Option<String>,
    /// When it was accepted, on the sandbox clock (serialised as Unix milliseconds).
    #[serde(serialize_with = "unix_millis")]
    pub at: SystemTime,
}

/// A mini-program subscribe message the sandbox accepted.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeliveredSubscribeMessage {
    /// The mini-program openid it went to.
    pub touser: String,
    /// The template.
    pub template_id: String,
    /// `data` exactly as sent.
    pub data: serde_json::Value,
    /// What the user sees, one entry per template key in template order.
    pub displayed: Vec<DisplayedValue>,
    /// The page opened on tap (with its query), if any.
    pub page: Option<String>,
    /// `miniprogram_state` in effect (`formal` when omitted).
    pub miniprogram_state: String,
    /// `lang` in effect (`zh_CN` when omitted).
    pub lang: String,
    /// When it was accepted, on the sandbox clock (serialised as Unix milliseconds).
    #[serde(serialize_with = "unix_millis")]
    pub at: SystemTime,
}

/// A message a WeCom group robot accepted (the robot is the webhook key it was read back by).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RobotMessage {
    /// `text` or `markdown`.
    pub msgtype: String,
    /// The content as posted.
    pub content: String,
    /// Userids to @-mention (`text` only).
    pub mentioned_list: Vec<String>,
    /// Mobile numbers to @-mention (`text` only).
    pub mentioned_mobile_list: Vec<String>,
    /// When it was accepted, on the sandbox clock (serialised as Unix milliseconds).
    #[serde(serialize_with = "unix_millis")]
    pub at: SystemTime,
}

/// Token fetches of one appid, successful or not.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TokenFetches {
    /// Calls to `/cgi-bin/token`.
    pub classic: u32,
    /// Calls to `/cgi-bin/stable_token`.
    pub stable: u32,
}

impl TokenFetches {
    /// Both kinds together.
    pub fn total(&self) -> u32 {
        self.classic + self.stable
    }
}

/// Counters since the sandbox started (never trimmed, unlike the recorded lists).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Token fetches per appid (including unknown appids).
    pub token_fetches: BTreeMap<String, TokenFetches>,
    /// WeChat API calls received.
    pub requests: u64,
    /// Calls whose body was not framed the way every peer SDK frames it
    /// ([`RecordedRequest::framed_like_peers`]).
    pub unframed_requests: u64,
    /// Template messages delivered (de-duplicated retries not counted).
    pub template_messages: u64,
    /// Subscribe messages delivered.
    pub subscribe_messages: u64,
}

/// A list that keeps only the newest `limit` entries.
#[derive(Debug)]
pub(crate) struct Bounded<T> {
    items: VecDeque<T>,
    limit: usize,
}

impl<T: Clone> Bounded<T> {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            items: VecDeque::new(),
            limit,
        }
    }

    pub(crate) fn push(&mut self, item: T) {
        if self.limit == 0 {
            return;
        }
        if self.items.len() == self.limit {
            self.items.pop_front();
        }
        self.items.push_back(item);
    }

    pub(crate) fn to_vec(&self) -> Vec<T> {
        self.items.iter().cloned().collect()
    }

    pub(crate) fn clear(&mut self) {
        self.items.clear();
    }
}

pub(crate) fn unix_secs(at: SystemTime) -> i64 {
    match at.duration_since(UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// Unix milliseconds of `at` (0 before 1970).
pub(crate) fn unix_millis_of(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |since| {
        u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
    })
}

fn unix_millis<S: Serializer>(at: &SystemTime, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_u64(unix_millis_of(*at))
}
