//! Why a delivery to the robot failed, before `lib.rs` turns it into the WIT `error` (once).

/// An errcode answer from WeCom, its `errmsg` already scrubbed of the webhook key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub errcode: i32,
    pub errmsg: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The notification cannot be rendered, e.g. it has no channels.
    InvalidInput(String),
    /// A config key is missing or the host's egress policy blocks the robot; the text says
    /// which key to fix.
    Config(String),
    /// WeCom does not know the webhook key (93000): the configured key is wrong or the robot
    /// was removed from its group.
    BadKey(ApiError),
    /// The robot's limit of 20 messages per minute (45009).
    Quota(ApiError),
    /// WeCom was busy (-1), unreachable or answered garbage, on every attempt.
    Unavailable(String),
    /// Any other errcode: a rejected message type, empty or over-long content, …
    Api(ApiError),
}

impl Error {
    /// The text of an export this plugin does not serve: what the plugin is, so the caller knows where to go instead.
    pub fn not_served_message(export: &str) -> String {
        format!(
            "the wecom-robot plugin does not serve {export}: it posts notifications into a WeCom \
             group chat and knows no WeChat users (it is a sink, not an identity service); call \
             {export} on a tenant that runs the built-in component"
        )
    }
}
