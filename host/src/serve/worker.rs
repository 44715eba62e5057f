//! The outbox workers: claim due messages, hand each to its tenant's component, settle it.
//!
//! What an attempt's result means for the message is decided by [`classify`], a pure function
//! over the typed result: a delivery completes it, and a component's error means what
//! [`NotifyError::retry`](wxnotify_contract::Error::retry) says — final errors fail it (WeChat
//! or the user said no), transient ones retry with exponential backoff, a hint from the
//! component (a WeCom robot's per-minute limit) is taken at its word, and the daily quota
//! pauses the tenant until WeChat resets it at midnight China time. Faults of the host
//! (deadline, trap, storage) retry; configuration faults fail.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use wxnotify_contract::{Delivery, Notification, Retry};
use wxnotify_store::outbox::{Claimed, Outcome};

use super::AppState;
use crate::error::Error;
use crate::runtime::SendRate;

/// Messages one claim takes.
const CLAIM_BATCH: usize = 8;
/// How long a worker waits when nothing is due.
const IDLE: Duration = Duration::from_millis(50);
/// Added to the longest tenant deadline for the lease, so a send that ends at its deadline is
/// still settled by its worker before anyone else may take the message over.
pub(super) const LEASE_MARGIN: Duration = Duration::from_secs(30);
/// The longest backoff between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// The longest `retry_after_secs` a component is taken at its word for.
const MAX_COMPONENT_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// What to do with a message after one attempt.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Decision {
    /// Sent: complete it as delivered with the component's answer as detail.
    Delivered {
        /// The delivery's JSON.
        detail: String,
        /// The channel that delivered, for metrics.
        channel: &'static str,
    },
    /// Final failure: complete it as failed.
    Failed {
        /// Why.
        detail: String,
    },
    /// Try again after `after`.
    Retry {
        /// The delay.
        after: Duration,
        /// Why.
        detail: String,
    },
    /// The tenant is out of daily quota: pause it and retry at `until`.
    Pause {
        /// Midnight CST.
        until: SystemTime,
        /// Why.
        detail: String,
    },
}

/// The delay before the next attempt after `attempts` attempts: 1 s·2^(attempts−1), at most
/// 5 min, scaled by `1 + 0.2·jitter` (`jitter` in −1..=1) so that messages that failed together
/// do not come back together.
pub(crate) fn backoff(attempts: u32, jitter: f64) -> Duration {
    let exponent = attempts.saturating_sub(1).min(16);
    let base = Duration::from_secs(1u64 << exponent).min(MAX_BACKOFF);
    base.mul_f64(1.0 + 0.2 * jitter.clamp(-1.0, 1.0))
}

/// The first 00:00 China Standard Time strictly after `now`, when WeChat resets daily quotas
/// (whole seconds count; times before the Unix epoch count as the epoch).
pub(crate) fn next_cst_midnight(now: SystemTime) -> SystemTime {
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let midnight =
        wxnotify_rules::china_time::next_midnight(i64::try_from(secs).unwrap_or(i64::MAX));
    UNIX_EPOCH + Duration::from_secs(u64::try_from(midnight).unwrap_or_default())
}

/// Decides what an attempt's result means; `jitter` as for [`backoff`].
pub(crate) fn classify(
    result: &Result<Delivery, Error>,
    attempts: u32,
    now: SystemTime,
    jitter: f64,
) -> Decision {
    let error = match result {
        Ok(delivery) => {
            return Decision::Delivered {
                detail: serde_json::to_string(delivery).unwrap_or_default(),
                channel: delivery.channel.name(),
            };
        }
        Err(Error::Notify { error, .. }) => error,
        // Transient: a slow WeChat, a trap, storage trouble. The message may have been sent if
        // the deadline struck after WeChat accepted it; at least once is the contract.
        Err(error @ (Error::Deadline { .. } | Error::Component { .. } | Error::Storage(_))) => {
            return Decision::Retry {
                after: backoff(attempts, jitter),
                detail: error.to_string(),
            };
        }
        // Unknown tenant, memory limit, configuration: retrying gives the same answer.
        Err(error) => {
            return Decision::Failed {
                detail: error.to_string(),
            };
        }
    };
    // Stored as the API shows errors, so `GET …/notifications/{id}` reads it back as such.
    let detail = serde_json::json!({ "error": error }).to_string();
    match error.retry() {
        Retry::Never => Decision::Failed { detail },
        Retry::WithBackoff => Decision::Retry {
            after: backoff(attempts, jitter),
            detail,
        },
        Retry::After(after) => Decision::Retry {
            after: after.min(MAX_COMPONENT_RETRY_AFTER),
            detail,
        },
        Retry::AtQuotaReset => Decision::Pause {
            until: next_cst_midnight(now),
            detail,
        },
    }
}

