//! WeChat server push ("消息推送", §5 of `docs/wechat-api.md`): checking and reading what
//! WeChat sends to a callback URL. Pure: [`crate::callbacks`] supplies the configuration, the
//! clock and the body, and applies the [`Push`] through `Env`.
//!
//! A push is checked in this order; the first failure decides the answer, and nothing is
//! applied before the last step:
//!
//! 1. the query ([`admit`]): `timestamp` and `nonce`; in plain mode `signature`, so a forged
//!    request is refused before its body is read;
//! 2. `timestamp` within `callback_max_age_secs` of now, either way, which bounds replays;
//! 3. the body ([`Admitted::open`]): at most [`MAX_BODY_BYTES`], XML, or JSON for mini programs;
//! 4. in safe mode, `msg_signature` over `Encrypt` **before** decrypting (CBC has no integrity
//!    of its own), then the receiver appid inside the plaintext;
//! 5. the fields the push's event needs, and ids that will become parts of keys.
//!
//! In plain mode `signature` covers only token, timestamp and nonce, not the body: whoever sees
//! one signed URL can post any body with it until the timestamp goes stale. Safe mode (an
//! `EncodingAESKey`) signs and encrypts the body and should be preferred.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};

use super::config::AccountKind;
use super::crypto::{self, CryptoError, MessageCrypt};
use super::error::{Error, Result};
use super::users;

/// Largest push body read. WeChat's pushes are a few KiB at most; anything larger is refused
/// before it is read in full.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// How far `timestamp` may be from now by default: WeChat retries within seconds, so a push
/// five minutes off is a replay or a badly wrong clock.
pub const DEFAULT_MAX_AGE_SECS: u64 = 300;

/// Config key of the freshness window, in seconds; `0` turns the check off (for replaying
/// recorded pushes, such as the official test vectors).
pub const MAX_AGE_KEY: &str = "callback_max_age_secs";

/// How one account's pushes are verified, from `wasi:config`:
///
/// | key | meaning | default |
/// |---|---|---|
/// | `{oa,mini}_callback_token` | the Token set in the WeChat console | required |
/// | `{oa,mini}_encoding_aes_key` | the EncodingAESKey, for safe mode | plain mode only |
/// | `{oa,mini}_appid` | the receiver id a safe-mode push must carry | required with the key |
/// | `callback_max_age_secs` | how far `timestamp` may be from now | 300; 0: unchecked |
pub struct CallbackConfig {
    kind: AccountKind,
    token: String,
    /// Built when the configuration is read, so a bad key fails URL verification already, when
    /// the operator is looking, not the first encrypted push.
    crypt: Option<MessageCrypt>,
    max_age_secs: u64,
}

// The token lets anyone sign pushes: Debug leaves it out (MessageCrypt's own hides the key).
impl fmt::Debug for CallbackConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallbackConfig")
            .field("kind", &self.kind)
            .field("crypt", &self.crypt)
            .field("max_age_secs", &self.max_age_secs)
            .finish_non_exhaustive()
    }
}

impl CallbackConfig {
    /// Reads the settings of `kind`'s callbacks through `get` (`wasi:config/store.get`).
    ///
    /// # Errors
    ///
    /// A `config` error naming the key: no token, an EncodingAESKey without an appid or not
    /// 43 base64 characters, a max age that is not a number.
    pub fn load(
        kind: AccountKind,
        mut get: impl FnMut(&str) -> Result<Option<String>>,
    ) -> Result<CallbackConfig> {
        let mut non_empty = |key: &str| -> Result<Option<String>> {
            Ok(get(key)?
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty()))
        };
        let prefix = kind.config_prefix();
        let token_key = format!("{prefix}_callback_token");
        let token = non_empty(&token_key)?.ok_or_else(|| {
            Error::Config(format!(
                "config key `{token_key}` is missing: callbacks of the {} are not configured",
                kind.describe()
            ))
        })?;
        let aes_key_key = format!("{prefix}_encoding_aes_key");
        let crypt = match non_empty(&aes_key_key)? {
            None => None,
            Some(aes_key) => {
                let appid_key = format!("{prefix}_appid");
                let appid = non_empty(&appid_key)?.ok_or_else(|| {
                    Error::Config(format!(
                        "config key `{appid_key}` is missing: safe-mode pushes must be checked \
                         against it (`{aes_key_key}` is set)"
                    ))
                })?;
                let crypt = MessageCrypt::new(&aes_key, &appid)
                    .map_err(|e| Error::Config(format!("config key `{aes_key_key}`: {e}")))?;
                Some(crypt)
            }
        };
        let max_age_secs = match non_empty(MAX_AGE_KEY)? {
            None => DEFAULT_MAX_AGE_SECS,
            Some(value) => value.parse().map_err(|_| {
                Error::Config(format!(
                    "config key `{MAX_AGE_KEY}` must be a whole number of seconds (0: \
                     unchecked), got `{value}`"
                ))
            })?,
        };
        Ok(CallbackConfig {
            kind,
            token,
            crypt,
            max_age_secs,
        })
    }

    fn aes_key_missing(&self) -> Error {
        let prefix = self.kind.config_prefix();
        Error::Config(format!(
            "config key `{prefix}_encoding_aes_key` is missing: WeChat sends encrypted pushes \
             (safe mode) to the {}",
            self.kind.describe()
        ))
    }
}

/// The query parameters WeChat puts on a callback URL. The first of a repeated parameter counts.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Query {
    pub signature: Option<String>,
    pub timestamp: Option<String>,
    pub nonce: Option<String>,
    /// URL verification only: what to echo.
    pub echostr: Option<String>,
    /// `aes` in safe (and compatible) mode; absent or `raw` in plain mode.
    pub encrypt_type: Option<String>,
    /// Safe mode: the signature over token, timestamp, nonce and `Encrypt`.
    pub msg_signature: Option<String>,
}

impl Query {
    /// Parses a raw query string (without the `?`), percent-decoding the values.
    pub fn parse(raw: &str) -> Query {
        let mut query = Query::default();
        for (name, value) in form_urlencoded::parse(raw.as_bytes()) {
            let slot = match &*name {
                "signature" => &mut query.signature,
                "timestamp" => &mut query.timestamp,
                "nonce" => &mut query.nonce,
                "echostr" => &mut query.echostr,
                "encrypt_type" => &mut query.encrypt_type,
                "msg_signature" => &mut query.msg_signature,
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(value.into_owned());
            }
        }
        query
    }
}

