//! How results look: a sentence for people, JSON for scripts.

use serde_json::{Value, json};
use wxnotify::{Channel, Delivery, Error, NotifyError, SyncProgress, User};

pub fn channel_name(channel: Channel) -> &'static str {
    match channel {
        Channel::TemplateMessage => "template message",
        Channel::SubscribeMessage => "subscribe message",
    }
}

pub fn delivery_text(delivery: &Delivery) -> String {
    let to = match delivery.channel {
        Channel::TemplateMessage => "official-account openid",
        Channel::SubscribeMessage => "mini-program openid",
    };
    let mut text = format!(
        "delivered as a {} to {to} {}",
        channel_name(delivery.channel),
        delivery.openid
    );
    if let Some(msgid) = delivery.msgid {
        text.push_str(&format!(" (msgid {msgid})"));
    }
    let calls = if delivery.attempts == 1 {
        "1 call".to_owned()
    } else {
        format!("{} calls", delivery.attempts)
    };
    text.push_str(&format!(", {calls}"));
    if !delivery.truncated.is_empty() {
        text.push_str(&format!(
            "\n  shown shortened (over 20 characters or with line breaks): {}",
            delivery.truncated.join(", ")
        ));
    }
    for failure in &delivery.failures {
        text.push_str(&format!(
            "\n  {} not delivered: {}",
            channel_name(failure.channel),
            failure.error
        ));
    }
    text
}

/// The contract's JSON: the same shapes as the API's.
pub fn delivery_json(delivery: &Delivery) -> Value {
    json!(delivery)
}

pub fn user_text(user: &User) -> String {
    let show = |id: &Option<String>| id.clone().unwrap_or_else(|| "(unknown)".into());
    let follows = match user.follows_oa {
        Some(true) => "yes",
        Some(false) => "no",
        None => "(unknown)",
    };
    format!(
        "mini-program openid    {}\nunionid                {}\nofficial-account openid {}\nfollows the OA         {follows}",
        show(&user.mini_openid),
        show(&user.unionid),
        show(&user.oa_openid)
    )
}

/// Prints `user` for people or, with `json`, for scripts.
pub fn print_user(user: &User, json: bool) {
    if json {
        out!("{}", user_json(user));
    } else {
        out!("{}", user_text(user));
    }
}

pub fn user_json(user: &User) -> Value {
    json!(user)
}

pub fn progress_json(progress: &SyncProgress) -> Value {
    json!(progress)
}

pub fn notify_error_json(error: &NotifyError) -> Value {
    json!(error)
}

/// Any CLI error as JSON: the component's errors keep their kind and errcode.
pub fn error_json(error: &anyhow::Error) -> Value {
    match error.downcast_ref::<Error>() {
        Some(Error::Notify { tenant, error }) => {
            let mut value = notify_error_json(error);
            value["tenant"] = json!(tenant);
            value
        }
        _ => {
            json!({ "kind": if super::exit_code(error) == super::EXIT_INPUT { "input" } else { "fault" }, "message": format!("{error:#}") })
        }
    }
}