/// Turns a retry or a pause that would come later than `retry_for` after the message was
/// accepted into a failure that says so, with the last error: retries end, the message does not
/// wait forever.
pub(crate) fn within_retry_window(
    decision: Decision,
    enqueued_at: SystemTime,
    attempts: u32,
    retry_for: Duration,
    now: SystemTime,
) -> Decision {
    let (next_attempt, detail) = match &decision {
        Decision::Retry { after, detail } => (now + *after, detail),
        Decision::Pause { until, detail } => (*until, detail),
        Decision::Delivered { .. } | Decision::Failed { .. } => return decision,
    };
    if next_attempt <= enqueued_at + retry_for {
        return decision;
    }
    let trying_for = now.duration_since(enqueued_at).unwrap_or_default();
    Decision::Failed {
        detail: format!(
            "gave up after {attempts} attempt(s) in {}: the next would be more than {} after \
             the notification was accepted (--retry-for); last error: {detail}",
            humantime::format_duration(Duration::from_secs(trying_for.as_secs())),
            humantime::format_duration(retry_for),
        ),
    }
}

/// A token bucket: `rate.count` sends per `rate.per`, bursts of up to `rate.count`.
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Per-tenant send rates, shared by the workers of one server.
#[derive(Default)]
pub(crate) struct RateLimits {
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimits {
    /// Takes one send of `tenant`'s budget at `rate`; returns how long to wait first.
    pub(crate) fn reserve(&self, tenant: &str, rate: SendRate, now: Instant) -> Duration {
        let capacity = f64::from(rate.count.max(1));
        let per_second = capacity / rate.per.as_secs_f64().max(f64::MIN_POSITIVE);
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let bucket = buckets.entry(tenant.to_owned()).or_insert(Bucket {
            tokens: capacity,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_second).min(capacity) - 1.0;
        bucket.at = now;
        // A negative balance is the queue of sends reserved ahead: each waits its turn.
        if bucket.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-bucket.tokens / per_second)
        }
    }
}

/// Runs one worker until `stop` turns true; then it finishes the send in progress, hands the
/// rest of its claim back to the queue and returns.
pub(crate) async fn run(state: AppState, name: String, mut stop: watch::Receiver<bool>) {
    let mut last_purge: Option<Instant> = None;
    let is_first = name.ends_with("/0");
    while !*stop.borrow() {
        // One worker per server does the housekeeping.
        if is_first && last_purge.is_none_or(|at| at.elapsed() >= Duration::from_secs(3600)) {
            last_purge = Some(Instant::now());
            purge(&state).await;
        }
        let lease = state.lease();
        let claimed = match state.outbox.claim(&name, CLAIM_BATCH, lease).await {
            Ok(claimed) => claimed,
            Err(error) => {
                tracing::warn!(worker = %name, "claim failed: {error}");
                idle(&mut stop, Duration::from_secs(1)).await;
                continue;
            }
        };
        if claimed.is_empty() {
            idle(&mut stop, IDLE).await;
            continue;
        }
        let mut messages = claimed.into_iter();
        for message in messages.by_ref() {
            if *stop.borrow() {
                release(&state, &message).await;
                break;
            }
            process(&state, message, &mut stop).await;
        }
        // Claimed but not started before shutdown: due again at once for another worker.
        for message in messages {
            release(&state, &message).await;
        }
    }
}

async fn idle(stop: &mut watch::Receiver<bool>, wait: Duration) {
    let _ = tokio::time::timeout(wait, stop.changed()).await;
}

async fn release(state: &AppState, message: &Claimed) {
    if let Err(error) = state
        .outbox
        .retry(&message.id, SystemTime::now(), "released at shutdown")
        .await
    {
        // The lease expires on its own: the message is only late, not lost.
        tracing::warn!(id = %message.id, "releasing at shutdown failed: {error}");
    }
}

async fn purge(state: &AppState) {
    let week_ago = SystemTime::now() - Duration::from_secs(7 * 24 * 3600);
    match state.outbox.purge_finished(week_ago, 1000).await {
        Ok(0) => {}
        Ok(purged) => tracing::info!("purged {purged} finished messages older than 7 days"),
        Err(error) => tracing::warn!("purging finished messages failed: {error}"),
    }
}