/// Why a push or a URL verification was refused: the request is at fault, never our state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// A query parameter WeChat always sends is missing or empty.
    MissingParameter(&'static str),
    /// `signature` or `msg_signature` (named) does not match: not WeChat, or another token.
    BadSignature(&'static str),
    /// `timestamp` is not a number of seconds.
    BadTimestamp(String),
    /// `timestamp` is further from now than the configured window.
    Stale {
        timestamp: u64,
        now: u64,
        max_age_secs: u64,
    },
    /// `encrypt_type` is neither `aes` nor `raw`.
    UnsupportedEncryption(String),
    /// The body exceeds [`MAX_BODY_BYTES`].
    TooLarge,
    /// The body is not a push: not XML/JSON, or a field the push needs is missing or invalid.
    Malformed(String),
    /// The signed ciphertext does not decrypt (wrong `EncodingAESKey`, or damaged).
    Undecryptable(CryptoError),
    /// The decrypted push is addressed to another app.
    WrongReceiver { expected: String, found: String },
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::MissingParameter(name) => {
                write!(f, "query parameter `{name}` is missing")
            }
            Rejection::BadSignature(name) => write!(
                f,
                "`{name}` does not match: the request is not from WeChat, or the callback token \
                 differs from the one set in the WeChat console"
            ),
            Rejection::BadTimestamp(value) => {
                write!(f, "`timestamp` is not a number of seconds: `{value}`")
            }
            Rejection::Stale {
                timestamp,
                now,
                max_age_secs,
            } => write!(
                f,
                "`timestamp` {timestamp} is {} s from now ({now}): pushes more than \
                 {max_age_secs} s away are refused as replays (config `{MAX_AGE_KEY}`)",
                timestamp.abs_diff(*now)
            ),
            Rejection::UnsupportedEncryption(value) => {
                write!(f, "`encrypt_type` must be `aes` or absent, got `{value}`")
            }
            Rejection::TooLarge => write!(f, "push body larger than {MAX_BODY_BYTES} bytes"),
            Rejection::Malformed(what) => f.write_str(what),
            Rejection::Undecryptable(e) => write!(f, "`Encrypt`: {e}"),
            Rejection::WrongReceiver { expected, found } => write!(
                f,
                "the push is addressed to {found:?}, not to this app ({expected:?})"
            ),
        }
    }
}

/// Why a callback request did not succeed; mapped to an HTTP answer once, by the handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallbackError {
    /// Refused: the request is wrong, and nothing was applied.
    Rejected(Rejection),
    /// A configuration problem, or a valid push that could not be applied (storage, WeChat).
    Failed(Error),
}

impl From<Rejection> for CallbackError {
    fn from(rejection: Rejection) -> Self {
        CallbackError::Rejected(rejection)
    }
}

impl From<Error> for CallbackError {
    fn from(error: Error) -> Self {
        CallbackError::Failed(error)
    }
}

impl fmt::Display for CallbackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallbackError::Rejected(rejection) => rejection.fmt(f),
            CallbackError::Failed(error) => error.fmt(f),
        }
    }
}

impl std::error::Error for CallbackError {}

fn required<'q>(value: &'q Option<String>, name: &'static str) -> Result<&'q str, Rejection> {
    value
        .as_deref()
        .filter(|v| !v.is_empty())
        .ok_or(Rejection::MissingParameter(name))
}

/// URL verification (GET): the `echostr` to answer with, verbatim, if `signature` matches.
///
/// The timestamp is not checked for freshness here: echoing a value WeChat chose reveals and
/// changes nothing, and a console check must not fail over a skewed clock.
pub fn verify_url(config: &CallbackConfig, query: &Query) -> Result<String, Rejection> {
    let signature = required(&query.signature, "signature")?;
    let timestamp = required(&query.timestamp, "timestamp")?;
    let nonce = required(&query.nonce, "nonce")?;
    let echostr = required(&query.echostr, "echostr")?;
    let expected = crypto::url_signature(&config.token, timestamp, nonce);
    if !crypto::signature_matches(&expected, signature) {
        return Err(Rejection::BadSignature("signature"));
    }
    Ok(echostr.to_owned())
}

/// A push whose query passed [`admit`]; [`open`](Admitted::open) checks and reads its body.
#[derive(Debug)]
pub struct Admitted<'a> {
    config: &'a CallbackConfig,
    timestamp: &'a str,
    nonce: &'a str,
    /// Safe mode: the key and the `msg_signature` the body's `Encrypt` must match.
    safe: Option<(&'a MessageCrypt, &'a str)>,
}

/// Checks a push's query: everything that can be checked before reading the body.
///
/// # Errors
///
/// A [`Rejection`], or a `config` failure when the push is encrypted and no EncodingAESKey is
/// configured.
pub fn admit<'a>(
    config: &'a CallbackConfig,
    query: &'a Query,
    now_secs: u64,
) -> Result<Admitted<'a>, CallbackError> {
    let timestamp = required(&query.timestamp, "timestamp")?;
    let nonce = required(&query.nonce, "nonce")?;
    let safe = match query.encrypt_type.as_deref() {
        None | Some("" | "raw") => None,
        Some("aes") => {
            let msg_signature = required(&query.msg_signature, "msg_signature")?;
            let crypt = config
                .crypt
                .as_ref()
                .ok_or_else(|| config.aes_key_missing())?;
            Some((crypt, msg_signature))
        }
        Some(other) => {
            return Err(Rejection::UnsupportedEncryption(other.chars().take(32).collect()).into());
        }
    };
    // Safe mode is verified by msg_signature, which covers the body: WeChat's own samples
    // check only that one, so `signature` is not required there.
    if safe.is_none() {
        let signature = required(&query.signature, "signature")?;
        let expected = crypto::url_signature(&config.token, timestamp, nonce);
        if !crypto::signature_matches(&expected, signature) {
            return Err(Rejection::BadSignature("signature").into());
        }
    }
    check_fresh(timestamp, now_secs, config.max_age_secs)?;
    Ok(Admitted {
        config,
        timestamp,
        nonce,
        safe,
    })
}

fn check_fresh(timestamp: &str, now: u64, max_age_secs: u64) -> Result<(), Rejection> {
    let parsed: u64 = timestamp
        .parse()
        .map_err(|_| Rejection::BadTimestamp(timestamp.chars().take(32).collect()))?;
    if max_age_secs != 0 && parsed.abs_diff(now) > max_age_secs {
        return Err(Rejection::Stale {
            timestamp: parsed,
            now,
            max_age_secs,
        });
    }
    Ok(())
}

