//! Fault injection: make chosen WeChat endpoints fail, slow down or drop the connection.

use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::error::SandboxError;

/// What an injected fault does to a matching call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "ActionWire", into = "ActionWire")]
pub enum FaultAction {
    /// Answer with this WeChat error instead of handling the call (a ` rid: …` suffix is
    /// appended to `errmsg`, as on every sandbox error).
    Errcode {
        /// The errcode, e.g. `-1` (system busy) or `45009` (daily quota).
        errcode: i64,
        /// The errmsg text.
        errmsg: String,
    },
    /// Wait this long, then handle the call normally (or apply the next matching fault).
    Latency(Duration),
    /// Close the TCP connection without sending any HTTP response.
    DropConnection,
}

/// One injected fault.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fault {
    /// The path the fault applies to, e.g. `/cgi-bin/message/template/send`, or `*` for every
    /// WeChat endpoint (never the `/sandbox` admin API).
    pub endpoint: String,
    /// What happens to a matching call.
    pub action: FaultAction,
    /// How many matching calls it hits before it is removed; `None` = every call until cleared.
    /// A call the `probability` spares does not count.
    #[serde(default)]
    pub times: Option<u32>,
    /// Chance that a matching call is hit, within `0.0..=1.0` (default 1).
    #[serde(default = "one")]
    pub probability: f64,
}

fn one() -> f64 {
    1.0
}

impl Fault {
    /// A fault that hits every call to `endpoint`.
    pub fn new(endpoint: impl Into<String>, action: FaultAction) -> Self {
        Self {
            endpoint: endpoint.into(),
            action,
            times: None,
            probability: 1.0,
        }
    }

    /// A fault answering `errcode`/`errmsg` on every call to `endpoint`.
    pub fn errcode(endpoint: impl Into<String>, errcode: i64, errmsg: impl Into<String>) -> Self {
        Self::new(
            endpoint,
            FaultAction::Errcode {
                errcode,
                errmsg: errmsg.into(),
            },
        )
    }

    /// Limits the fault to the next `times` matching calls.
    #[must_use]
    pub fn times(mut self, times: u32) -> Self {
        self.times = Some(times);
        self
    }

    /// Hits a matching call only with this probability.
    #[must_use]
    pub fn probability(mut self, probability: f64) -> Self {
        self.probability = probability;
        self
    }

    /// Checks the fields a caller could get wrong (the probability); [`crate::SandboxState::inject`]
    /// tolerates them (≥ 1 = always, ≤ 0 or NaN = never), the admin API refuses them.
    pub fn validate(&self) -> Result<(), SandboxError> {
        if (0.0..=1.0).contains(&self.probability) {
            Ok(())
        } else {
            Err(SandboxError::InvalidProbability(self.probability))
        }
    }

    fn matches(&self, path: &str) -> bool {
        self.endpoint == "*" || self.endpoint == path
    }
}

/// What the faults decided for one call.
#[derive(Debug, Default)]
pub(crate) struct FaultPlan {
    /// Total injected latency, applied before anything else.
    pub(crate) latency: Duration,
    /// An error answer or a dropped connection replacing the real handling.
    pub(crate) outcome: Option<FaultAction>,
    /// Every action that hit this call, for the request record.
    pub(crate) applied: Vec<FaultAction>,
}

/// The active faults, in injection order.
#[derive(Debug, Default)]
pub(crate) struct FaultBook {
    faults: Vec<Fault>,
}

impl FaultBook {
    pub(crate) fn inject(&mut self, fault: Fault) {
        self.faults.push(fault);
    }

    pub(crate) fn clear(&mut self) {
        self.faults.clear();
    }

    pub(crate) fn list(&self) -> Vec<Fault> {
        self.faults.clone()
    }

    /// Decides the faults for one call to `path`: latencies add up; the first error or drop that
    /// hits ends the evaluation. Faults whose `times` run out are removed.
    pub(crate) fn plan(&mut self, path: &str) -> FaultPlan {
        let mut plan = FaultPlan::default();
        if self.faults.is_empty() {
            return plan;
        }
        let mut rng = rand::rng();
        for fault in &mut self.faults {
            if !fault.matches(path) || fault.times == Some(0) {
                continue;
            }
            // Written so that NaN (and anything ≤ 0) never fires and anything ≥ 1 always does:
            // `random_bool` panics outside 0..=1.
            let p = fault.probability;
            let hit = p >= 1.0 || (p > 0.0 && rng.random_bool(p));
            if !hit {
                continue;
            }
            if let Some(times) = &mut fault.times {
                *times -= 1;
            }
            plan.applied.push(fault.action.clone());
            match &fault.action {
                FaultAction::Latency(delay) => plan.latency += *delay,
                terminal => {
                    plan.outcome = Some(terminal.clone());
                    break;
                }
            }
        }
        self.faults.retain(|fault| fault.times != Some(0));
        plan
    }
}

/// The JSON shape of a [`FaultAction`]:
/// `{"type":"errcode","errcode":-1,"errmsg":"system error"}`, `{"type":"latency","millis":500}`
/// or `{"type":"drop_connection"}`.
#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum ActionWire {
    Errcode {
        errcode: i64,
        #[serde(default = "default_errmsg")]
        errmsg: String,
    },
    Latency {
        millis: u64,
    },
    DropConnection,
}

fn default_errmsg() -> String {
    "system error".to_owned()
}

impl From<ActionWire> for FaultAction {
    fn from(wire: ActionWire) -> Self {
        match wire {
            ActionWire::Errcode { errcode, errmsg } => FaultAction::Errcode { errcode, errmsg },
            ActionWire::Latency { millis } => FaultAction::Latency(Duration::from_millis(millis)),
            ActionWire::DropConnection => FaultAction::DropConnection,
        }
    }
}

impl From<FaultAction> for ActionWire {
    fn from(action: FaultAction) -> Self {
        match action {
            FaultAction::Errcode { errcode, errmsg } => ActionWire::Errcode { errcode, errmsg },
            FaultAction::Latency(delay) => ActionWire::Latency {
                millis: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            },
            FaultAction::DropConnection => ActionWire::DropConnection,
        }
    }
}
