//! What a queue accepts in one request: one notification, or `{"notifications": […]}` — read
//! once, with the failing notification of a batch named (`notifications[3]: …`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Notification;

/// A submission: one notification, or a batch.
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub enum Submission {
    /// Notifications accepted or refused together.
    Batch(Batch),
    /// One notification.
    One(Notification),
}

/// `{"notifications": […]}`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct Batch {
    /// The notifications, in order.
    pub notifications: Vec<Notification>,
}

/// Why a submission cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmissionError {
    /// What is wrong, naming the notification of a batch.
    pub message: String,
    /// The failing notification of a batch.
    pub index: Option<usize>,
}

/// Reads `body` as one notification or a batch of 1 to `max_batch`; the notifications, and
/// whether it was a batch.
pub fn parse(body: &[u8], max_batch: usize) -> Result<(Vec<Notification>, bool), SubmissionError> {
    let invalid = |message: String| SubmissionError {
        message,
        index: None,
    };
    let value: Value =
        serde_json::from_slice(body).map_err(|e| invalid(format!("the body is not JSON: {e}")))?;
    let notification = |value: Value, index: Option<usize>| {
        serde_json::from_value::<Notification>(value).map_err(|e| SubmissionError {
            message: match index {
                Some(index) => format!("notifications[{index}]: {e}"),
                None => format!("the body is not a notification: {e}"),
            },
            index,
        })
    };
    match value {
        Value::Object(mut object) if object.contains_key("notifications") => {
            if object.len() > 1 {
                return Err(invalid("a batch holds only `notifications`".to_owned()));
            }
            let Some(Value::Array(list)) = object.remove("notifications") else {
                return Err(invalid("`notifications` must be an array".into()));
            };
            if list.is_empty() || list.len() > max_batch {
                return Err(invalid(format!(
                    "`notifications` must hold 1 to {max_batch} notifications, got {}",
                    list.len()
                )));
            }
            let notifications = list
                .into_iter()
                .enumerate()
                .map(|(index, value)| notification(value, Some(index)))
                .collect::<Result<_, _>>()?;
            Ok((notifications, true))
        }
        object @ Value::Object(_) => Ok((vec![notification(object, None)?], false)),
        _ => Err(invalid("the body must be a JSON object".into())),
    }
}