impl Admitted<'_> {
    /// Checks and reads the body: in safe mode its `Encrypt` must match `msg_signature` before
    /// it is decrypted, and the plaintext must be addressed to our appid.
    pub fn open(&self, body: &[u8]) -> Result<Push, Rejection> {
        if body.len() > MAX_BODY_BYTES {
            return Err(Rejection::TooLarge);
        }
        let text = std::str::from_utf8(body)
            .map_err(|_| Rejection::Malformed("push body is not UTF-8".into()))?;
        let raw = parse_raw(text, self.config.kind)?;
        let raw = match self.safe {
            None => raw,
            Some((crypt, msg_signature)) => {
                let encrypt = raw
                    .encrypt
                    .filter(|e| !e.trim().is_empty())
                    .ok_or_else(|| {
                        Rejection::Malformed("safe-mode push has no `Encrypt`".into())
                    })?;
                let expected =
                    crypto::msg_signature(&self.config.token, self.timestamp, self.nonce, &encrypt);
                if !crypto::signature_matches(&expected, msg_signature) {
                    return Err(Rejection::BadSignature("msg_signature"));
                }
                let plaintext = crypt.decrypt(&encrypt).map_err(|e| match e {
                    CryptoError::AppidMismatch { expected, found } => {
                        Rejection::WrongReceiver { expected, found }
                    }
                    other => Rejection::Undecryptable(other),
                })?;
                parse_raw(&plaintext, self.config.kind)?
            }
        };
        Push::from_raw(raw, self.config.kind)
    }
}

/// Every field of a push (or of a safe-mode envelope) that wxnotify reads, XML and JSON alike;
/// the rest is ignored. Values are strings as in XML: [`normalise_json`] makes JSON match.
#[derive(Debug, Default, Deserialize)]
struct RawPush {
    #[serde(rename = "FromUserName")]
    from_user_name: Option<String>,
    #[serde(rename = "CreateTime")]
    create_time: Option<String>,
    #[serde(rename = "MsgType")]
    msg_type: Option<String>,
    #[serde(rename = "Event")]
    event: Option<String>,
    /// `TEMPLATESENDJOBFINISH`: the msgid `template/send` returned. (Ordinary messages spell
    /// theirs `MsgId` and are not read.)
    #[serde(rename = "MsgID")]
    msg_id: Option<String>,
    /// `TEMPLATESENDJOBFINISH`: `success`, `failed:user block`, `failed: system failed`.
    #[serde(rename = "Status")]
    status: Option<String>,
    /// Safe mode: the encrypted push.
    #[serde(rename = "Encrypt")]
    encrypt: Option<String>,
    /// JSON subscribe-message events put their items here.
    #[serde(rename = "List")]
    list: Option<Vec<RawItem>>,
    /// XML subscribe-message events wrap their `List` elements in one of these.
    #[serde(rename = "SubscribeMsgPopupEvent")]
    popup: Option<RawContainer>,
    #[serde(rename = "SubscribeMsgChangeEvent")]
    change: Option<RawContainer>,
    #[serde(rename = "SubscribeMsgSentEvent")]
    sent: Option<RawContainer>,
}

#[derive(Debug, Default, Deserialize)]
struct RawContainer {
    #[serde(rename = "List")]
    list: Option<Vec<RawItem>>,
}

#[derive(Debug, Default, Deserialize)]
struct RawItem {
    #[serde(rename = "TemplateId")]
    template_id: Option<String>,
    #[serde(rename = "SubscribeStatusString")]
    status: Option<String>,
    #[serde(rename = "MsgID")]
    msg_id: Option<String>,
    #[serde(rename = "ErrorCode")]
    error_code: Option<String>,
    #[serde(rename = "ErrorStatus")]
    error_status: Option<String>,
}

/// Parses a push or an envelope. Official accounts send XML only; mini programs XML or JSON,
/// as chosen in their console.
fn parse_raw(text: &str, kind: AccountKind) -> Result<RawPush, Rejection> {
    match text.trim_start().as_bytes().first() {
        // quick-xml expands no DTD entities, so entity bombs and external entities are errors.
        Some(b'<') => quick_xml::de::from_str(text)
            .map_err(|e| Rejection::Malformed(format!("push body is not valid push XML: {e}"))),
        Some(b'{') if kind == AccountKind::MiniProgram => {
            let mut value: serde_json::Value = serde_json::from_str(text)
                .map_err(|e| Rejection::Malformed(format!("push body is not valid JSON: {e}")))?;
            normalise_json(&mut value);
            RawPush::deserialize(value)
                .map_err(|e| Rejection::Malformed(format!("push JSON has an invalid field: {e}")))
        }
        Some(b'{') => Err(Rejection::Malformed(
            "official-account pushes are XML, got JSON".into(),
        )),
        _ => Err(Rejection::Malformed(
            "push body is neither XML nor JSON".into(),
        )),
    }
}

/// Gives a JSON push the shape of its XML twin (§5.4): numbers become strings (`CreateTime`,
/// `ErrorCode`, … come as either), and a `List` holding one item as an object becomes an array.
/// Recursion is bounded by serde_json's nesting limit (128).
fn normalise_json(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Number(n) => *value = Value::String(n.to_string()),
        Value::Array(items) => items.iter_mut().for_each(normalise_json),
        Value::Object(fields) => {
            for (name, field) in fields.iter_mut() {
                if name == "List" && field.is_object() {
                    *field = Value::Array(vec![field.take()]);
                }
                normalise_json(field);
            }
        }
        Value::Null | Value::Bool(_) | Value::String(_) => {}
    }
}

/// A verified push, reduced to what wxnotify records. Its JSON (serde) is what a gateway
/// forwards to a backend in place of WeChat's signed and encrypted body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Push {
    /// `FromUserName`: the user's openid for the account the push came to.
    pub openid: String,
    /// `CreateTime`, Unix seconds on WeChat's clock; orders a user's pushes.
    pub create_time: i64,
    #[serde(flatten)]
    pub kind: PushKind,
}

/// What a push says, as far as wxnotify cares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PushKind {
    /// OA `subscribe` (a plain follow or a follow through a QR code).
    Follow,
    /// OA `unsubscribe`.
    Unfollow,
    /// OA `TEMPLATESENDJOBFINISH`: the final status of a template message.
    TemplateFinished { msgid: i64, status: String },
    /// `subscribe_msg_{popup,change,sent}_event`, mini program or OA: one item per template.
    Subscriptions {
        event: SubscriptionEvent,
        items: Vec<SubscriptionItem>,
    },
    /// Messages and every other event (`SCAN`, menu clicks, …): acknowledged, nothing recorded.
    Ignored {
        msg_type: String,
        event: Option<String>,
    },
}

/// Which subscribe-message event an item comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionEvent {
    /// The user answered the subscription popup.
    Popup,
    /// The user changed the subscription in their settings.
    Change,
    /// WeChat reports the result of a subscribe-message send.
    Sent,
}