async fn process(state: &AppState, message: Claimed, stop: &mut watch::Receiver<bool>) {
    let tenant = match state.runtime.tenant(&message.tenant) {
        Ok(tenant) => tenant,
        Err(error) => {
            let detail = error.to_string();
            let channel = payload_channel(&message.payload);
            settle(state, &message, Decision::Failed { detail }, channel).await;
            return;
        }
    };
    if let Some(rate) = tenant.limits().send_rate {
        let wait = state
            .rate_limits
            .reserve(&message.tenant, rate, Instant::now());
        if !wait.is_zero() && tokio::time::timeout(wait, stop.changed()).await.is_ok() {
            // Shutting down while waiting for the budget: not started, so hand it back.
            release(state, &message).await;
            return;
        }
    }
    let notification = match serde_json::from_slice::<Notification>(&message.payload) {
        Ok(notification) => notification,
        // Accepted payloads were parsed into the same type: only a corrupted row gets here.
        Err(error) => {
            let detail = format!("the stored payload is not a notification: {error}");
            settle(state, &message, Decision::Failed { detail }, "unknown").await;
            return;
        }
    };
    let started = Instant::now();
    let result = tenant.send_notification(&notification).await;
    state
        .metrics
        .send_duration
        .observe(started.elapsed().as_secs_f64());
    let jitter = rand::random_range(-1.0..=1.0);
    let now = SystemTime::now();
    let decision = within_retry_window(
        classify(&result, message.attempts, now, jitter),
        message.enqueued_at,
        message.attempts,
        state.retry_for,
        now,
    );
    settle(state, &message, decision, first_channel(&notification)).await;
}

/// The channel of a notification's first channel, for metrics of messages not delivered.
fn first_channel(notification: &Notification) -> &'static str {
    notification
        .channels
        .first()
        .map_or("unknown", |c| c.channel().name())
}

/// [`first_channel`] of a stored payload, for a message settled before it was read.
fn payload_channel(payload: &[u8]) -> &'static str {
    serde_json::from_slice::<Notification>(payload)
        .ok()
        .map_or("unknown", |n| first_channel(&n))
}