impl SubscriptionEvent {
    /// The event's name as WeChat sends it.
    pub fn wechat_name(self) -> &'static str {
        match self {
            SubscriptionEvent::Popup => "subscribe_msg_popup_event",
            SubscriptionEvent::Change => "subscribe_msg_change_event",
            SubscriptionEvent::Sent => "subscribe_msg_sent_event",
        }
    }

    /// Short name, as stored in records.
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriptionEvent::Popup => "popup",
            SubscriptionEvent::Change => "change",
            SubscriptionEvent::Sent => "sent",
        }
    }
}

/// One template of a subscribe-message event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubscriptionItem {
    pub template_id: String,
    pub update: SubscriptionUpdate,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionUpdate {
    /// Popup or change: the user's decision, `accept` or `reject`.
    Status(String),
    /// Sent: `ErrorCode` 0 and `ErrorStatus` `success` when delivered.
    Sent {
        msgid: Option<String>,
        error_code: i64,
        error_status: String,
    },
}

fn malformed(what: impl Into<String>) -> Rejection {
    Rejection::Malformed(what.into())
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

/// A short free-text value WeChat sends (a status): stored, so bounded.
fn short_text(value: Option<String>, what: &str) -> Result<String, Rejection> {
    let value = non_empty(value).ok_or_else(|| malformed(format!("push has no `{what}`")))?;
    if value.len() > 64 {
        return Err(malformed(format!("`{what}` is longer than 64 bytes")));
    }
    Ok(value)
}

/// An id that will be part of a key: the rules of [`users::check_id`].
fn key_part(value: Option<String>, what: &str) -> Result<String, Rejection> {
    let value = non_empty(value).ok_or_else(|| malformed(format!("push has no `{what}`")))?;
    users::check_id(what, &value).map_err(Rejection::Malformed)?;
    Ok(value)
}

fn number(value: Option<String>, what: &str) -> Result<i64, Rejection> {
    let value = non_empty(value).ok_or_else(|| malformed(format!("push has no `{what}`")))?;
    value
        .parse()
        .map_err(|_| malformed(format!("`{what}` is not a number: `{}`", truncated(&value))))
}

fn truncated(value: &str) -> String {
    value.chars().take(32).collect()
}

impl Push {
    fn from_raw(raw: RawPush, kind: AccountKind) -> Result<Push, Rejection> {
        let openid =
            non_empty(raw.from_user_name).ok_or_else(|| malformed("push has no `FromUserName`"))?;
        let create_time = number(raw.create_time, "CreateTime")?;
        let msg_type = non_empty(raw.msg_type).ok_or_else(|| malformed("push has no `MsgType`"))?;
        let event = non_empty(raw.event);
        if msg_type != "event" {
            return Ok(Push {
                openid,
                create_time,
                kind: PushKind::Ignored { msg_type, event },
            });
        }
        let Some(name) = event else {
            return Err(malformed("event push has no `Event`"));
        };
        // WeChat spells events in either case (`subscribe`, `SCAN`); SDKs compare them folded.
        let folded = name.to_ascii_lowercase();
        let is_oa = kind == AccountKind::OfficialAccount;
        let (event, container) = match folded.as_str() {
            "subscribe" if is_oa => return Push::checked(openid, create_time, PushKind::Follow),
            "unsubscribe" if is_oa => {
                return Push::checked(openid, create_time, PushKind::Unfollow);
            }
            "templatesendjobfinish" if is_oa => {
                let msgid = number(raw.msg_id, "MsgID")?;
                let status = short_text(raw.status, "Status")?;
                let kind = PushKind::TemplateFinished { msgid, status };
                return Push::checked(openid, create_time, kind);
            }
            "subscribe_msg_popup_event" => (SubscriptionEvent::Popup, raw.popup),
            "subscribe_msg_change_event" => (SubscriptionEvent::Change, raw.change),
            "subscribe_msg_sent_event" => (SubscriptionEvent::Sent, raw.sent),
            _ => {
                return Ok(Push {
                    openid,
                    create_time,
                    kind: PushKind::Ignored {
                        msg_type,
                        event: Some(name),
                    },
                });
            }
        };
        // JSON puts the items at the top level, XML in the event's container.
        let items = raw
            .list
            .or(container.and_then(|c| c.list))
            .unwrap_or_default()
            .into_iter()
            .map(|item| SubscriptionItem::from_raw(item, event))
            .collect::<Result<Vec<_>, _>>()?;
        if items.is_empty() {
            return Err(malformed(format!(
                "`{}` has no `List` item",
                event.wechat_name()
            )));
        }
        Push::checked(
            openid,
            create_time,
            PushKind::Subscriptions { event, items },
        )
    }

    /// A push that changes state: its openid becomes part of keys, so it is checked.
    fn checked(openid: String, create_time: i64, kind: PushKind) -> Result<Push, Rejection> {
        users::check_id("FromUserName", &openid).map_err(Rejection::Malformed)?;
        Ok(Push {
            openid,
            create_time,
            kind,
        })
    }

    /// The `callbacks` key that marks this push as applied (see [`marker_key`]), `None` for a
    /// push that changes nothing: a repeat of it is harmless, and a marker per chat message
    /// would only grow the store.
    ///
    /// A repeat is recognised as WeChat documents (§5.2): same account, `FromUserName`,
    /// `CreateTime` and `Event`. The msgids an event carries are part of it too, because one
    /// user can get two template or subscribe messages finished in the same second.
    pub fn marker(&self, kind: AccountKind) -> Option<String> {
        let (event, ids): (&str, Vec<String>) = match &self.kind {
            PushKind::Follow => ("subscribe", Vec::new()),
            PushKind::Unfollow => ("unsubscribe", Vec::new()),
            PushKind::TemplateFinished { msgid, .. } => {
                ("TEMPLATESENDJOBFINISH", vec![msgid.to_string()])
            }
            PushKind::Subscriptions { event, items } => (
                event.wechat_name(),
                items
                    .iter()
                    .filter_map(|item| match &item.update {
                        SubscriptionUpdate::Sent { msgid, .. } => msgid.clone(),
                        SubscriptionUpdate::Status(_) => None,
                    })
                    .collect(),
            ),
            PushKind::Ignored { .. } => return None,
        };
        // Hashed: the key stays short and holds only hex whatever the ids look like.
        let mut sha = Sha1::new();
        for part in [
            kind.config_prefix(),
            &self.openid,
            &self.create_time.to_string(),
            event,
            &ids.join(","),
        ] {
            sha.update(part);
            sha.update(b"\n");
        }
        Some(marker_key(&crypto::hex(&sha.finalize())))
    }
}

/// The marker of a push whose identity hashes to `digest` (lowercase hex).
pub fn marker_key(digest: &str) -> String {
    format!("{MARKER_PREFIX}{digest}")
}

/// What every [`marker_key`] starts with.
pub const MARKER_PREFIX: &str = "seen/";

impl SubscriptionItem {
    fn from_raw(item: RawItem, event: SubscriptionEvent) -> Result<SubscriptionItem, Rejection> {
        let template_id = key_part(item.template_id, "TemplateId")?;
        let update = match event {
            SubscriptionEvent::Popup | SubscriptionEvent::Change => {
                SubscriptionUpdate::Status(short_text(item.status, "SubscribeStatusString")?)
            }
            SubscriptionEvent::Sent => SubscriptionUpdate::Sent {
                msgid: non_empty(item.msg_id).map(|m| truncated(&m)),
                error_code: number(item.error_code, "ErrorCode")?,
                error_status: non_empty(item.error_status)
                    .map(|s| truncated(&s))
                    .unwrap_or_default(),
            },
        };
        Ok(SubscriptionItem {
            template_id,
            update,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    // §5.1: URL verification and plain-mode push vectors (token AAAAA).
    const TOKEN: &str = "AAAAA";
    const VERIFY_QUERY: &str = "signature=f464b24fc39322e44b38aa78f5edd27bd1441696&echostr=4375120948345356249&timestamp=1714036504&nonce=1514711492";
    const PLAIN_QUERY: &str =
        "signature=899cf89e464efb63f54ddac96b0a0a235f53aa78&timestamp=1714037059&nonce=486452656";
    const PLAIN_NOW: u64 = 1_714_037_059;

    // §5.5 S1: mini program, JSON, safe mode.
    const S1_KEY: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    const S1_APPID: &str = "wxba5fad812f8e6fb9";
    const S1_QUERY: &str = "signature=6c5c811b55cc85e0e1b54100749188c20beb3f5d&timestamp=1714112445&nonce=415670741&openid=o9AgO5Kd5ggOC-bXrbNODIiE3bGY&encrypt_type=aes&msg_signature=046e02f8204d34f8ba5fa3b1db94908f3df2e9b3";
    const S1_BODY: &str = r#"{"ToUserName":"gh_97417a04a28d","Encrypt":"+qdx1OKCy+5JPCBFWw70tm0fJGb2Jmeia4FCB7kao+/Q5c/ohsOzQHi8khUOb05JCpj0JB4RvQMkUyus8TPxLKJGQqcvZqzDpVzazhZv6JsXUnnR8XGT740XgXZUXQ7vJVnAG+tE8NUd4yFyjPy7GgiaviNrlCTj+l5kdfMuFUPpRSrfMZuMcp3Fn2Pede2IuQrKEYwKSqFIZoNqJ4M8EajAsjLY2km32IIjdf8YL/P50F7mStwntrA2cPDrM1kb6mOcfBgRtWygb3VIYnSeOBrebufAlr7F9mFUPAJGj04="}"#;

    // §5.5 S2: official account, XML, safe mode.
    const S2_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
    const S2_APPID: &str = "wx2c2769f8efd9abc2";
    const S2_QUERY: &str = "signature=16120ec1b8dbb870f510d87ce6bc2463eae6ca1a&timestamp=1409735669&nonce=1320562132&encrypt_type=aes&msg_signature=5d197aaffba7e9b25a30732f161a50dee96bd5fa";
    const S2_BODY: &str = "<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName><Encrypt><![CDATA[hyzAe4OzmOMbd6TvGdIOO6uBmdJoD0Fk53REIHvxYtJlE2B655HuD0m8KUePWB3+LrPXo87wzQ1QLvbeUgmBM4x6F8PGHQHFVAFmOD2LdJF9FrXpbUAh0B5GIItb52sn896wVsMSHGuPE328HnRGBcrS7C41IzDWyWNlZkyyXwon8T332jisa+h6tEDYsVticbSnyU8dKOIbgU6ux5VTjg3yt+WGzjlpKn6NPhRjpA912xMezR4kw6KWwMrCVKSVCZciVGCgavjIQ6X8tCOp3yZbGpy0VxpAe+77TszTfRd5RJSVO/HTnifJpXgCSUdUue1v6h0EIBYYI1BD1DlD+C0CR8e6OewpusjZ4uBl9FyJvnhvQl+q5rv1ixrcpCumEPo5MJSgM9ehVsNPfUM669WuMyVWQLCzpu9GhglF2PE=]]></Encrypt></xml>";

    fn config(kind: AccountKind, pairs: &[(&str, &str)]) -> Result<CallbackConfig> {
        let map: HashMap<&str, &str> = pairs.iter().copied().collect();
        CallbackConfig::load(kind, |key| Ok(map.get(key).map(|v| (*v).to_owned())))
    }

    fn mini(pairs: &[(&str, &str)]) -> CallbackConfig {
        config(AccountKind::MiniProgram, pairs).unwrap()
    }

    fn oa(pairs: &[(&str, &str)]) -> CallbackConfig {
        config(AccountKind::OfficialAccount, pairs).unwrap()
    }

    /// A plain-mode push of `body`, signed with the §5.1 vector, received "now".
    fn plain(config: &CallbackConfig, body: &str) -> Result<Push, CallbackError> {
        let query = Query::parse(PLAIN_QUERY);
        Ok(admit(config, &query, PLAIN_NOW)?.open(body.as_bytes())?)
    }

    fn event_xml(event: &str, extra: &str) -> String {
        format!(
            "<xml><ToUserName><![CDATA[gh_1]]></ToUserName>\
             <FromUserName><![CDATA[oOA0000000000000000000000001]]></FromUserName>\
             <CreateTime>1714037000</CreateTime><MsgType><![CDATA[event]]></MsgType>\
             <Event><![CDATA[{event}]]></Event>{extra}</xml>"
        )
    }

    #[test]
    fn config_names_the_missing_key() {
        let err = config(AccountKind::OfficialAccount, &[]).unwrap_err();
        assert!(
            matches!(&err, Error::Config(m) if m.contains("`oa_callback_token`")),
            "{err}"
        );
        let err = config(
            AccountKind::MiniProgram,
            &[
                ("mini_callback_token", "t"),
                ("mini_encoding_aes_key", S1_KEY),
            ],
        )
        .unwrap_err();
        assert!(
            matches!(&err, Error::Config(m) if m.contains("`mini_appid`")),
            "{err}"
        );
        let err = config(
            AccountKind::MiniProgram,
            &[
                ("mini_callback_token", "t"),
                ("mini_encoding_aes_key", "short"),
                ("mini_appid", "wx1"),
            ],
        )
        .unwrap_err();
        assert!(
            matches!(&err, Error::Config(m) if m.contains("`mini_encoding_aes_key`")),
            "{err}"
        );
        let err = config(
            AccountKind::MiniProgram,
            &[("mini_callback_token", "t"), (MAX_AGE_KEY, "5m")],
        )
        .unwrap_err();
        assert!(
            matches!(&err, Error::Config(m) if m.contains(MAX_AGE_KEY)),
            "{err}"
        );
        let shown = format!("{:?}", mini(&[("mini_callback_token", "s3cr3t")]));
        assert!(!shown.contains("s3cr3t"), "{shown}");
    }

    #[test]
    fn url_verification_echoes_only_for_a_valid_signature() {
        let config = oa(&[("oa_callback_token", TOKEN)]);
        assert_eq!(
            verify_url(&config, &Query::parse(VERIFY_QUERY)).unwrap(),
            "4375120948345356249"
        );
        let tampered = VERIFY_QUERY.replace("f464b", "f464c");
        assert_eq!(
            verify_url(&config, &Query::parse(&tampered)),
            Err(Rejection::BadSignature("signature"))
        );
        let other_token = oa(&[("oa_callback_token", "BBBBB")]);
        assert_eq!(
            verify_url(&other_token, &Query::parse(VERIFY_QUERY)),
            Err(Rejection::BadSignature("signature"))
        );
        let without_echo = VERIFY_QUERY.replace("echostr=4375120948345356249&", "");
        assert_eq!(
            verify_url(&config, &Query::parse(&without_echo)),
            Err(Rejection::MissingParameter("echostr"))
        );
        assert_eq!(
            verify_url(&config, &Query::parse("")),
            Err(Rejection::MissingParameter("signature"))
        );
    }

    #[test]
    fn query_takes_the_first_of_repeated_parameters_and_decodes() {
        let query = Query::parse("nonce=1&nonce=2&echostr=a%20b&other=x");
        assert_eq!(query.nonce.as_deref(), Some("1"));
        assert_eq!(query.echostr.as_deref(), Some("a b"));
    }

    #[test]
    fn plain_mode_checks_signature_before_the_body() {
        let config = oa(&[("oa_callback_token", TOKEN), (MAX_AGE_KEY, "0")]);
        let tampered = Query::parse(&PLAIN_QUERY.replace("899cf", "899cc"));
        assert_eq!(
            admit(&config, &tampered, PLAIN_NOW).unwrap_err(),
            CallbackError::Rejected(Rejection::BadSignature("signature"))
        );
        let unsigned = Query::parse("timestamp=1714037059&nonce=486452656");
        assert_eq!(
            admit(&config, &unsigned, PLAIN_NOW).unwrap_err(),
            CallbackError::Rejected(Rejection::MissingParameter("signature"))
        );
        let push = plain(&config, &event_xml("SCAN", "<EventKey>42</EventKey>")).unwrap();
        assert_eq!(
            push.kind,
            PushKind::Ignored {
                msg_type: "event".into(),
                event: Some("SCAN".into())
            }
        );
        assert_eq!(push.marker(AccountKind::OfficialAccount), None);
    }

    #[test]
    fn stale_timestamps_are_refused_either_way_unless_unchecked() {
        let config = oa(&[("oa_callback_token", TOKEN)]);
        let query = Query::parse(PLAIN_QUERY);
        assert!(admit(&config, &query, PLAIN_NOW + 300).is_ok());
        assert!(admit(&config, &query, PLAIN_NOW - 300).is_ok());
        for now in [PLAIN_NOW + 301, PLAIN_NOW - 301] {
            let err = admit(&config, &query, now).unwrap_err();
            assert_eq!(
                err,
                CallbackError::Rejected(Rejection::Stale {
                    timestamp: PLAIN_NOW,
                    now,
                    max_age_secs: 300
                })
            );
            assert!(err.to_string().contains(MAX_AGE_KEY), "{err}");
        }
        let unchecked = oa(&[("oa_callback_token", TOKEN), (MAX_AGE_KEY, "0")]);
        assert!(admit(&unchecked, &query, 4_000_000_000).is_ok());
        // A timestamp that is not a number is refused even then; it was signed, but it is not
        // what WeChat sends. (This one's signature is wrong too, but freshness is checked
        // after it, so sign it properly.)
        let ts = "soon";
        let sig = crypto::url_signature(TOKEN, ts, "1");
        let query = Query::parse(&format!("signature={sig}&timestamp={ts}&nonce=1"));
        assert_eq!(
            admit(&unchecked, &query, PLAIN_NOW).unwrap_err(),
            CallbackError::Rejected(Rejection::BadTimestamp("soon".into()))
        );
    }

    #[test]
    fn s1_safe_mode_json() {
        let config = mini(&[
            ("mini_callback_token", TOKEN),
            ("mini_encoding_aes_key", S1_KEY),
            ("mini_appid", S1_APPID),
            (MAX_AGE_KEY, "0"),
        ]);
        let query = Query::parse(S1_QUERY);
        let push = admit(&config, &query, 0)
            .unwrap()
            .open(S1_BODY.as_bytes())
            .unwrap();
        assert_eq!(
            push,
            Push {
                openid: "o9AgO5Kd5ggOC-bXrbNODIiE3bGY".into(),
                create_time: 1_714_112_445,
                kind: PushKind::Ignored {
                    msg_type: "event".into(),
                    event: Some("debug_demo".into())
                },
            }
        );
    }

    #[test]
    fn s2_safe_mode_xml() {
        let config = oa(&[
            ("oa_callback_token", "spamtest"),
            ("oa_encoding_aes_key", S2_KEY),
            ("oa_appid", S2_APPID),
            (MAX_AGE_KEY, "0"),
        ]);
        let query = Query::parse(S2_QUERY);
        let push = admit(&config, &query, 0)
            .unwrap()
            .open(S2_BODY.as_bytes())
            .unwrap();
        assert_eq!(push.openid, "oyORnuP8q7ou2gfYjqLzSIWZf0rs");
        assert_eq!(push.create_time, 1_409_735_668);
        assert_eq!(
            push.kind,
            PushKind::Ignored {
                msg_type: "text".into(),
                event: None
            }
        );
    }

    #[test]
    fn safe_mode_checks_msg_signature_before_decrypting_and_the_receiver_after() {
        let with = |appid: &str| {
            mini(&[
                ("mini_callback_token", TOKEN),
                ("mini_encoding_aes_key", S1_KEY),
                ("mini_appid", appid),
                (MAX_AGE_KEY, "0"),
            ])
        };
        let open = |config: &CallbackConfig, query: &str, body: &str| {
            let query = Query::parse(query);
            admit(config, &query, 0).and_then(|a| Ok(a.open(body.as_bytes())?))
        };
        let config = with(S1_APPID);
        // The ciphertext changed: msg_signature no longer matches, and decryption is not tried.
        let tampered = S1_BODY.replace("+qdx1", "+qdx2");
        assert_eq!(
            open(&config, S1_QUERY, &tampered),
            Err(CallbackError::Rejected(Rejection::BadSignature(
                "msg_signature"
            )))
        );
        let tampered = S1_QUERY.replace("msg_signature=046e", "msg_signature=046f");
        assert_eq!(
            open(&config, &tampered, S1_BODY),
            Err(CallbackError::Rejected(Rejection::BadSignature(
                "msg_signature"
            )))
        );
        // A valid push for another app.
        assert_eq!(
            open(&with("wx0000000000000000"), S1_QUERY, S1_BODY),
            Err(CallbackError::Rejected(Rejection::WrongReceiver {
                expected: "wx0000000000000000".into(),
                found: S1_APPID.into()
            }))
        );
        // The envelope carries no ciphertext.
        assert!(matches!(
            open(&config, S1_QUERY, r#"{"ToUserName":"gh_1"}"#),
            Err(CallbackError::Rejected(Rejection::Malformed(m))) if m.contains("Encrypt")
        ));
        // Signed, but not ciphertext of this key.
        let encrypt = "AAAA";
        let sig = crypto::msg_signature(TOKEN, "1714112445", "415670741", encrypt);
        let query =
            format!("timestamp=1714112445&nonce=415670741&encrypt_type=aes&msg_signature={sig}");
        assert_eq!(
            open(&config, &query, &format!(r#"{{"Encrypt":"{encrypt}"}}"#)),
            Err(CallbackError::Rejected(Rejection::Undecryptable(
                CryptoError::Decrypt
            )))
        );
        // Safe mode without msg_signature, or with an unknown encryption.
        let unsigned = S1_QUERY.replace(
            "&msg_signature=046e02f8204d34f8ba5fa3b1db94908f3df2e9b3",
            "",
        );
        assert_eq!(
            open(&config, &unsigned, S1_BODY),
            Err(CallbackError::Rejected(Rejection::MissingParameter(
                "msg_signature"
            )))
        );
        let rot13 = S1_QUERY.replace("encrypt_type=aes", "encrypt_type=rot13");
        assert_eq!(
            open(&config, &rot13, S1_BODY),
            Err(CallbackError::Rejected(Rejection::UnsupportedEncryption(
                "rot13".into()
            )))
        );
    }

    #[test]
    fn an_encrypted_push_without_a_key_is_a_config_error() {
        let config = mini(&[("mini_callback_token", TOKEN)]);
        let query = Query::parse(S1_QUERY);
        let err = admit(&config, &query, 0).unwrap_err();
        assert!(
            matches!(&err, CallbackError::Failed(Error::Config(m)) if m.contains("`mini_encoding_aes_key`")),
            "{err}"
        );
    }

    #[test]
    fn bodies_that_are_not_pushes_are_malformed() {
        let mini = mini(&[("mini_callback_token", TOKEN)]);
        let oa = oa(&[("oa_callback_token", TOKEN)]);
        let malformed =
            |config: &CallbackConfig, body: &str, expect: &str| match plain(config, body) {
                Err(CallbackError::Rejected(Rejection::Malformed(m))) => {
                    assert!(m.contains(expect), "{body:?}: {m}");
                }
                other => panic!("{body:?}: {other:?}"),
            };
        malformed(&oa, "<xml><FromUserName>o", "not valid push XML");
        malformed(&oa, "", "neither XML nor JSON");
        malformed(&oa, "success", "neither XML nor JSON");
        malformed(&oa, r#"{"MsgType":"event"}"#, "are XML, got JSON");
        malformed(&mini, r#"{"MsgType":"event""#, "not valid JSON");
        malformed(&mini, r#"{"MsgType":["event"]}"#, "invalid field");
        // XML entities are not expanded, let alone external ones.
        malformed(
            &oa,
            "<!DOCTYPE x [<!ENTITY a \"AAAA\">]><xml><FromUserName>&a;</FromUserName></xml>",
            "not valid push XML",
        );
        // Duplicated fields are refused rather than resolved one way or the other.
        malformed(
            &oa,
            "<xml><FromUserName>a</FromUserName><FromUserName>b</FromUserName></xml>",
            "not valid push XML",
        );
        malformed(&oa, "<xml><CreateTime>1</CreateTime></xml>", "FromUserName");
        malformed(
            &oa,
            "<xml><FromUserName>o</FromUserName><MsgType>text</MsgType></xml>",
            "CreateTime",
        );
        malformed(
            &oa,
            "<xml><FromUserName>o</FromUserName><CreateTime>soon</CreateTime><MsgType>text</MsgType></xml>",
            "`CreateTime` is not a number",
        );
        malformed(
            &oa,
            "<xml><FromUserName>o</FromUserName><CreateTime>1</CreateTime><MsgType>event</MsgType></xml>",
            "no `Event`",
        );
        // An openid that would escape its key.
        malformed(
            &oa,
            &event_xml("subscribe", "").replace("oOA0000000000000000000000001", "../x"),
            "FromUserName",
        );
        assert!(matches!(
            plain(&oa, &"x".repeat(MAX_BODY_BYTES + 1)),
            Err(CallbackError::Rejected(Rejection::TooLarge))
        ));
    }

    #[test]
    fn official_account_events() {
        let config = oa(&[("oa_callback_token", TOKEN)]);
        let push = plain(&config, &event_xml("subscribe", "")).unwrap();
        assert_eq!(push.openid, "oOA0000000000000000000000001");
        assert_eq!(push.create_time, 1_714_037_000);
        assert_eq!(push.kind, PushKind::Follow);
        // A follow through a parametric QR code is a follow too.
        let qr = "<EventKey><![CDATA[qrscene_123]]></EventKey><Ticket><![CDATA[T]]></Ticket>";
        assert_eq!(
            plain(&config, &event_xml("subscribe", qr)).unwrap().kind,
            PushKind::Follow
        );
        assert_eq!(
            plain(&config, &event_xml("unsubscribe", "")).unwrap().kind,
            PushKind::Unfollow
        );
        let finished = event_xml(
            "TEMPLATESENDJOBFINISH",
            "<MsgID>200163836</MsgID><Status><![CDATA[failed:user block]]></Status>",
        );
        assert_eq!(
            plain(&config, &finished).unwrap().kind,
            PushKind::TemplateFinished {
                msgid: 200_163_836,
                status: "failed:user block".into()
            }
        );
        let no_msgid = event_xml("TEMPLATESENDJOBFINISH", "<Status>success</Status>");
        assert!(matches!(
            plain(&config, &no_msgid),
            Err(CallbackError::Rejected(Rejection::Malformed(m))) if m.contains("MsgID")
        ));
        // Follow events mean nothing on a mini program's URL.
        let mini = mini(&[("mini_callback_token", TOKEN)]);
        assert!(matches!(
            plain(&mini, &event_xml("subscribe", "")).unwrap().kind,
            PushKind::Ignored { .. }
        ));
    }

    #[test]
    fn subscribe_message_events_in_xml() {
        let config = oa(&[("oa_callback_token", TOKEN)]);
        let popup = event_xml(
            "subscribe_msg_popup_event",
            "<SubscribeMsgPopupEvent>\
             <List><TemplateId><![CDATA[TPL-a_1]]></TemplateId><SubscribeStatusString><![CDATA[accept]]></SubscribeStatusString><PopupScene>2</PopupScene></List>\
             <List><TemplateId><![CDATA[TPL-b_2]]></TemplateId><SubscribeStatusString><![CDATA[reject]]></SubscribeStatusString><PopupScene>2</PopupScene></List>\
             </SubscribeMsgPopupEvent>",
        );
        assert_eq!(
            plain(&config, &popup).unwrap().kind,
            PushKind::Subscriptions {
                event: SubscriptionEvent::Popup,
                items: vec![
                    SubscriptionItem {
                        template_id: "TPL-a_1".into(),
                        update: SubscriptionUpdate::Status("accept".into())
                    },
                    SubscriptionItem {
                        template_id: "TPL-b_2".into(),
                        update: SubscriptionUpdate::Status("reject".into())
                    },
                ]
            }
        );
        let sent = event_xml(
            "subscribe_msg_sent_event",
            "<SubscribeMsgSentEvent><List><TemplateId>TPL1</TemplateId><MsgID>1700827132819554304</MsgID>\
             <ErrorCode>0</ErrorCode><ErrorStatus><![CDATA[success]]></ErrorStatus></List></SubscribeMsgSentEvent>",
        );
        assert_eq!(
            plain(&config, &sent).unwrap().kind,
            PushKind::Subscriptions {
                event: SubscriptionEvent::Sent,
                items: vec![SubscriptionItem {
                    template_id: "TPL1".into(),
                    update: SubscriptionUpdate::Sent {
                        msgid: Some("1700827132819554304".into()),
                        error_code: 0,
                        error_status: "success".into()
                    }
                }]
            }
        );
        let empty = event_xml(
            "subscribe_msg_change_event",
            "<SubscribeMsgChangeEvent></SubscribeMsgChangeEvent>",
        );
        assert!(matches!(
            plain(&config, &empty),
            Err(CallbackError::Rejected(Rejection::Malformed(m))) if m.contains("no `List` item")
        ));
        let bad_template = popup.replace("TPL-a_1", "a/b");
        assert!(matches!(
            plain(&config, &bad_template),
            Err(CallbackError::Rejected(Rejection::Malformed(m))) if m.contains("TemplateId")
        ));
    }

    #[test]
    fn json_list_is_an_object_for_one_item_and_create_time_may_be_a_string() {
        let config = mini(&[("mini_callback_token", TOKEN)]);
        let one = r#"{"ToUserName":"gh_1","FromUserName":"oMP0000000000000000000000001","CreateTime":"1610969440","MsgType":"event","Event":"subscribe_msg_popup_event","List":{"TemplateId":"TPL1","SubscribeStatusString":"accept","PopupScene":"0"}}"#;
        let push = plain(&config, one).unwrap();
        assert_eq!(push.create_time, 1_610_969_440);
        assert_eq!(
            push.kind,
            PushKind::Subscriptions {
                event: SubscriptionEvent::Popup,
                items: vec![SubscriptionItem {
                    template_id: "TPL1".into(),
                    update: SubscriptionUpdate::Status("accept".into())
                }]
            }
        );
        let many = r#"{"FromUserName":"oMP0000000000000000000000001","CreateTime":1610969440,"MsgType":"event","Event":"subscribe_msg_sent_event","List":[{"TemplateId":"TPL1","MsgID":"1","ErrorCode":"0","ErrorStatus":"success"},{"TemplateId":"TPL2","MsgID":2,"ErrorCode":43101,"ErrorStatus":"fail"}]}"#;
        let push = plain(&config, many).unwrap();
        assert_eq!(push.create_time, 1_610_969_440);
        let PushKind::Subscriptions { event, items } = push.kind else {
            panic!("{push:?}");
        };
        assert_eq!(event, SubscriptionEvent::Sent);
        assert_eq!(
            items[1],
            SubscriptionItem {
                template_id: "TPL2".into(),
                update: SubscriptionUpdate::Sent {
                    msgid: Some("2".into()),
                    error_code: 43101,
                    error_status: "fail".into()
                }
            }
        );
        // The XML-like container is understood in JSON too.
        let wrapped = r#"{"FromUserName":"oMP0000000000000000000000001","CreateTime":1,"MsgType":"event","Event":"subscribe_msg_change_event","SubscribeMsgChangeEvent":{"List":{"TemplateId":"TPL1","SubscribeStatusString":"reject"}}}"#;
        assert!(matches!(
            plain(&config, wrapped).unwrap().kind,
            PushKind::Subscriptions { event: SubscriptionEvent::Change, ref items } if items.len() == 1
        ));
    }

    #[test]
    fn markers_tell_retries_from_new_pushes() {
        let config = oa(&[("oa_callback_token", TOKEN)]);
        let oa = AccountKind::OfficialAccount;
        let follow = plain(&config, &event_xml("subscribe", "")).unwrap();
        let marker = follow.marker(oa).unwrap();
        assert!(
            marker.starts_with(MARKER_PREFIX) && marker.len() == MARKER_PREFIX.len() + 40,
            "{marker}"
        );
        // The same push again (in safe mode the ciphertext differs, the push does not).
        assert_eq!(
            plain(&config, &event_xml("subscribe", ""))
                .unwrap()
                .marker(oa),
            Some(marker.clone())
        );
        let later = Push {
            create_time: follow.create_time + 1,
            ..follow.clone()
        };
        let unfollow = Push {
            kind: PushKind::Unfollow,
            ..follow.clone()
        };
        assert_ne!(later.marker(oa), Some(marker.clone()));
        assert_ne!(unfollow.marker(oa), Some(marker.clone()));
        assert_ne!(follow.marker(AccountKind::MiniProgram), Some(marker));
        // Two template messages to one user finishing in the same second are two pushes.
        let finished = |msgid| Push {
            kind: PushKind::TemplateFinished {
                msgid,
                status: "success".into(),
            },
            ..follow.clone()
        };
        assert_ne!(finished(1).marker(oa), finished(2).marker(oa));
    }
}