/// Completes, retries or pauses `message` as `decision` says; `channel` labels the metrics of
/// a message not delivered (a delivery names its own).
async fn settle(state: &AppState, message: &Claimed, decision: Decision, channel: &str) {
    let count = |channel: &str, outcome: &str| {
        state
            .metrics
            .sends
            .with_label_values(&[message.tenant.as_str(), channel, outcome])
            .inc();
    };
    let now = SystemTime::now();
    let settled = match decision {
        Decision::Delivered {
            detail,
            channel: delivered,
        } => {
            count(delivered, "delivered");
            state
                .outbox
                .complete(&message.id, Outcome::Delivered { detail })
                .await
        }
        Decision::Failed { detail } => {
            tracing::info!(id = %message.id, tenant = %message.tenant, "failed: {detail}");
            count(channel, "failed");
            state
                .outbox
                .complete(&message.id, Outcome::Failed { detail })
                .await
        }
        Decision::Retry { after, detail } => {
            tracing::debug!(id = %message.id, tenant = %message.tenant, attempts = message.attempts, "retry in {after:?}: {detail}");
            count(channel, "retried");
            state.outbox.retry(&message.id, now + after, &detail).await
        }
        Decision::Pause { until, detail } => {
            tracing::warn!(tenant = %message.tenant, "daily quota reached: pausing the tenant until midnight CST");
            count(channel, "retried");
            if let Err(error) = state.outbox.pause_tenant(&message.tenant, until).await {
                tracing::warn!(tenant = %message.tenant, "pausing failed: {error}");
            }
            state.outbox.retry(&message.id, until, &detail).await
        }
    };
    if let Err(error) = settled {
        // The lease will expire and the message be sent again: at least once.
        tracing::warn!(id = %message.id, "settling failed: {error}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use wxnotify_contract::{ApiError, Channel};

    fn refused(error: crate::NotifyError) -> Result<Delivery, Error> {
        Err(Error::Notify {
            tenant: "t".into(),
            error,
        })
    }

    fn api(errcode: i32) -> ApiError {
        ApiError::new(errcode, "m")
    }

    #[test]
    fn backoff_doubles_caps_and_jitters() {
        assert_eq!(backoff(1, 0.0), Duration::from_secs(1));
        assert_eq!(backoff(2, 0.0), Duration::from_secs(2));
        assert_eq!(backoff(5, 0.0), Duration::from_secs(16));
        assert_eq!(backoff(9, 0.0), Duration::from_secs(256));
        assert_eq!(backoff(10, 0.0), Duration::from_secs(300));
        assert_eq!(backoff(u32::MAX, 0.0), Duration::from_secs(300));
        assert_eq!(backoff(0, 0.0), Duration::from_secs(1));
        assert_eq!(backoff(3, 1.0), Duration::from_millis(4800));
        assert_eq!(backoff(3, -1.0), Duration::from_millis(3200));
        assert_eq!(backoff(10, 5.0), Duration::from_secs(360));
    }

    #[test]
    fn classifies_component_results() {
        use crate::NotifyError as E;
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let delivery = Delivery {
            channel: Channel::TemplateMessage,
            msgid: Some(1),
            openid: "o".into(),
            attempts: 1,
            truncated: vec![],
            failures: vec![],
        };
        let Decision::Delivered { detail, channel } = classify(&Ok(delivery), 1, now, 0.0) else {
            panic!("delivered");
        };
        assert_eq!(channel, "template_message");
        assert!(detail.contains(r#""msgid":1"#), "{detail}");
        assert!(matches!(
            classify(&refused(E::unavailable("busy")), 3, now, 0.0),
            Decision::Retry { after, ref detail }
                if after == Duration::from_secs(4) && detail.contains(r#""kind":"unavailable""#)
        ));
        assert!(matches!(
            classify(&refused(E::quota(api(45009))), 1, now, 0.0),
            Decision::Pause { until, .. } if until == next_cst_midnight(now)
        ));
        assert!(matches!(
            classify(&refused(E::quota(api(45011))), 1, now, 0.0),
            Decision::Retry { after, .. } if after == Duration::from_secs(60)
        ));
        // The component says when: a robot's per-minute 45009 is no daily quota.
        let per_minute = E::Quota {
            error: api(45009),
            retry_after_secs: Some(60),
        };
        assert!(matches!(
            classify(&refused(per_minute), 1, now, 0.0),
            Decision::Retry { after, .. } if after == Duration::from_secs(60)
        ));
        let too_long = E::Unavailable {
            message: "m".into(),
            retry_after_secs: Some(999_999),
        };
        assert!(matches!(
            classify(&refused(too_long), 1, now, 0.0),
            Decision::Retry { after, .. } if after == MAX_COMPONENT_RETRY_AFTER
        ));
        for error in [
            E::Refused(api(43101)),
            E::Rejected(api(40003)),
            E::InvalidInput("x".into()),
            E::NotFound("x".into()),
            E::Auth(api(40125)),
            E::Config("x".into()),
            E::Api(api(12345)),
        ] {
            assert!(
                matches!(
                    classify(&refused(error.clone()), 1, now, 0.0),
                    Decision::Failed { .. }
                ),
                "{error}"
            );
        }
    }

    #[test]
    fn classifies_host_errors() {
        let now = SystemTime::now();
        let deadline = Err(Error::Deadline {
            tenant: "t".into(),
            deadline_ms: 100,
        });
        assert!(matches!(
            classify(&deadline, 1, now, 0.0),
            Decision::Retry { .. }
        ));
        let trap = Err(Error::Component {
            tenant: "t".into(),
            message: "trap".into(),
        });
        assert!(matches!(
            classify(&trap, 1, now, 0.0),
            Decision::Retry { .. }
        ));
        let unknown = Err(Error::UnknownTenant("t".into()));
        assert!(matches!(
            classify(&unknown, 1, now, 0.0),
            Decision::Failed { .. }
        ));
    }

    #[test]
    fn retries_end_when_the_next_attempt_would_fall_outside_the_window() {
        let accepted = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let window = Duration::from_secs(3600);
        let retry = |after| Decision::Retry {
            after,
            detail: "WeChat answered -1".into(),
        };
        let early = accepted + Duration::from_secs(600);
        assert_eq!(
            within_retry_window(retry(Duration::from_secs(60)), accepted, 5, window, early),
            retry(Duration::from_secs(60))
        );
        let late = accepted + Duration::from_secs(3590);
        let Decision::Failed { detail } =
            within_retry_window(retry(Duration::from_secs(60)), accepted, 12, window, late)
        else {
            panic!("a retry past the window must fail");
        };
        assert!(
            detail.starts_with("gave up after 12 attempt(s) in 59m 50s"),
            "{detail}"
        );
        assert!(
            detail.ends_with("last error: WeChat answered -1"),
            "{detail}"
        );

        // The daily-quota pause ends the message if midnight is past the window.
        let pause = |until| Decision::Pause {
            until,
            detail: "45009".into(),
        };
        assert_eq!(
            within_retry_window(pause(accepted + window), accepted, 1, window, early),
            pause(accepted + window)
        );
        assert!(matches!(
            within_retry_window(pause(accepted + window * 2), accepted, 1, window, early),
            Decision::Failed { .. }
        ));

        // Final answers are left alone, however late.
        let failed = Decision::Failed {
            detail: "43004".into(),
        };
        let much_later = accepted + window * 48;
        assert_eq!(
            within_retry_window(failed.clone(), accepted, 3, window, much_later),
            failed
        );
    }

    #[test]
    fn token_bucket_spaces_sends() {
        let limits = RateLimits::default();
        let start = Instant::now();
        let two = SendRate::per_second(2);
        assert_eq!(limits.reserve("t", two, start), Duration::ZERO);
        assert_eq!(limits.reserve("t", two, start), Duration::ZERO);
        assert_eq!(limits.reserve("t", two, start), Duration::from_millis(500));
        assert_eq!(limits.reserve("t", two, start), Duration::from_secs(1));
        // Other tenants have their own budget.
        assert_eq!(limits.reserve("u", two, start), Duration::ZERO);
        assert_eq!(
            limits.reserve("t", two, start + Duration::from_secs(10)),
            Duration::ZERO
        );
    }

    #[test]
    fn a_per_minute_rate_allows_its_burst_then_one_every_period_share() {
        let limits = RateLimits::default();
        let start = Instant::now();
        let robot = SendRate::per_minute(20);
        for _ in 0..20 {
            assert_eq!(limits.reserve("robot", robot, start), Duration::ZERO);
        }
        let wait = limits.reserve("robot", robot, start);
        assert!(
            (wait.as_secs_f64() - 3.0).abs() < 1e-6,
            "the 21st waits a twentieth of a minute: {wait:?}"
        );
        let later = start + Duration::from_secs(60);
        assert_eq!(limits.reserve("robot", robot, later), Duration::ZERO);
    }

    #[test]
    fn names_the_channel_of_a_payload() {
        assert_eq!(
            payload_channel(
                br#"{"recipient":{"union":"u"},"channels":[{"uniform_legacy":{"template_id":"T","data":{}}}]}"#
            ),
            "template_message"
        );
        assert_eq!(payload_channel(b"[]"), "unknown");
    }

    #[test]
    fn next_cst_midnight_is_the_next_utc_16_00() {
        let at = |secs: u64, millis: u64| {
            UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis)
        };
        // 2024-01-01T00:00:00Z is 08:00 in Beijing; the next midnight there is 16:00Z.
        const JAN_1: u64 = 1_704_067_200;
        const H: u64 = 3600;
        assert_eq!(next_cst_midnight(at(JAN_1, 0)), at(JAN_1 + 16 * H, 0));
        assert_eq!(
            next_cst_midnight(at(JAN_1 + 16 * H - 1, 999)),
            at(JAN_1 + 16 * H, 0)
        );
        // Exactly midnight: the quota has just been reset, the *next* midnight is a day away.
        assert_eq!(
            next_cst_midnight(at(JAN_1 + 16 * H, 0)),
            at(JAN_1 + 40 * H, 0)
        );
        assert_eq!(
            next_cst_midnight(at(JAN_1 + 16 * H, 1)),
            at(JAN_1 + 40 * H, 0)
        );
        // Late evening UTC is already the next day in Beijing.
        assert_eq!(
            next_cst_midnight(at(JAN_1 + 23 * H, 0)),
            at(JAN_1 + 40 * H, 0)
        );
        // Across a month and a leap day: 2024-02-29T20:00:00Z is 03-01 04:00 CST.
        const FEB_29: u64 = 1_709_164_800;
        assert_eq!(
            next_cst_midnight(at(FEB_29 + 20 * H, 0)),
            at(FEB_29 + 40 * H, 0)
        );
        // The epoch, and times before it.
        assert_eq!(next_cst_midnight(UNIX_EPOCH), at(16 * H, 0));
        assert_eq!(
            next_cst_midnight(UNIX_EPOCH - Duration::from_secs(5)),
            at(16 * H, 0)
        );
        // Always strictly later, by at most a day.
        let mut t = at(JAN_1, 0);
        for _ in 0..200 {
            let next = next_cst_midnight(t);
            let ahead = next.duration_since(t).unwrap();
            assert!(ahead > Duration::ZERO && ahead <= Duration::from_secs(24 * H));
            let secs = next.duration_since(UNIX_EPOCH).unwrap().as_secs();
            assert_eq!((secs + 8 * H) % (24 * H), 0);
            t += Duration::from_secs(7 * H + 13);
        }
    }
}
